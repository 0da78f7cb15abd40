"""The hub's fingerprints: a part is pushed when what it shows changed, and only then (a
re-render takes the keyboard focus from the part's buttons and costs a socket message)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from agents.models import Agent, LogEntry
from agents.states import Status
from control.live.hub import Hub, Listener
from control.web.dashboard_context import FeedFilter
from sessions.models import TradingSession

D = Decimal


@pytest.fixture
def world(make_agent):
    feed = make_agent("feed", symbols=["BTC-USD"], status=Status.RUNNING)
    broker = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    broker.inputs_from.add(feed)
    brain = make_agent("brain", kind="decision", role="decision", config={})
    brain.inputs_from.add(feed)
    TradingSession.objects.create(
        session_id="s1",
        name="Session one",
        symbols=["BTC-USD"],
        decision_agent_id="brain",
        execution_agent_id="broker",
        starting_cash=D("1000"),
        status=Status.RUNNING,
        started_at=timezone.now(),
    )


def pushed(hub: Hub) -> set[str]:
    """The dom ids of the parts a full sweep pushes to an operator."""
    frame = hub.sweep({True}, set(), with_events=False)
    ids = set()
    for part in frame.html[True]:
        ids.add(part.split('id="', 1)[1].split('"', 1)[0])
    return ids - {"live-times"}


@pytest.mark.parametrize(
    "change",
    [
        {"last_heartbeat": timezone.now() + timedelta(seconds=5)},
        {"status_changed_at": timezone.now() + timedelta(seconds=5)},
        {"metrics": {"ticks": 99}},
        {"position_y": 3},
    ],
    ids=["heartbeat", "status_changed_at", "metrics", "position"],
)
def test_a_card_whose_shown_content_did_not_change_is_not_pushed(world, change):
    hub = Hub()
    pushed(hub)  # the first sweep: the whole grid
    assert pushed(hub) == set()
    Agent.objects.filter(pk="feed").update(**change)
    assert "agent-feed" not in pushed(hub)


@pytest.mark.parametrize(
    "change",
    [{"name": "Renamed feed"}, {"status": Status.ERROR, "error_message": "boom"}, {"symbols": ["ETH-USD"]}],
    ids=["name", "status", "symbols"],
)
def test_a_card_whose_shown_content_changed_is_pushed(world, change):
    hub = Hub()
    pushed(hub)
    Agent.objects.filter(pk="feed").update(**change)
    assert "agent-feed" in pushed(hub)


@pytest.mark.parametrize(
    "change",
    [
        {"last_heartbeat": timezone.now() + timedelta(seconds=5)},
        {"status_changed_at": timezone.now() + timedelta(seconds=5)},
        {"max_orders_per_minute": 3},
        {"paused_at": timezone.now()},
    ],
    ids=["heartbeat", "status_changed_at", "limit", "paused_at"],
)
def test_a_session_row_whose_shown_content_did_not_change_is_not_pushed(world, change):
    hub = Hub()
    pushed(hub)
    assert pushed(hub) == set()
    TradingSession.objects.filter(pk="s1").update(**change)
    assert "session-s1" not in pushed(hub)


@pytest.mark.parametrize(
    "change",
    [{"name": "Renamed"}, {"cash": D("900")}, {"status": Status.PAUSED}, {"desired_state": "paused"}],
    ids=["name", "cash", "status", "desired"],
)
def test_a_session_row_whose_shown_content_changed_is_pushed(world, change):
    hub = Hub()
    pushed(hub)
    TradingSession.objects.filter(pk="s1").update(**change)
    assert "session-s1" in pushed(hub)


@pytest.mark.parametrize(
    ("level", "source", "expected"),
    [
        ("", "", ("", "")),
        ("warning", "session", ("warning", "session")),
        ("WARNING", "Session", ("", "")),  # the page's values exactly, nothing looser
        ("ｗａｒｎｉｎｇ", "ｓｅｓｓｉｏｎ", ("", "")),  # full-width look-alikes
        ("\ud800", "\x00", ("", "")),
        (None, 7, ("", "")),
        (["error"], {"source": "session"}, ("", "")),
        ("critical", "nobody", ("", "")),
    ],
)
def test_a_feed_filter_takes_the_page_choices_and_nothing_else(level, source, expected):
    chosen = FeedFilter.parse(level, source)
    assert (chosen.level, chosen.source) == expected


class FakeListener(Listener):
    def __init__(self, feed_filter: FeedFilter) -> None:
        self.can_control, self.wants_html, self.fresh, self.stale = True, True, False, False
        self.feed_filter = feed_filter
        self.got: list[str] = []

    async def deliver(self, text: str) -> None:
        self.got.append(text)


def test_each_socket_gets_the_new_feed_entries_its_filter_shows(world):
    hub = Hub()
    hub.sweep({True}, set(), with_events=False)  # the feed's starting point
    info = LogEntry.objects.create(source="control", level=20, message="a person did it")
    warning = LogEntry.objects.create(source="session", level=30, session_id="s1", message="slow")
    error = LogEntry.objects.create(source="reconciler", level=40, message="broke")
    listeners = {
        "all": FakeListener(FeedFilter()),
        "sessions": FakeListener(FeedFilter(source="session")),
        "errors": FakeListener(FeedFilter(level="error")),
        "error sessions": FakeListener(FeedFilter(level="error", source="session")),
    }
    hub.listeners = set(listeners.values())
    async_to_sync(hub._deliver)(hub.sweep({True}, set(), with_events=False))

    def feed_ids(listener: FakeListener) -> set[int]:
        feed = [m for m in listener.got if m.startswith('<div id="feed-items"')]
        return {int(i) for m in feed for i in re.findall(r'data-id="(\d+)"', m)}

    assert feed_ids(listeners["all"]) == {info.id, warning.id, error.id}
    assert feed_ids(listeners["sessions"]) == {warning.id}
    assert feed_ids(listeners["errors"]) == {error.id}
    assert not any(m.startswith('<div id="feed-items"') for m in listeners["error sessions"].got)
    # The session entry names its session.
    session = next(m for m in listeners["sessions"].got if m.startswith('<div id="feed-items"'))
    assert "Session one" in session and 'href="/sessions/s1/"' in session


def test_a_sweep_where_nothing_changed_sends_nothing(world):
    """Not even the "last active" times: they are sent when they move."""
    Agent.objects.filter(pk="feed").update(last_active=timezone.now())
    hub = Hub()
    hub.sweep({True}, set(), with_events=False)
    assert hub.sweep({True}, set(), with_events=False).html[True] == []
    Agent.objects.filter(pk="feed").update(last_active=timezone.now() + timedelta(seconds=1))
    parts = hub.sweep({True}, set(), with_events=False).html[True]
    assert len(parts) == 1 and parts[0].startswith('<script type="application/json" id="live-times"')


def test_a_session_name_in_a_feed_entry_is_text(world):
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    TradingSession.objects.filter(pk="s1").update(name=hostile)
    hub = Hub()
    hub.sweep({True}, set(), with_events=False)
    LogEntry.objects.create(source="session", session_id="s1", message="bought")
    frame = hub.sweep({True}, set(), with_events=False)
    html = "".join(part for _, part in frame.feed)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html and "<img" not in html


class _Watcher(Listener):
    """A program's socket (JSON events): it never asks for the page's parts."""

    can_control, wants_html, fresh = False, False, True

    async def deliver(self, text: str) -> None:
        pass


def _waiting_on_the_wake(task: asyncio.Task) -> bool:
    return "Event.wait" in repr(task.get_coro())


@pytest.mark.django_db(transaction=True)
def test_a_hub_cancelled_while_it_waits_leaves_no_task_pending(world):
    """The web process stopping cancels the hub in its wait: the wait must go with it (it
    was left pending, and asyncio logged 'Task was destroyed but it is pending!')."""

    async def scenario() -> list[asyncio.Task]:
        hub = Hub()
        hub.join(_Watcher())
        deadline = time.monotonic() + 15
        while not any(_waiting_on_the_wake(t) for t in asyncio.all_tasks()):
            assert time.monotonic() < deadline, "the hub never came to wait"
            await asyncio.sleep(0.01)  # polling with a deadline: let the hub run meanwhile
        tasks = [hub._task, hub._watch]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # one turn for cancelled children to finish
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]

    assert asyncio.run(scenario()) == []

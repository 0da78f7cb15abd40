"""The hub's fingerprints: a part is pushed when what it shows changed, and only then (a
re-render takes the keyboard focus from the part's buttons and costs a socket message)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agents.models import Agent
from agents.states import Status
from control.live import Hub
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

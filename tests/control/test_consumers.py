"""The panel's websockets through the project's own routing (channels' communicator).

Transactional: the hub reads the database from another thread. No sleeps: each receive
has a deadline, and the hub pushes within a sweep or two.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from agents.models import Agent
from agents.states import Status
from control.live.hub import hub
from control.live.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)
DEADLINE = 5


def communicator(path: str, user) -> WebsocketCommunicator:
    app = URLRouter(websocket_urlpatterns)
    ws = WebsocketCommunicator(app, path)
    ws.scope["user"] = user
    return ws


async def receive_until(ws: WebsocketCommunicator, predicate, deadline: float = DEADLINE) -> str:
    """Messages until one satisfies `predicate`; fails after `deadline` seconds of silence."""
    while True:
        message = await ws.receive_from(timeout=deadline)
        if predicate(message):
            return message


@pytest.mark.parametrize("path", ["/ws/control/", "/ws/events/"])
def test_anonymous_sockets_are_refused(path):
    async def scenario():
        ws = communicator(path, AnonymousUser())
        await ws.connect()
        # Accepted then closed, so the browser learns the code (a refused handshake is 1006).
        assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
        assert not hub.listeners

    async_to_sync(scenario)()


def test_a_new_socket_gets_every_part_then_the_card_that_changes(operator, make_agent):
    make_agent("feed")

    async def scenario():
        ws = communicator("/ws/control/", operator)
        connected, _ = await ws.connect()
        assert connected
        seen = set()
        while not {"system-panel", "flow", "edge-data", "session-rows"} <= seen:
            message = await ws.receive_from(timeout=DEADLINE)
            seen.add(message.split('id="', 1)[1].split('"', 1)[0])
        assert hub.listeners
        # The loop writes a new status: the card is pushed, as an out-of-band swap.
        await sync_to_async(Agent.objects.filter(pk="feed").update)(status=Status.ERROR, error_message="boom")
        got: dict[str, str] = {}
        while len(got) < 2:
            message = await ws.receive_from(timeout=DEADLINE)
            if message.startswith('<article id="agent-feed"') and "status-error" in message:
                got["card"] = message
            elif 'id="system-panel"' in message and "in error" in message:
                got["panel"] = message
        assert 'hx-swap-oob="morph"' in got["card"] and "boom" in got["card"]
        # The system panel came too, with an alert.
        assert "Agent feed is in error: boom" in got["panel"]
        await ws.disconnect()
        assert not hub.listeners

    async_to_sync(scenario)()


def test_the_viewer_gets_disabled_buttons(viewer, make_agent):
    make_agent("feed")

    async def scenario():
        ws = communicator("/ws/control/", viewer)
        await ws.connect()
        card = await receive_until(ws, lambda m: 'id="agent-feed"' in m or 'id="flow"' in m)
        start = card.split('data-action="start"')[0].rsplit("<button", 1)[1]
        assert "disabled" in start
        await ws.disconnect()

    async_to_sync(scenario)()


def test_programs_get_json_events(operator, make_agent):
    make_agent("feed")

    async def scenario():
        ws = communicator("/ws/events/", operator)
        connected, _ = await ws.connect()
        assert connected
        # Wait (with a deadline) for the hub's first look, then change something.
        for _ in range(100):
            if hub._json._status:
                break
            await ws.receive_nothing(timeout=0.1)
        await sync_to_async(Agent.objects.filter(pk="feed").update)(status=Status.RUNNING)
        event = json.loads(await receive_until(ws, lambda m: json.loads(m)["type"] == "agent.status"))
        assert event["data"] == {
            "agent_id": "feed",
            "status": "running",
            "desired_state": "stopped",
            "error_message": None,
        }
        assert {"ts", "seq"} <= set(event)
        await ws.disconnect()

    async_to_sync(scenario)()


def test_an_announced_change_is_pushed_at_once_not_at_the_next_poll(operator, make_agent, monkeypatch):
    """The hub also listens for state-change announcements (agents.runtime.lifecycle): with the
    poll 30 s apart, the change still arrives within the deadline."""
    from agents.runtime import lifecycle
    from control.live import hub as live

    monkeypatch.setattr(live, "SWEEP_SECONDS", 30.0)
    make_agent("feed")

    async def scenario():
        ws = communicator("/ws/control/", operator)
        await ws.connect()
        await receive_until(ws, lambda m: 'id="flow"' in m)  # the first sweep: every part
        await sync_to_async(Agent.objects.filter(pk="feed").update)(status=Status.RUNNING)
        # Announced until heard (the watcher may still be subscribing), within 5 s.
        card = None
        for _ in range(10):
            await sync_to_async(lifecycle.announce)("agent", "feed")
            try:
                card = await receive_until(ws, lambda m: m.startswith('<article id="agent-feed"'), 0.5)
                break
            except TimeoutError:
                continue
        assert card is not None and "status-running" in card
        await ws.disconnect()

    async_to_sync(scenario)()


def test_a_page_tells_its_socket_what_its_feed_shows_and_gets_only_that(operator, make_agent):
    """The page sends {"feed_filter": ...}; new entries its filter hides are not sent."""
    from agents.models import LogEntry

    make_agent("feed")

    async def scenario():
        ws = communicator("/ws/control/", operator)
        connected, _ = await ws.connect()
        assert connected
        await receive_until(ws, lambda m: 'id="session-rows"' in m)
        await ws.send_to(text_data=json.dumps({"feed_filter": {"level": "", "source": "session"}}))
        await ws.send_to(text_data="not json")  # ignored, and the filter stays
        await ws.send_to(text_data=json.dumps(["feed_filter"]))
        hidden = await sync_to_async(LogEntry.objects.create)(source="control", message="a person did it")
        shown = await sync_to_async(LogEntry.objects.create)(
            source="session", session_id="s1", message="bought"
        )
        message = await receive_until(ws, lambda m: m.startswith('<div id="feed-items"'))
        assert f'data-id="{shown.id}"' in message and f'data-id="{hidden.id}"' not in message
        await ws.disconnect()

    async_to_sync(scenario)()

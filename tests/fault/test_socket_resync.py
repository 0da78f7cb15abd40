"""Websocket drop and overflow (issue 5, item 7), through the consumer: after a socket
could not take pushes for a while, or dropped and came back, what it received, applied
in order as htmx applies out-of-band swaps, equals a fresh render of the page's parts
from the database.

There is no channel layer: the hub (control/live/hub.py, control/live/delivery.py) calls each
consumer's deliver(). "Overflow" is a consumer whose send fails (ChannelFull, as a full
channel raises) while states change; then it takes messages again.

Compared: the system panel, every agent card and every session row, as rendered HTML.
Left out: the edge data (its rates are the hub's own measure over time, not a database
state), the live times and the activity feed. The health report is pinned: its checks
are not under test here and may change between two renders.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from agents.models import Agent
from agents.states import Desired, Status
from control import health
from control.live.hub import hub
from control.live.rendering import render_part
from control.live.routing import websocket_urlpatterns
from control.web import dashboard_context as page
from sessions.models import TradingSession

pytestmark = pytest.mark.django_db(transaction=True)
DEADLINE = 10  # s: a full sweep comes every 0.3 s; generous for a loaded machine

_ID = re.compile(r'\bid="([^"]+)"')
_CARD = re.compile(r'<article id="agent-[^"]+".*?</article>', re.S)
_ROW = re.compile(r'<tr id="session-[^"]+".*?</tr>', re.S)
_OOB = re.compile(r'\s*hx-swap-oob="[^"]*"|\s+(?=>)')


def normal(html: str) -> str:
    """The same element pushed alone or inside its container differs only in the
    out-of-band attribute (or the space left where it would be) and whitespace."""
    return " ".join(_OOB.sub("", html).split())


class PageModel:
    """The page's parts by DOM id, as the browser holds them after each message."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}

    def apply(self, message: str) -> None:
        found = _ID.search(message)
        assert found, f"a push without an id: {message[:200]}"
        dom_id = found.group(1)
        if dom_id == "flow":  # the whole grid: every card in it
            self._replace("agent-", _CARD.findall(message))
        elif dom_id == "session-rows":  # the whole table body: every row in it
            self._replace("session-", _ROW.findall(message))
        elif dom_id.startswith(("agent-", "session-")) or dom_id == "system-panel":
            self.parts[dom_id] = normal(message)

    def _replace(self, prefix: str, elements: list[str]) -> None:
        self.parts = {k: v for k, v in self.parts.items() if not k.startswith(prefix)}
        for element in elements:
            self.parts[_ID.search(element).group(1)] = normal(element)


def rendered_from_db() -> dict[str, str]:
    """Every compared part, rendered now from the database (as an operator sees it)."""
    out = {"system-panel": normal(render_part("system-panel", page.system_panel(), True))}
    for card in page.agent_cards():
        out[f"agent-{card.agent_id}"] = normal(render_part("agent-card", {"card": card}, True))
    for row in page.session_rows():
        out[f"session-{row.session_id}"] = normal(render_part("session-row", {"row": row}, True))
    return out


def differences(model: PageModel, truth: dict[str, str]) -> list[str]:
    ids = sorted(set(model.parts) | set(truth))
    return [i for i in ids if model.parts.get(i) != truth.get(i)]


async def receive_until_it_matches(ws: WebsocketCommunicator, model: PageModel) -> None:
    """Apply messages until the model equals the database, or fail at the deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        truth = await database_sync_to_async(rendered_from_db)()
        if not differences(model, truth):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the page still differs from the database in {differences(model, truth)}")
        try:
            model.apply(await ws.receive_from(timeout=left))
        except TimeoutError:
            continue  # the check above fails with the differences


def communicator(user) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/control/")
    ws.scope["user"] = user
    return ws


@pytest.fixture
def panel(make_agent, monkeypatch) -> None:
    """Three agents and two sessions in assorted states; the health report pinned."""
    make_agent("rs_a", desired_state=Desired.RUNNING, status=Status.RUNNING)
    make_agent("rs_b")
    make_agent("rs_c", desired_state=Desired.RUNNING, status=Status.RUNNING)
    for session_id, state in (("rs_s1", Status.RUNNING), ("rs_s2", Status.STOPPED)):
        TradingSession.objects.create(
            session_id=session_id,
            name=session_id.upper(),
            symbols=["BTC-USD"],
            starting_cash="10000",
            desired_state=Desired.RUNNING if state == Status.RUNNING else Desired.STOPPED,
            status=state,
        )
    report = health.cached_health()
    monkeypatch.setattr(health, "cached_health", lambda *args, **kwargs: report)


def change_states() -> None:
    """What loops and people do meanwhile: an agent stops, one starts, one fails, a
    session pauses and another starts."""
    Agent.objects.filter(pk="rs_a").update(desired_state=Desired.STOPPED, status=Status.STOPPED)
    Agent.objects.filter(pk="rs_b").update(desired_state=Desired.RUNNING, status=Status.RUNNING)
    Agent.objects.filter(pk="rs_c").update(status=Status.ERROR, error_message="failed while you were away")
    TradingSession.objects.filter(pk="rs_s1").update(desired_state=Desired.PAUSED, status=Status.PAUSED)
    TradingSession.objects.filter(pk="rs_s2").update(desired_state=Desired.RUNNING, status=Status.RUNNING)


def test_a_socket_that_could_not_take_pushes_gets_every_part_again(panel, operator):
    async def scenario():
        ws = communicator(operator)
        connected, _ = await ws.connect()
        assert connected
        model = PageModel()
        await receive_until_it_matches(ws, model)

        (listener,) = hub.listeners
        refused: list[str] = []

        async def full(text: str) -> None:
            refused.append(text)
            raise ChannelFull()

        listener.deliver = full  # this consumer only; the class is left alone
        await sync_to_async(change_states)()
        # Wait (with a deadline) until the hub has swept the changes and failed to push
        # them: the system panel goes first and carries the new alert.
        deadline = time.monotonic() + DEADLINE
        while not any("failed while you were away" in text for text in refused):
            assert time.monotonic() < deadline, "the hub never tried to push the changes"
            await asyncio.sleep(0.02)
        del listener.deliver  # it takes messages again
        stale = differences(model, await database_sync_to_async(rendered_from_db)())
        assert {"agent-rs_a", "agent-rs_b", "agent-rs_c", "session-rs_s1", "session-rs_s2"} <= set(stale)

        await receive_until_it_matches(ws, model)
        await ws.disconnect()

    async_to_sync(scenario)()


def test_a_socket_that_dropped_gets_every_part_matching_the_database_first(panel, operator):
    async def scenario():
        ws = communicator(operator)
        await ws.connect()
        model = PageModel()
        await receive_until_it_matches(ws, model)
        await ws.disconnect()

        await sync_to_async(change_states)()
        truth = await database_sync_to_async(rendered_from_db)()
        assert differences(model, truth), "the changes must show on the page"

        ws = communicator(operator)
        connected, _ = await ws.connect()
        assert connected
        # The first messages: every part (the system panel, the grid, its edges, the table).
        wanted = {"system-panel", "flow", "edge-data", "session-rows"}
        while wanted:
            message = await ws.receive_from(timeout=DEADLINE)
            model.apply(message)
            wanted.discard(_ID.search(message).group(1))
        assert differences(model, truth) == []
        await ws.disconnect()

    async_to_sync(scenario)()

"""The per-object push budget of the live hub, and a socket that missed pushes."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from agents.models import Agent
from agents.states import Status
from control.live.budget import PushBudget
from control.live.hub import Hub
from control.web.dashboard_context import FeedFilter


def test_a_burst_goes_at_once_then_pushes_come_at_the_steady_rate():
    budget = PushBudget(rate=5.0, burst=2.0)
    assert budget.take("agent-a", 0.0) and budget.take("agent-a", 0.0)  # pausing, then paused
    assert not budget.take("agent-a", 0.01)
    assert budget.due("agent-a", 0.01) == pytest.approx(0.2)
    assert budget.take("agent-a", 0.2)
    assert budget.take("agent-b", 0.01)  # one object's flood costs the others nothing


def test_over_a_second_an_object_is_pushed_at_most_burst_plus_rate_times():
    budget = PushBudget(rate=5.0, burst=2.0)  # explicit: the defaults may be tuned
    pushes = sum(budget.take("agent-a", t / 1000) for t in range(0, 1000))  # a change every ms
    assert pushes == 2 + 5 - 1  # the bucket is empty at t=0 after the burst: 4 more in 0.999 s


class FlakyListener:
    """A socket whose pushes fail for a while (closed, or its channel full)."""

    can_control = True
    wants_html = True
    fresh = True
    stale = False
    feed_filter = FeedFilter()

    def __init__(self) -> None:
        self.failing = False
        self.received: list[str] = []

    async def deliver(self, text: str) -> None:
        if self.failing:
            raise RuntimeError("channel full")
        self.received.append(text)


@pytest.mark.django_db(transaction=True)
def test_a_socket_that_missed_pushes_gets_every_part_again(make_agent):
    make_agent("feed")

    async def wait_until(predicate, seconds: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.01)

    async def scenario():
        hub = Hub()
        listener = FlakyListener()
        hub.join(listener)
        try:
            await wait_until(lambda: any('id="flow"' in m for m in listener.received))
            listener.failing = True
            failed = Agent.objects.filter(pk="feed")
            await sync_to_async(failed.update)(status=Status.ERROR, error_message="boom")
            await wait_until(lambda: listener.stale)  # the card's push failed
            listener.failing = False
            listener.received.clear()
            # Every part again, rendered from the database as it is now.
            await wait_until(lambda: any('id="flow"' in m for m in listener.received))
            flow = next(m for m in listener.received if 'id="flow"' in m)
            assert "boom" in flow and not listener.stale and not listener.fresh
        finally:
            hub.leave(listener)

    async_to_sync(scenario)()

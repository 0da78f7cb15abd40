"""Fencing (issue 5, item 4): a loop that stalls past its lease and is superseded cannot
write anything afterwards: no stream entry, no order, no equity point, no status,
heartbeat or metrics in the database.

Each stale loop runs in this process (a thread), so the test can stall it mid-step. A
real stall would have to outlast the lease (longer than the step watchdog's timeout, see
agents/runtime/watchdog.py), so the test lets the lease key expire at once instead; the
real reconciler then supersedes the loop, as in production.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

from django.db import connection

from agents.models import Agent, LogEntry
from agents.runtime import keys
from agents.runtime.agent_loop import AgentLoop
from agents.runtime.lease import Fenced
from agents.states import Desired, Status
from control import services
from control.reconcile import reconcile
from sessions.models import EquityPoint, Fill, Order, TradingSession
from sessions.runtime import SessionLoop
from tests.conftest import wait_for

STALL_DEADLINE = 30  # s: how long a stalled step waits to be released before giving up


def run_in_thread(loop, outcome: dict[str, object]) -> threading.Thread:
    def target() -> None:
        try:
            outcome["reason"] = loop.run()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=target, name=f"stale-{loop.rid}")
    thread.start()
    return thread


def stall_outlasts_the_lease(redis_client, kind: str, rid: str) -> None:
    """What a stall past the lease comes to in Redis: the lease key expires."""
    key = keys.lease(kind, rid)
    assert redis_client.get(key), "the stalled loop still held its lease"
    redis_client.pexpire(key, 1)
    wait_for(lambda: not redis_client.exists(key), what="the stale loop's lease to lapse")


def test_a_superseded_loop_cannot_write_anything(celery_worker, make_agent, redis_client, settings):
    """A loop that stalls past its lease is replaced and can no longer write."""
    settings.STEP_TIMEOUT_SECONDS = 60  # this process's loop: the stall is not the watchdog's
    agent = make_agent("fenced_feed")
    Agent.objects.filter(pk=agent.pk).update(
        desired_state=Desired.RUNNING, status=Status.STARTING, run_id="run-old"
    )
    stall, stalled, release = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    class StallingLoop(AgentLoop):
        def step(self):
            if stall.is_set():
                stalled.set()
                release.wait(STALL_DEADLINE)
                try:
                    self._publish({"marker": "from the stale loop"})
                    outcome["publish"] = "written"
                except Fenced:
                    outcome["publish"] = "refused"
                outcome["db_rows"] = Agent.objects.filter(pk=self.rid, run_id=self.run_id).update(
                    status=Status.ERROR
                )
            return super().step()

    thread = run_in_thread(StallingLoop(agent.agent_id, "run-old"), outcome)
    try:
        wait_for(
            lambda: Agent.objects.filter(pk=agent.pk, run_id="run-old", status=Status.RUNNING).exists(),
            what="the old loop to run",
        )
        stall.set()
        wait_for(stalled.is_set, what="the old loop to stall")
        stall_outlasts_the_lease(redis_client, "agent", agent.agent_id)
        reconcile()
        new = wait_for(
            lambda: (
                (a := Agent.objects.get(pk=agent.pk)).run_id != "run-old" and a.status == Status.RUNNING and a
            ),
            what="a new incarnation in the worker",
        )
    finally:
        release.set()
        thread.join(timeout=STALL_DEADLINE)
    assert outcome["publish"] == "refused"
    assert outcome["db_rows"] == 0
    assert str(outcome["reason"]).startswith("fenced")
    after = Agent.objects.get(pk=agent.pk)
    assert (after.run_id, after.status) == (new.run_id, Status.RUNNING)
    stream = keys.stream("agent", agent.agent_id)
    assert not any("marker" in fields["data"] for _id, fields in redis_client.xrange(stream))


def test_a_superseded_session_loop_sends_no_order_and_records_nothing(
    celery_worker, make_agent, redis_client, settings
):
    """The stale session loop holds a fresh directive and a price when it stalls: resumed
    after it was superseded, it must not record or send the order, nor mark to market.
    The market and the paper broker run in the worker, so an order that got out would be
    filled."""
    feed = make_agent("fz_feed", config={"source": "simulated", "tick_seconds": 0.1, "seed": 5})
    execution = make_agent(
        "fz_exec", kind="execution", role="execution", symbols=[], config={"tick_seconds": 0.1}
    )
    execution.inputs_from.add(feed)
    make_agent("fz_decision", kind="decision", role="decision", config={"tick_seconds": 1.0})  # not run
    services.start_agent("fz_feed")
    services.start_agent("fz_exec")
    services.create_session(
        {
            "session_id": "fz",
            "name": "FZ",
            "symbols": ["BTC-USD"],
            "decision_agent": "fz_decision",
            "execution_agent": "fz_exec",
            "starting_cash": "10000",
        }
    )
    TradingSession.objects.filter(pk="fz").update(
        desired_state=Desired.RUNNING, status=Status.STARTING, run_id="run-old"
    )
    wait_for(
        lambda: Agent.objects.filter(pk__in=["fz_feed", "fz_exec"], status=Status.RUNNING).count() == 2,
        what="market and broker running",
    )
    # This process's stale loop: short ticks, no watchdog in the way; the new incarnation the reconciler
    # launches goes to a queue no worker reads, so whatever is written afterwards can only
    # come from the stale loop.
    settings.SESSION_TICK_SECONDS = 0.2
    settings.STEP_TIMEOUT_SECONDS = 60
    stall, stalled, release = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    class StallingSessionLoop(SessionLoop):
        def _trade(self) -> int:
            if stall.is_set() and self.pending and not stalled.is_set():
                outcome["could_trade"] = all(symbol in self.prices for symbol in self.pending)
                stalled.set()
                release.wait(STALL_DEADLINE)
                try:
                    return super()._trade()
                finally:
                    self._mark(force=True)  # and a step ends by marking to market
            return super()._trade()

    thread = run_in_thread(StallingSessionLoop("fz", "run-old"), outcome)
    try:
        wait_for(lambda: TradingSession.objects.get(pk="fz").status == Status.RUNNING, what="the old loop")
        # Its reader must know a price before the advice comes (the feed ticks every 0.1 s).
        wait_for(lambda: redis_client.xlen(keys.stream("agent", "fz_feed")) > 0, what="a first bar")
        stall.set()
        directive = {
            "type": "directive",
            "ts": time.time(),
            "symbol": "BTC-USD",
            "action": "buy",
            "target_weight": 0.5,
            "reason": "buy: fencing test",
        }
        redis_client.xadd(keys.stream("agent", "fz_decision"), {"data": json.dumps(directive)})
        wait_for(stalled.is_set, what="the old loop to stall holding the directive")
        stall_outlasts_the_lease(redis_client, "session", "fz")
        settings.LOOP_QUEUE = f"nowhere-{uuid.uuid4().hex[:8]}"
        assert "session:fz" in reconcile().restarted
        before = TradingSession.objects.values().get(pk="fz")
        points = EquityPoint.objects.filter(session_id="fz").count()
        entries = LogEntry.objects.filter(session_id="fz").count()
    finally:
        release.set()
        thread.join(timeout=STALL_DEADLINE)
    assert not thread.is_alive()
    assert outcome["could_trade"] is True, "the stale loop held advice it could act on"
    assert str(outcome["reason"]).startswith("fenced"), outcome["reason"]
    assert not Order.objects.filter(session_id="fz").exists()
    assert redis_client.xlen(keys.orders("agent", "fz_exec")) == 0
    assert not Fill.objects.filter(session_id="fz").exists()
    assert EquityPoint.objects.filter(session_id="fz").count() == points
    assert LogEntry.objects.filter(session_id="fz").count() == entries
    assert TradingSession.objects.values().get(pk="fz") == before  # status, heartbeat, metrics, cash

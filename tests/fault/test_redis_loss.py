"""Redis loses everything (issue 5, item 3): every key under the project's prefix is
deleted (never FLUSHDB: the Redis is shared), or Redis restarts empty. Redis is not the
source of truth: loops take their leases back, flags are rebuilt from the database, a
paused session never trades, and the ledger still adds up. The restart uses a private
redis-server of the test's own, never the shared one."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from agents.models import Agent
from agents.runtime import keys, lifecycle
from agents.runtime.agent_loop import AgentLoop
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from control import presenters, services
from control.reconcile import reconcile
from sessions import broker
from sessions.models import Order, OrderStatus, TradingSession
from sessions.runtime import RESEND_AFTER_SECONDS
from tests.conftest import wait_for
from tests.fault.conftest import (
    Market,
    assert_one_live_loop_each,
    stop_sessions_and_check,
    wait_for_new_fills,
)


def delete_every_project_key() -> int:
    """What a careless `DEL prefix*` does: leases, flags, heartbeats, streams, consumer
    groups, cursors, Celery's queues and bindings. Other users of the
    same Redis keep theirs."""
    client = get_redis()
    found = list(client.scan_iter(match=f"{settings.REDIS_PREFIX}*", count=1000))
    for start in range(0, len(found), 500):
        client.delete(*found[start : start + 500])
    return len(found)


def heartbeats_back(market: Market, since: float) -> bool:
    client = get_redis()
    beats = client.mget([keys.heartbeat(kind, rid) for kind, rid in market.runnables()
                         if market.states()[(kind, rid)][0] != Desired.STOPPED])  # fmt: skip
    return all(beat is not None and float(beat) > since for beat in beats)


def assert_flags_mirror_the_database(market: Market) -> None:
    client = get_redis()
    for (kind, rid), (desired, _status, run_id) in market.states().items():
        mirrored = client.hgetall(keys.flags(kind, rid))
        assert (mirrored.get("desired"), mirrored.get("run_id")) == (desired, run_id), (kind, rid)


def order_lost_in_flight(session_id: str) -> str:
    """An order the session sent just before Redis lost its message: recorded and marked
    sent (RESEND_AFTER_SECONDS ago, so the test need not wait that long), never seen by
    the broker. Whatever Redis loses, such an order must not stay open for good."""
    order = broker.place_order(session_id, "BTC-USD", "buy", Decimal("0.001"))
    sent_at = timezone.now() - timedelta(seconds=RESEND_AFTER_SECONDS + 1)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SENT, updated_at=sent_at)
    return order.pk


def test_deleting_every_project_key_while_sessions_trade_loses_nothing(
    fast_recovery, spawn_worker, market, directives
):
    worker = spawn_worker()
    for session_id in ("rl_run", "rl_pause"):
        market.add_session(session_id)
    with directives():
        market.start_everything()
        wait_for_new_fills(market, market.session_ids, what="both sessions trading")
        services.pause_session("rl_pause")
        wait_for(market.all_live, what="rl_pause paused")
        orders_paused = Order.objects.filter(session_id="rl_pause").count()
        runs = market.states()

        lost = order_lost_in_flight("rl_run")
        wiped_at = time.time()
        assert delete_every_project_key() > 0
        # Every loop, the paused one too, takes its lease back on its own (the database
        # still names its run) and goes on ticking; no incarnation is replaced.
        wait_for(lambda: heartbeats_back(market, wiped_at), timeout=15, what="heartbeats after the wipe")
        wait_for_new_fills(market, ["rl_run"], timeout=30, what="rl_run trading after the wipe")
        wait_for(
            lambda: Order.objects.get(pk=lost).status == OrderStatus.FILLED,
            timeout=20,
            what="the order lost in flight to be sent again and filled",
        )
        report = reconcile()
        assert report.restarted == [], report.summary()
        assert market.states() == runs
        assert_flags_mirror_the_database(market)
        assert Order.objects.filter(session_id="rl_pause").count() == orders_paused
        assert TradingSession.objects.get(pk="rl_pause").status == Status.PAUSED
    assert_one_live_loop_each(market)
    stop_sessions_and_check(market, [worker])


def test_a_loop_survives_a_redis_restart_and_takes_its_lease_back(
    private_redis, make_agent, transactional_db
):
    agent = make_agent("outage_feed")
    Agent.objects.filter(pk=agent.pk).update(
        desired_state=Desired.RUNNING, status=Status.STARTING, run_id="run-1"
    )
    lifecycle.write_flags("agent", agent.agent_id, Desired.RUNNING, "run-1", "1")
    outcome: dict = {}

    def target():
        outcome["reason"] = AgentLoop(agent.agent_id, "run-1").run()
        connection.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    client = get_redis()
    heartbeat = keys.heartbeat("agent", agent.agent_id)
    try:
        wait_for(lambda: client.exists(heartbeat), what="a first heartbeat")
        wait_for(lambda: Agent.objects.get(pk=agent.pk).metrics, what="counters in the database")
        private_redis.kill()
        # While Redis is away the loop says it waits for it (written to the database,
        # which the API reads then), with the outage's start.
        wait_for(
            lambda: Agent.objects.get(pk=agent.pk).metrics.get("waiting_for") == "redis",
            what="the wait written to the database",
        )
        shown = presenters.agent_dicts([Agent.objects.get(pk=agent.pk)])[0]
        assert shown["waiting_for"] == "redis" and shown["status"] == Status.RUNNING, shown
        assert 0 <= (timezone.now() - shown["waiting_since"]).total_seconds() < 20, shown
        private_redis.start()  # same port, empty: as after a restart
        wait_for(lambda: client.exists(heartbeat), timeout=20, what="heartbeats after the restart")
        wait_for(
            lambda: presenters.agent_dicts([Agent.objects.get(pk=agent.pk)])[0]["waiting_for"] is None,
            what="the wait to clear",
        )
        assert client.get(keys.lease("agent", agent.agent_id)).startswith("run-1:")
        assert Agent.objects.get(pk=agent.pk).status == Status.RUNNING
        assert thread.is_alive()
    finally:
        Agent.objects.filter(pk=agent.pk).update(desired_state=Desired.STOPPED)
        lifecycle.write_flags("agent", agent.agent_id, Desired.STOPPED, "run-1")
        thread.join(timeout=15)
    assert outcome["reason"] == "stop requested"


@pytest.fixture
def private_stack(private_redis, fast_recovery, monkeypatch):
    """Workers and beat started by the test use the private redis-server too."""
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    return private_redis


def test_a_redis_restart_while_sessions_trade_and_one_is_paused_loses_nothing(
    private_stack, spawn_worker, beat, market, directives
):
    worker = spawn_worker(loops_only=False)  # loops and the reconciler beat sends
    for session_id in ("rr_run", "rr_pause"):
        market.add_session(session_id)
    # Desired states only, as the database holds them after an outage: beat's reconciler
    # (on the private Redis, like everything in this test) starts the loops.
    Agent.objects.filter(pk__in=market.agent_ids).update(desired_state=Desired.RUNNING, status=Status.STOPPED)
    TradingSession.objects.filter(pk="rr_run").update(desired_state=Desired.RUNNING, status=Status.STOPPED)
    TradingSession.objects.filter(pk="rr_pause").update(desired_state=Desired.PAUSED, status=Status.STOPPED)
    beat()
    with directives():
        wait_for(market.all_live, timeout=30, what="beat to start every loop")
        wait_for_new_fills(market, ["rr_run"], what="rr_run trading")
        orders_paused = Order.objects.filter(session_id="rr_pause").count()
        lost = order_lost_in_flight("rr_run")
        private_stack.kill()
        private_stack.start()  # same port, empty: as after a restart without persistence
        restarted_at = time.time()
        wait_for(
            lambda: heartbeats_back(market, restarted_at), timeout=30, what="heartbeats after the restart"
        )
        wait_for_new_fills(market, ["rr_run"], timeout=30, what="rr_run trading after the restart")
        wait_for(
            lambda: Order.objects.get(pk=lost).status == OrderStatus.FILLED,
            timeout=20,
            what="the order lost in flight to be sent again and filled",
        )
        wait_for(market.all_live, timeout=20, what="every loop in its desired state")
        assert_flags_mirror_the_database(market)
        assert Order.objects.filter(session_id="rr_pause").count() == orders_paused
        assert TradingSession.objects.get(pk="rr_pause").status == Status.PAUSED
    assert_one_live_loop_each(market, allow_handover=True)
    stop_sessions_and_check(market, [worker], allow_handover=True)

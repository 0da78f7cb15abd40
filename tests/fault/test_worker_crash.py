"""A worker is SIGKILLed (issue 5, item 1). With a second worker and beat up, the
reconciler moves the lost loops (tests/fault/test_scale_out.py shows it); with no other
worker, `manage.py restore` after a new worker starts brings every loop back. Never two
live loops for one runnable; no order filled twice or lost."""

from __future__ import annotations

import io
import json
import threading
from decimal import Decimal

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client

from agents.models import Agent
from agents.runtime import keys
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from control import services
from control.reconcile import reconcile
from sessions import broker
from sessions.models import OPEN_STATUSES, Fill, Order, Position, TradingSession
from tests.conftest import wait_for
from tests.fault.conftest import (
    assert_one_live_loop_each,
    stop_sessions_and_check,
    wait_for_new_fills,
)

D = Decimal


def leases_held() -> list[str]:
    return list(get_redis().scan_iter(match=f"{settings.REDIS_PREFIX}lease:*", count=1000))


def test_with_no_other_worker_restore_after_a_new_worker_starts_brings_every_loop_back(
    fast_recovery, spawn_worker, market, directives
):
    doomed = spawn_worker()
    for session_id in ("cr_a", "cr_b"):
        market.add_session(session_id)
    with directives():
        market.start_everything()
        wait_for_new_fills(market, market.session_ids, what="every session trading")
        before = market.states()
        doomed.kill()
        open_at_kill = set(
            Order.objects.filter(session_id__in=market.session_ids, status__in=OPEN_STATUSES).values_list(
                "pk", flat=True
            )
        )
        replacement = spawn_worker()
        # A lease is the only proof that a loop is dead: restore skips a runnable whose
        # lease is still held (its worker may be alive). Killed loops' leases lapse within
        # a lease's length (7 s here, see FAST_RECOVERY_ENV).
        wait_for(lambda: not leases_held(), timeout=15, what="the dead loops' leases to lapse")
        out = io.StringIO()
        call_command("restore", stdout=out)
        assert f"restarted {len(before)}," in out.getvalue(), out.getvalue()

        def all_back() -> bool:
            now = market.states()
            return market.all_live() and all(now[r][2] != before[r][2] for r in before)

        wait_for(all_back, timeout=30, interval=0.1, what="every loop running again in the new worker")
        # The dead runs can no longer write: every conditional update names the new run_id.
        for (kind, rid), (_desired, _status, old_run) in before.items():
            model = Agent if kind == "agent" else TradingSession
            assert model.objects.filter(pk=rid, run_id=old_run).update(status=Status.ERROR) == 0
        # Orders that were in flight at the kill are not lost: the new broker finishes them.
        wait_for(
            lambda: not Order.objects.filter(pk__in=open_at_kill, status__in=OPEN_STATUSES).exists(),
            timeout=20,
            what="the orders in flight at the kill to be settled",
        )
        wait_for_new_fills(market, market.session_ids, what="trading after the restore")
    assert_one_live_loop_each(market)
    stop_sessions_and_check(market, [doomed, replacement])


def test_twenty_concurrent_starts_give_exactly_one_live_loop(
    celery_worker, make_agent, operator, redis_client
):
    agent = make_agent("race_feed")
    answers: list[int] = []
    barrier = threading.Barrier(20)

    def press_start() -> None:
        client = Client()
        client.force_login(operator)
        barrier.wait()
        answers.append(client.post(f"/api/agents/{agent.agent_id}/start").status_code)
        connection.close()

    threads = [threading.Thread(target=press_start) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200] + [409] * 19
    current = wait_for(
        lambda: (a := Agent.objects.get(pk=agent.agent_id)).status == Status.RUNNING and a, what="running"
    )
    holder = redis_client.get(keys.lease("agent", agent.agent_id))
    assert holder.split(":")[0] == current.run_id
    # Even a redelivered copy of the same task must not become a twin.
    from agents.tasks import run_agent

    for _ in range(3):
        run_agent.apply_async((agent.agent_id, current.run_id), queue=settings.LOOP_QUEUE)
    steps_before = int(redis_client.hget(keys.metrics("agent", agent.agent_id), "steps") or 0)
    wait_for(
        lambda: (
            int(redis_client.hget(keys.metrics("agent", agent.agent_id), "steps") or 0) >= steps_before + 10
        ),
        what="ten more ticks",
    )
    log_file = settings.LOG_DIR / f"{agent.agent_id}.log"
    assert log_file.read_text().count(" started (run ") == 1
    assert redis_client.get(keys.lease("agent", agent.agent_id)) == holder


def test_an_order_is_filled_once_when_the_execution_worker_is_killed_mid_stream(
    fast_recovery, spawn_worker, make_agent, redis_client
):
    feed = make_agent("kx_feed", config={"source": "simulated", "tick_seconds": 0.1, "seed": 3})
    # 20 orders a step: a step of 200 fills can outlast the 5 s step timeout on a loaded
    # machine (PostgreSQL in CI), and the broker would go to error instead of finishing.
    execution = make_agent(
        "kx_exec",
        kind="execution",
        role="execution",
        symbols=[],
        config={"tick_seconds": 0.05, "max_orders_per_step": 20},
    )
    execution.inputs_from.add(feed)
    TradingSession.objects.create(
        session_id="kx",
        name="KX",
        symbols=["BTC-USD"],
        starting_cash=D("1000000"),
        desired_state=Desired.RUNNING,
        status=Status.RUNNING,
    )
    doomed = spawn_worker()
    services.start_agent(feed.agent_id)
    services.start_agent(execution.agent_id)
    wait_for(lambda: Agent.objects.filter(status=Status.RUNNING).count() == 2, what="running")
    wait_for(lambda: redis_client.xlen(keys.stream("agent", feed.agent_id)) > 0, what="a price")
    orders = [broker.place_order("kx", "BTC-USD", "buy", D("0.001")) for _ in range(200)]
    for order in orders:
        redis_client.xadd(
            keys.orders("agent", "kx_exec"), {"data": json.dumps({"order_id": order.pk, "session_id": "kx"})}
        )
    # Kill the worker while the stream is being worked through.
    wait_for(lambda: Fill.objects.filter(session_id="kx").exists(), what="the first fills")
    doomed.kill()
    done_at_kill = Fill.objects.filter(session_id="kx").count()
    spawn_worker()

    # One restore once the dead loops' leases lapsed. (Restoring again and again would
    # send again, each time, the starts the previous pass sent that are not running yet.)
    wait_for(lambda: not leases_held(), timeout=15, what="the dead loops' leases to lapse")
    # The session row says running without a loop ever having run it: restarted too.
    assert set(reconcile(start_grace_seconds=0).restarted) == {"kx_exec", "kx_feed", "session:kx"}
    wait_for(
        lambda: not Order.objects.filter(session_id="kx", status__in=("new", "sent")).exists(),
        timeout=60,
        interval=0.2,
        what="the new incarnation to finish the stream",
    )
    fills = Fill.objects.filter(session_id="kx")
    assert fills.count() == len(orders), Order.objects.exclude(status="filled").values_list("reason")[:3]
    assert fills.values("order_id").distinct().count() == len(orders)
    assert done_at_kill < len(orders), "the kill landed mid-stream"
    session = TradingSession.objects.get(pk="kx")
    assert session.cash == session.starting_cash + sum((f.cash_delta for f in fills), D(0))
    assert Position.objects.get(session_id="kx").quantity == D("0.001") * len(orders)

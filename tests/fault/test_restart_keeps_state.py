"""Every worker restarts (issue 5, item 2), once warm (SIGTERM, as a deploy does) and once
by a crash (SIGKILL): the database's desired state decides what comes back. A stopped
session stays stopped, a paused one comes back paused and never fills, a running one
trades again; `manage.py restore` on the new worker brings them back."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from django.conf import settings
from django.core.management import call_command

from agents.runtime import keys
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from control import services
from sessions.models import Order, TradingSession
from tests.conftest import WorkerProcess, wait_for
from tests.fault.conftest import (
    Market,
    assert_one_live_loop_each,
    stop_sessions_and_check,
    wait_for_new_fills,
)


def restore_when_the_old_loops_are_gone(market: Market, before: dict) -> None:
    """Run `manage.py restore` once every lease has lapsed (a held lease means a live
    loop, which restore leaves alone), and wait for the states the database asks for."""
    client = get_redis()
    wait_for(
        lambda: not list(client.scan_iter(match=f"{settings.REDIS_PREFIX}lease:*", count=1000)),
        timeout=15,
        what="the old loops' leases to lapse",
    )
    call_command("restore", stdout=io.StringIO())

    def back() -> bool:
        now = market.states()
        live = [r for r, (desired, _s, _run) in before.items() if desired != Desired.STOPPED]
        return market.all_live() and all(now[r][2] != before[r][2] for r in live)

    wait_for(back, timeout=30, interval=0.1, what="every loop back in its desired state")


def test_a_stopped_session_stays_stopped_and_a_paused_one_comes_back_paused_after_restarts(
    fast_recovery, spawn_worker: Callable[..., WorkerProcess], market, directives
):
    for session_id in ("rs_stop", "rs_pause", "rs_run"):
        market.add_session(session_id)
    workers = [spawn_worker()]
    with directives():
        market.start_everything()
        wait_for_new_fills(market, market.session_ids, what="every session trading")
        services.stop_session("rs_stop")
        services.pause_session("rs_pause")
        wait_for(market.all_live, what="rs_stop stopped and rs_pause paused")
        stopped_run = TradingSession.objects.get(pk="rs_stop").run_id
        orders = {s: Order.objects.filter(session_id=s).count() for s in ("rs_stop", "rs_pause")}
        fills = {s: market.fills(s) for s in ("rs_stop", "rs_pause")}

        # A warm restart: loops end their run at once and say so; desired states stay.
        before = market.states()
        asked = time.monotonic()
        workers[0].stop()
        assert time.monotonic() - asked < 10, "a warm shutdown must not wait for endless loops"
        for (_kind, rid), (desired, status, _run) in market.states().items():
            assert (status, desired) == (Status.STOPPED, before[(_kind, rid)][0]), rid
        workers.append(spawn_worker())
        restore_when_the_old_loops_are_gone(market, before)
        wait_for_new_fills(market, ["rs_run"], what="rs_run trading after the warm restart")

        # A crash restart: statuses still say running/paused; the leases tell the truth.
        before = market.states()
        workers[-1].kill()
        workers.append(spawn_worker())
        restore_when_the_old_loops_are_gone(market, before)
        wait_for_new_fills(market, ["rs_run"], what="rs_run trading after the crash restart")

        # The paused session's loop is alive (it ticks) and places nothing.
        restored_at = time.time()
        beat = keys.heartbeat("session", "rs_pause")
        wait_for(
            lambda: float(get_redis().get(beat) or 0) > restored_at,
            what="the paused session's loop to tick",
        )
        for session_id in ("rs_stop", "rs_pause"):
            assert Order.objects.filter(session_id=session_id).count() == orders[session_id], session_id
            assert market.fills(session_id) == fills[session_id], session_id
        final = TradingSession.objects.get(pk="rs_pause")
        assert (final.desired_state, final.status) == (Desired.PAUSED, Status.PAUSED)
        stopped = TradingSession.objects.get(pk="rs_stop")
        assert (stopped.desired_state, stopped.status, stopped.run_id) == (
            Desired.STOPPED,
            Status.STOPPED,
            stopped_run,
        )
        assert get_redis().hget(keys.flags("session", "rs_pause"), "desired") == Desired.PAUSED
    assert_one_live_loop_each(market)
    stop_sessions_and_check(market, workers)

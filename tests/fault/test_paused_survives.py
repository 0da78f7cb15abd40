"""A paused session stays paused through everything but an explicit resume (issue 10,
item 2): its loop failing and `manage.py start_all`, `manage.py restore`, and a worker
restarted under it. It places no order meanwhile, while another session trades on."""

from __future__ import annotations

import io

from django.core.management import call_command

from agents.models import LogEntry
from agents.runtime import keys
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from control import services
from sessions.models import Order, TradingSession
from tests.conftest import wait_for
from tests.fault.conftest import stop_sessions_and_check, wait_for_new_fills


def held_state() -> tuple[str, str]:
    row = TradingSession.objects.get(pk="ps_held")
    return row.desired_state, row.status


def test_a_paused_session_stays_paused_through_start_all_restore_and_a_worker_restart(
    fast_recovery, spawn_worker, market, directives
):
    first = spawn_worker()
    market.add_session("ps_live")
    market.add_session("ps_held")
    with directives():
        market.start_everything()
        wait_for_new_fills(market, market.session_ids, what="both sessions trading")
        services.pause_session("ps_held")
        wait_for(lambda: held_state() == (Desired.PAUSED, Status.PAUSED), what="the pause confirmed")
        orders_when_paused = Order.objects.filter(session_id="ps_held").count()
        paused_at = TradingSession.objects.get(pk="ps_held").paused_at

        # Its loop fails (the row says error, as a failed step leaves it; the loop, fenced
        # by that, ends without writing). Start everything: it comes back paused.
        TradingSession.objects.filter(pk="ps_held").update(status=Status.ERROR, error_message="a failure")
        wait_for(
            lambda: not get_redis().exists(keys.lease("session", "ps_held")), what="the failed loop to end"
        )
        call_command("start_all", stdout=io.StringIO())
        assert held_state()[0] == Desired.PAUSED
        wait_for(lambda: held_state() == (Desired.PAUSED, Status.PAUSED), what="back, paused")

        # restore changes nothing for it.
        call_command("restore", stdout=io.StringIO())
        assert held_state() == (Desired.PAUSED, Status.PAUSED)

        # The worker is restarted (a warm shutdown: its loops say stopped), then restore.
        first.stop()
        assert held_state() == (Desired.PAUSED, Status.STOPPED)
        second = spawn_worker()
        call_command("restore", stdout=io.StringIO())
        wait_for(market.all_live, timeout=30, what="every loop back in the new worker")
        assert held_state() == (Desired.PAUSED, Status.PAUSED)
        wait_for_new_fills(market, ["ps_live"], what="the other session trading on")
        assert Order.objects.filter(session_id="ps_held").count() == orders_when_paused
        assert TradingSession.objects.get(pk="ps_held").paused_at == paused_at, "paused since then"

        # Only a resume makes it trade.
        services.resume_session("ps_held")
        wait_for_new_fills(market, ["ps_held"], what="the resumed session trading")
        assert LogEntry.objects.filter(session_id="ps_held", message__startswith="resumed:").exists()
    stop_sessions_and_check(market, [first, second], allow_handover=True)

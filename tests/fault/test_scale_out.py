"""Scale-out, shown: two worker processes (two hostnames, as on two machines) share the
loops; one is SIGKILLed while agents and sessions trade, and beat's reconciler moves its
loops to the survivor within 30 s. Nothing is filled twice or lost on the way."""

from __future__ import annotations

import time

from tests.conftest import wait_for
from tests.fault.conftest import (
    assert_one_live_loop_each,
    loops_held_by,
    stop_sessions_and_check,
    wait_for_new_fills,
)

TAKEOVER_LIMIT_SECONDS = 30


def test_two_workers_share_the_loops_and_the_survivor_takes_over_a_killed_ones(
    fast_recovery, spawn_worker, beat, market, directives
):
    doomed = spawn_worker()
    survivor = spawn_worker(loops_only=False)  # also runs the reconciler beat sends
    for session_id in ("so_a", "so_b", "so_c"):
        market.add_session(session_id)
    beat()
    with directives():
        market.start_everything()
        on_doomed, on_survivor = loops_held_by(doomed), loops_held_by(survivor)
        everything = set(market.runnables())
        assert on_doomed | on_survivor == everything and not on_doomed & on_survivor
        assert on_doomed and on_survivor, f"one worker holds every loop: {on_doomed or on_survivor}"
        wait_for_new_fills(market, market.session_ids, what="every session trading")
        before = market.states()

        doomed.kill()
        killed_at = time.monotonic()

        def taken_over() -> bool:
            now = market.states()
            moved = all(now[r][2] != before[r][2] for r in on_doomed)
            return moved and market.all_live()

        wait_for(taken_over, timeout=TAKEOVER_LIMIT_SECONDS, interval=0.1, what="the survivor to take over")
        takeover = time.monotonic() - killed_at
        after = market.states()
        # Loops on the survivor were never restarted: the reconciler touched only lost ones.
        assert all(after[r][2] == before[r][2] for r in on_survivor)
        assert loops_held_by(survivor) == everything
        print(f"takeover of {len(on_doomed)} loops after SIGKILL: {takeover:.1f} s")
        # The moved sessions trade again (their broker may have moved too).
        wait_for_new_fills(market, market.session_ids, what="trading after the takeover")
    assert_one_live_loop_each(market)
    assert "restarted" in survivor.output()  # the reconciler that did it ran on the survivor
    stop_sessions_and_check(market, [doomed, survivor])

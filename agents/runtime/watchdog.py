"""One thread per worker process that notices steps running past their timeout, and
loops held up by the database.

A Python thread cannot be interrupted, so a hung step (a read that never returns) is not
killed: it is abandoned. The watchdog puts the runnable in `error` with the reason and
releases its lease, so a restart starts a new loop at once; the abandoned loop is fenced
(its lease is gone, and it ends without writing when its step ever returns).

A step blocked in a call to the database (a lock held elsewhere, a server restarting) is
not hung: that wait does not count toward its timeout (Loop.step_overdue), and this
thread shows it and keeps the loop's lease alive meanwhile (Loop.waiting_on_database),
since the loop's own thread cannot until the call returns.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from django.db import connections

from agents.runtime.loop_set import LoopSet

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.25


class Watched(Protocol):
    def step_overdue(self, now: float) -> float | None:
        """Seconds the current step has run, when past its timeout; else None."""

    def abandon(self, ran_for: float) -> None:
        """Give the loop up: error status, lease released."""

    def waiting_on_database(self, now: float) -> bool:
        """Show a wait on the database and keep the loop alive meanwhile; True if waiting."""


def watch(loop: Watched) -> None:
    _watched.add(loop)


def unwatch(loop: Watched) -> None:
    _watched.discard(loop)


def check(now: float | None = None) -> int:
    """Abandon every loop whose step is overdue; returns how many."""
    now = time.monotonic() if now is None else now
    abandoned = 0
    for loop in _watched.members():
        try:
            if loop.waiting_on_database(now):
                continue
        except Exception:  # the watchdog must outlive any one loop's trouble
            log.exception("could not keep a loop waiting on the database alive")
        ran_for = loop.step_overdue(now)
        if ran_for is None:
            continue
        unwatch(loop)
        try:
            loop.abandon(ran_for)
            abandoned += 1
        except Exception:  # the watchdog must outlive any one loop's trouble
            log.exception("could not abandon a hung loop")
    if abandoned:
        # This thread's own database connection, used only for those status writes.
        connections.close_all()
    return abandoned


_watched: LoopSet[Watched] = LoopSet("step-watchdog", lambda: CHECK_SECONDS, check)

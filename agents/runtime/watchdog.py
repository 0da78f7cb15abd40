"""One thread per worker process that notices steps running past their timeout.

A Python thread cannot be interrupted, so a hung step (a read that never returns) is not
killed: it is abandoned. The watchdog puts the runnable in `error` with the reason and
releases its lease, so a restart starts a new loop at once; the abandoned loop is fenced
(its lease is gone, and it ends without writing when its step ever returns).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from django.db import connections

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.25


class Watched(Protocol):
    def step_overdue(self, now: float) -> float | None:
        """Seconds the current step has run, when past its timeout; else None."""

    def abandon(self, ran_for: float) -> None:
        """Give the loop up: error status, lease released."""


_lock = threading.Lock()
_watched: set[Watched] = set()
_thread: threading.Thread | None = None


def watch(loop: Watched) -> None:
    global _thread
    with _lock:
        _watched.add(loop)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="step-watchdog", daemon=True)
            _thread.start()


def unwatch(loop: Watched) -> None:
    with _lock:
        _watched.discard(loop)


def check(now: float | None = None) -> int:
    """Abandon every loop whose step is overdue; returns how many."""
    now = time.monotonic() if now is None else now
    with _lock:
        loops = list(_watched)
    abandoned = 0
    for loop in loops:
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


def _run() -> None:
    while True:
        time.sleep(CHECK_SECONDS)  # a period, not a synchronisation
        check()

"""A set of this process's loops that one background thread visits every so often (the
step watchdog, the database heartbeats)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopSet(Generic[T]):
    def __init__(self, name: str, period: Callable[[], float], visit: Callable[[], object]) -> None:
        self.name = name
        self._period = period  # read each round: settings may change (tests)
        self._visit = visit
        self._lock = threading.Lock()
        self._members: set[T] = set()
        self._thread: threading.Thread | None = None

    def add(self, loop: T) -> None:
        """Add the loop; the thread starts with the first one."""
        with self._lock:
            self._members.add(loop)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def discard(self, loop: T) -> None:
        with self._lock:
            self._members.discard(loop)

    def members(self) -> list[T]:
        with self._lock:
            return list(self._members)

    def _run(self) -> None:
        while True:
            time.sleep(self._period())  # a period, not a synchronisation
            self._visit()

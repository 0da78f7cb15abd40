"""A dependency that is away for a while (the database locked or restarting, Redis down)
is an outage, not a fault of the step that met it: the loop waits and retries with
backoff, says what it waits for, and carries on by itself once it answers again.

`outage_of` is the one place that tells the two apart. A locked SQLite file, a refused
or dropped connection, a statement cancelled by a lock timeout are outages; an integrity
error, a missing table or column, a syntax error are real errors (they would fail again
at once) and put the runnable in `error`.
"""

from __future__ import annotations

import logging
import time

import redis
from django.db import InterfaceError, OperationalError

DATABASE = "database"
REDIS = "redis"

# Lower-cased fragments of the messages SQLite, psycopg and Django give for a database
# that is busy or unreachable, on both vendors.
_DATABASE_AWAY = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "unable to open database file",
    "disk i/o error",
    "connection",  # refused, reset, already closed, "server closed the connection", ...
    "could not connect",
    "terminating connection",
    "the database system is",  # starting up, shutting down, in recovery mode
    "lock timeout",
    "statement timeout",
    "canceling statement",
    "deadlock detected",
    "could not serialize access",
    "timeout expired",
    "ssl syscall",
    "server closed",
)

# Backoff between retries: from the first to the longest.
FIRST_DELAY = 0.1
LONGEST_DELAY = 2.0


def outage_of(exc: BaseException) -> str | None:
    """DATABASE or REDIS when `exc` says that dependency is away for now; else None."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return REDIS
    if isinstance(exc, OperationalError | InterfaceError):
        text = str(exc).lower()
        if any(fragment in text for fragment in _DATABASE_AWAY):
            return DATABASE
    return None


class Outage:
    """What a loop is waiting for and since when, with the backoff between its retries;
    logged once when it starts and once when it ends, not at every retry."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.what: str | None = None
        self.since = 0.0  # wall-clock time the wait began
        self.delay = 0.0

    def failed(self, what: str, exc: BaseException) -> float:
        """Note a failed attempt; returns how long to wait before the next one."""
        if self.what != what:
            if self.what is None:
                self.since = time.time()
            self.what = what
            self.log.warning("waiting for %s (%s); retrying", label(what), exc)
        self.delay = min(LONGEST_DELAY, max(FIRST_DELAY, self.delay * 2))
        return self.delay

    def noticed(self, what: str, since: float) -> None:
        """Another thread saw the loop held up by `what` since `since` (no retry yet)."""
        if self.what is None:
            self.what, self.since = what, since
            self.log.warning("waiting for %s (a call has not returned yet)", label(what))

    def recovered(self) -> None:
        if self.what is not None:
            self.log.warning(
                "%s answers again after %.1f s; continuing", label(self.what), time.time() - self.since
            )
        self.what, self.since, self.delay = None, 0.0, 0.0

    def gauges(self) -> dict[str, str | float]:
        """The loop's live metrics that show the wait (cleared with "" and 0)."""
        return {"waiting_for": self.what or "", "waiting_since": self.since if self.what else 0}


def label(what: str) -> str:
    """ "the database", "Redis": what a sentence says it waits for."""
    return "Redis" if what == REDIS else f"the {what}"

"""Pages and the API while the database is locked or away.

A read (GET, HEAD, OPTIONS) waits at most READ_WAIT_SECONDS for a lock held elsewhere,
instead of the 20 s a writer may wait (SQLite's busy timeout) or forever (a PostgreSQL
lock): a viewer gets an answer within seconds. And an outage of the database (what
agents.runtime.outage calls one: locked, restarting, unreachable) answers 503 with a
sentence and Retry-After, in JSON under /api/, instead of a 500.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

from agents.runtime.outage import DATABASE, outage_of
from control.errors import json_error

READ_WAIT_SECONDS = 3.0
RETRY_AFTER_SECONDS = 5
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SENTENCE = (
    "The database is locked or unreachable just now, so this could not be read or changed "
    "(nothing was changed). Try again in a few seconds."
)


class DatabaseOutage:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in READ_METHODS:
            return self.get_response(request)
        limited = _limit_waits()
        try:
            return self.get_response(request)
        finally:
            if limited:
                _restore_waits()

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if outage_of(exception) != DATABASE:
            return None
        if request.path_info.startswith("/api/"):
            response = json_error(503, SENTENCE, "database_unavailable")
        else:
            response = HttpResponse(SENTENCE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


def _limit_waits() -> bool:
    """Shorten this connection's wait for locks; False if the database cannot be reached
    (the view then meets the outage itself and answers 503)."""
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute(f"PRAGMA busy_timeout = {int(READ_WAIT_SECONDS * 1000)}")
            elif connection.vendor == "postgresql":
                cursor.execute(f"SET lock_timeout = {int(READ_WAIT_SECONDS * 1000)}")
            else:
                return False
    except DatabaseError:
        return False
    return True


def _restore_waits() -> None:
    """Back to the configured wait, for a connection kept for the next request."""
    if connection.connection is None:
        return  # closed at the end of the request: the next one starts afresh
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                timeout = settings.DATABASES["default"].get("OPTIONS", {}).get("timeout", 5)
                cursor.execute(f"PRAGMA busy_timeout = {int(float(timeout) * 1000)}")
            else:
                cursor.execute("RESET lock_timeout")
    except DatabaseError:
        connection.close()  # never hand on a connection with the short wait

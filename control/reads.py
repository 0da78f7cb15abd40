"""Reads that must agree with each other (a session's cash and its positions), in one
transaction that never takes the write lock.

On SQLite this project begins transactions IMMEDIATE (settings: a read-then-write
transaction cannot deadlock on lock upgrade), which takes the database's write lock: a
page reading in `transaction.atomic()` waited for every writer, and for the whole busy
timeout behind a lock held elsewhere. A read begins DEFERRED instead: a WAL snapshot that
waits for no writer. On PostgreSQL a transaction takes no lock by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def read_snapshot() -> Iterator[None]:
    """A transaction for reads only: on SQLite a DEFERRED one (no write lock)."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    connection.ensure_connection()
    saved = connection.transaction_mode
    connection.transaction_mode = "DEFERRED"
    try:
        with transaction.atomic():
            connection.transaction_mode = saved  # only this BEGIN is deferred
            yield
    finally:
        connection.transaction_mode = saved

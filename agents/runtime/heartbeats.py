"""The database heartbeats of every loop in a process, written together off the loops' threads.

Redis has each loop's heartbeat every tick; the database (what the page and the reconciler
read) has it every HEARTBEAT_DB_SECONDS. Writing it from each loop's thread cost each of
hundreds of loops a connection and a transaction of its own; one thread writes them all
in one transaction, with one pipeline for the counters. Each row is still written only
where it names the loop's run, so a superseded loop learns it here and stops at its next
iteration (Loop.db_superseded), as does one whose row says it ended.

While Redis is away the rows are still written, with the counters last read from it and
what the loop waits for (its `waiting_for`/`waiting_since` metrics), so the page, which
cannot read Redis then, shows the wait and its age from the database.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import redis
from django.conf import settings
from django.db import DatabaseError, connections, models, transaction
from django.utils import timezone

from agents.runtime import keys, lifecycle
from agents.runtime.loop_set import LoopSet
from agents.runtime.redis import get_redis

log = logging.getLogger(__name__)


class Beating(Protocol):
    kind: str
    model: type[models.Model]
    rid: str
    run_id: str
    db_superseded: bool
    outage: Any

    def heartbeat_fields(self) -> dict[str, Any]: ...

    def flush(self) -> None: ...


def register(loop: Beating) -> None:
    _loops.add(loop)


def unregister(loop: Beating) -> None:
    _loops.discard(loop)


def write_all() -> int:
    """Write every registered loop's heartbeat row now; returns how many rows were written."""
    loops = _loops.members()
    if not loops:
        return 0
    snapshots = _snapshots(loops)
    now = timezone.now()
    written = 0
    with transaction.atomic():
        for loop, snapshot in zip(loops, snapshots, strict=True):
            fields: dict[str, Any] = {"last_heartbeat": now, **_extra(loop)}
            if snapshot:
                fields["metrics"] = {**numbers(snapshot), **fields.get("metrics", {}), **_waiting(loop)}
            # A row that says stopped or error has no live loop, whatever its run says.
            if lifecycle.loop_heartbeat(loop.model, loop.rid, loop.run_id, fields):
                written += 1
            else:
                loop.db_superseded = True
    # One flush per kind of loop: log buffers are per process, not per loop.
    for one in {type(loop).flush: loop for loop in loops}.values():
        try:
            one.flush()
        except Exception:  # log rows are best effort
            log.exception("could not flush log entries")
    return written


# The counters last read from Redis, per loop: written again while Redis is away.
_last_snapshots: dict[tuple[str, str, str], dict[str, str]] = {}


def _snapshots(loops: list[Beating]) -> list[dict[str, str]]:
    """Each loop's live counters from Redis, or the last ones read while it is away."""
    ids = [(loop.kind, loop.rid, loop.run_id) for loop in loops]
    pipe = get_redis().pipeline(transaction=False)
    for loop in loops:
        pipe.hgetall(keys.metrics(loop.kind, loop.rid))
    try:
        snapshots = pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError):
        return [_last_snapshots.get(i, {}) for i in ids]
    live = set(ids)
    for gone in [i for i in _last_snapshots if i not in live]:
        del _last_snapshots[gone]
    _last_snapshots.update(zip(ids, snapshots, strict=True))
    return snapshots


def _waiting(loop: Beating) -> dict[str, Any]:
    """What the loop waits for, as its metrics say it in Redis (strings are not counters)."""
    outage = getattr(loop, "outage", None)
    return outage.gauges() if outage is not None and outage.what else {}


def _extra(loop: Beating) -> dict[str, Any]:
    try:
        return loop.heartbeat_fields()
    except Exception:  # read while the loop's thread changes it: next time
        log.debug("heartbeat fields of %s:%s skipped", loop.kind, loop.rid, exc_info=True)
        return {}


def _round() -> None:
    try:
        write_all()
    except (DatabaseError, redis.RedisError) as exc:
        # The next round writes them again; the Redis heartbeat carries on meanwhile.
        log.warning("database heartbeats not written (%s)", exc)
    finally:
        connections.close_all()


_loops: LoopSet[Beating] = LoopSet("db-heartbeats", lambda: settings.HEARTBEAT_DB_SECONDS, _round)


def numbers(snapshot: dict[str, str]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for k, v in snapshot.items():
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                continue
    return out

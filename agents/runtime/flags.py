"""Flags: the Redis mirror of each runnable's desired state, and its wake-ups.

The database is the source of truth; these keys only make loops react in milliseconds.
When a flag is missing the loop reads the database instead, and the reconciler
rewrites all flags from the database.
"""

from __future__ import annotations

import redis

from agents.runtime import keys
from agents.runtime.redis import get_redis


def write(
    kind: str, rid: str, desired: str, run_id: str, config_rev: str = "", client: redis.Redis | None = None
) -> None:
    """Mirror the database row's desired state and run_id, then wake the loop."""
    r = client or get_redis()
    pipe = r.pipeline()
    pipe.hset(keys.flags(kind, rid), mapping={"desired": desired, "run_id": run_id, "config_rev": config_rev})
    pipe.publish(keys.wakeups(), f"{kind}:{rid}")
    pipe.publish(keys.changes(), f"{kind}:{rid}")
    pipe.execute()


def announce(kind: str, rid: str, client: redis.Redis | None = None) -> None:
    """Say that a runnable's observed state changed (best effort: watchers also poll)."""
    try:
        (client or get_redis()).publish(keys.changes(), f"{kind}:{rid}")
    except redis.RedisError:
        pass


def wake(kind: str, rid: str, client: redis.Redis | None = None) -> None:
    """Wake the loop so it re-reads its state now rather than at its next tick."""
    (client or get_redis()).publish(keys.wakeups(), f"{kind}:{rid}")


def drop(kind: str, rid: str, client: redis.Redis | None = None) -> None:
    """Remove every key of a runnable that no longer exists."""
    r = client or get_redis()
    r.delete(keys.flags(kind, rid), keys.heartbeat(kind, rid), keys.metrics(kind, rid))

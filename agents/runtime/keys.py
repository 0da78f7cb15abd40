"""Every Redis key the runtime uses, in one place, under settings.REDIS_PREFIX.

A runnable is addressed as (kind, id): kind is "agent" or "session".
"""

from django.conf import settings


def _k(*parts: str) -> str:
    return settings.REDIS_PREFIX + ":".join(parts)


def lease(kind: str, rid: str) -> str:
    """Holds the run_id of the one loop allowed to run (SET NX PX)."""
    return _k("lease", kind, rid)


def flags(kind: str, rid: str) -> str:
    """Hash mirroring the database: desired, run_id, config_rev. Rebuilt by the reconciler."""
    return _k("flags", kind, rid)


def wakeups() -> str:
    """Pub/sub channel: "<kind>:<id>" wakes that runnable's loop (agents.runtime.wakeups)."""
    return _k("wakeups")


def heartbeat(kind: str, rid: str) -> str:
    """Unix time of the loop's last tick (with a TTL)."""
    return _k("hb", kind, rid)


def metrics(kind: str, rid: str) -> str:
    """Hash of the loop's live counters."""
    return _k("metrics", kind, rid)


def stream(kind: str, rid: str) -> str:
    """The runnable's output stream (docs/architecture.md: stream:agent:<id>)."""
    return _k("stream", kind, rid)


def status(kind: str, rid: str) -> str:
    """JSON of what a running kind reports about its own condition for its card (e.g. the
    sentiment kind's failing feeds), written when it changes; absent when all is well."""
    return _k("status", kind, rid)


def cursor(kind: str, rid: str) -> str:
    """Hash of a consumer's position in each input stream: producer -> last entry id."""
    return _k("cursor", kind, rid)


def worker(hostname: str) -> str:
    """A live worker's heartbeat (with a TTL)."""
    return _k("worker", hostname)


def worker_pattern() -> str:
    return _k("worker", "*")


def all_keys_pattern() -> str:
    return settings.REDIS_PREFIX + "*"


def orders(kind: str, rid: str) -> str:
    """The execution agent's incoming orders (`orders:agent:<id>`), read by consumer group
    "execution" so each order is handled once; entries are {"data": json}."""
    return _k("orders", kind, rid)


def changes() -> str:
    """Pub/sub channel: "<kind>:<id>" whenever a runnable's status or desired state changes,
    so whoever shows state (the page) can look now instead of at its next poll."""
    return _k("changes")


def exchange_markets(exchange_id: str, origin: str) -> str:
    """The spot symbols an exchange lists (JSON, with a TTL), per API origin (base URL or
    "default"): what a market_data config is checked against when it is saved."""
    return _k("exchange", "markets", exchange_id, origin)

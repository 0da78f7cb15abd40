"""Health checks: database, Redis, workers, host, stale heartbeats.

Only parts the system uses are checked: pushes reach the web processes through Redis
pub/sub and the database (control/live), not through a Channels layer, so none is
configured and none is checked.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from agents.net.redact import redact_text
from agents.runtime.redis import get_redis
from agents.runtime.worker_heartbeat import live_workers

# How much each check weighs in the 0..100 score.
WEIGHTS = {"database": 40, "redis": 40, "workers": 20}


def _timed(fn) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        extra = fn() or {}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2), **extra}
    except Exception as exc:  # a check reports the failure; it never raises
        # Shown to logged-in users only, and never with a URL's password in it.
        return {"ok": False, "error": redact_text(f"{type(exc).__name__}: {exc}")}


def check_database() -> dict[str, Any]:
    def ping() -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    return {**_timed(ping), "vendor": connection.vendor}


def check_redis() -> dict[str, Any]:
    return _timed(lambda: get_redis().ping() and None)


def watched_queues() -> dict[str, str]:
    """The queues that must each have a live worker, by what they carry."""
    return {settings.LOOP_QUEUE: "loop", settings.CELERY_TASK_DEFAULT_QUEUE: "control"}


def check_workers() -> dict[str, Any]:
    """A live worker on each queue: one on the control queue does not run a single loop.

    `queues` says, per queue, which workers take it; `ok` only when none is empty, and
    then `error` names the empty ones and what stops because of it.
    """
    queues = watched_queues()
    try:
        workers = live_workers()
    except redis.RedisError as exc:
        return {
            "ok": False,
            "count": 0,
            "queues": {q: {"ok": False, "hostnames": []} for q in queues},
            "error": redact_text(f"Redis unreachable: {exc}"),
        }
    per_queue = {
        queue: sorted(w["hostname"] for w in workers if queue in (w.get("queues") or ())) for queue in queues
    }
    names = sorted({name for hosts in per_queue.values() for name in hosts})
    report: dict[str, Any] = {
        "ok": all(per_queue.values()),
        "count": len(names),
        "hostnames": names,
        "queues": {q: {"ok": bool(hosts), "hostnames": hosts} for q, hosts in per_queue.items()},
    }
    missing = [q for q, hosts in per_queue.items() if not hosts]
    if missing:
        report["error"] = "; ".join(
            f"no worker takes the {queues[q]} queue ({q!r}): {CONSEQUENCE[queues[q]]}" for q in missing
        )
    return report


# What stops when a queue has no worker (the alert's second half).
CONSEQUENCE = {
    "loop": "no agent or session loop can run or restart",
    "control": "the reconciler does not run, so nothing lost is restarted",
}


def host_stats() -> dict[str, float]:
    return {
        # Non-blocking: the CPU share since the previous call in this process.
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_percent": psutil.virtual_memory().percent,
        "disk_percent": psutil.disk_usage(str(settings.BASE_DIR)).percent,
    }


def health() -> dict[str, Any]:
    """The full report behind GET /api/system/health."""
    from control.reconcile import stale_heartbeats

    checks = {
        "database": check_database(),
        "redis": check_redis(),
        "workers": check_workers(),
    }
    stale: list[str] = []
    if checks["redis"]["ok"] and checks["database"]["ok"]:
        stale = stale_heartbeats()
    host = host_stats()
    return {
        "score": score(checks, host, len(stale)),
        "checks": checks,
        "host": host,
        "stale_heartbeats": len(stale),
        "stale_agents": stale,
    }


def score(checks: dict[str, dict], host: dict[str, float], stale: int) -> int:
    """Weighted share of passing checks, less penalties for stale loops and a full host."""
    value = sum(_earned(weight, checks.get(name, {})) for name, weight in WEIGHTS.items())
    value -= min(20, 5 * stale)
    value -= 5 if host.get("memory_percent", 0) > 90 else 0
    value -= 5 if host.get("disk_percent", 0) > 90 else 0
    return max(0, min(100, int(value)))


def _earned(weight: int, check: dict) -> float:
    """A check's weight if it passes; the workers' weight is shared equally by their queues,
    so a missing loop worker and a missing control worker each cost their part."""
    queues = check.get("queues")
    if queues:
        return weight * sum(1 for q in queues.values() if q.get("ok")) / len(queues)
    return weight if check.get("ok") else 0


def cached_health(max_age_seconds: float = 5.0) -> dict[str, Any]:
    """The health report, recomputed at most every few seconds (the page and status poll it)."""
    return cache.get_or_set("control:health", health, max_age_seconds)


def cached_score(max_age_seconds: float = 5.0) -> int:
    """The health score, recomputed at most every few seconds (status is polled often)."""
    return cached_health(max_age_seconds)["score"]


def liveness() -> bool:
    """The cheap check behind /healthz: do the database and Redis answer?

    Only up or down: /healthz is anonymous, so it names no error, vendor or address
    (logged-in users see those in /api/system/health)."""
    return check_database()["ok"] and check_redis()["ok"]

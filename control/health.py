"""Health checks: database, Redis, workers, channel layer, host, stale heartbeats."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from agents.runtime.redis import get_redis
from agents.runtime.worker_heartbeat import live_workers

# How much each check weighs in the 0..100 score.
WEIGHTS = {"database": 35, "redis": 35, "workers": 20, "channel_layer": 10}


def _timed(fn) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        extra = fn() or {}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2), **extra}
    except Exception as exc:  # a check reports the failure; it never raises
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def check_database() -> dict[str, Any]:
    def ping() -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    return {**_timed(ping), "vendor": connection.vendor}


def check_redis() -> dict[str, Any]:
    return _timed(lambda: get_redis().ping() and None)


def check_workers() -> dict[str, Any]:
    try:
        workers = live_workers()
    except redis.RedisError as exc:
        return {"ok": False, "count": 0, "error": f"Redis unreachable: {exc}"}
    names = sorted(w["hostname"] for w in workers)
    return {"ok": bool(workers), "count": len(workers), "hostnames": names}


def check_channel_layer() -> dict[str, Any]:
    """Round-trip a message through the channel layer (what the live page relies on)."""

    async def roundtrip() -> None:
        layer = get_channel_layer()
        if layer is None:
            raise RuntimeError("no channel layer configured")
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        await asyncio.wait_for(layer.receive(channel), timeout=2)

    return _timed(lambda: async_to_sync(roundtrip)())


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
        "channel_layer": check_channel_layer(),
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
    value = sum(weight for name, weight in WEIGHTS.items() if checks.get(name, {}).get("ok"))
    value -= min(20, 5 * stale)
    value -= 5 if host.get("memory_percent", 0) > 90 else 0
    value -= 5 if host.get("disk_percent", 0) > 90 else 0
    return max(0, min(100, int(value)))


def cached_health(max_age_seconds: float = 5.0) -> dict[str, Any]:
    """The health report, recomputed at most every few seconds (the page and status poll it)."""
    return cache.get_or_set("control:health", health, max_age_seconds)


def cached_score(max_age_seconds: float = 5.0) -> int:
    """The health score, recomputed at most every few seconds (status is polled often)."""
    return cached_health(max_age_seconds)["score"]


def liveness() -> dict[str, Any]:
    """The cheap check behind /healthz: database and Redis only."""
    checks = {"database": check_database(), "redis": check_redis()}
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}

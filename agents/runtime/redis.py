"""The Redis client shared by a process (loops wait on agents.runtime.wakeups, not Redis)."""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_clients: dict[tuple[str, str], redis.Redis] = {}


def _client(purpose: str, **kwargs) -> redis.Redis:
    key = (settings.REDIS_URL, purpose)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = redis.Redis.from_url(
                settings.REDIS_URL, decode_responses=True, health_check_interval=30, **kwargs
            )
            _clients[key] = client
        return client


def get_redis() -> redis.Redis:
    """Client for quick commands: fails within a few seconds when Redis is unreachable."""
    return _client("quick", socket_timeout=5, socket_connect_timeout=3)

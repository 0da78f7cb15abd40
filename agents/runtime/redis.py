"""Redis clients shared by a process: one for quick commands, one for blocking waits.

Two pools because a blocking BLPOP needs a socket timeout longer than its own wait,
while ordinary commands should fail fast when Redis is gone.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

# Longest blocking wait (BLPOP) any loop does; ticks are capped at 60 s by the schemas.
MAX_BLOCK_SECONDS = 60.0

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


def get_blocking_redis() -> redis.Redis:
    """Client for BLPOP waits: its socket timeout exceeds the longest wait."""
    return _client("blocking", socket_timeout=MAX_BLOCK_SECONDS + 10, socket_connect_timeout=3)

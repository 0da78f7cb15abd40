"""Each worker process says it is alive by refreshing a Redis key with a TTL.

Health counts these keys; they carry the project's prefix, so workers of other
installs (or test runs) sharing the Redis are not counted.
"""

from __future__ import annotations

import json
import os
import threading
import time

import redis

from agents.runtime import keys
from agents.runtime.redis import get_redis

INTERVAL_SECONDS = 5
TTL_SECONDS = 15

_stop = threading.Event()
_hostname = ""


def start(hostname: str) -> None:
    global _hostname
    _hostname = hostname
    _stop.clear()
    threading.Thread(target=_beat, name="worker-heartbeat", daemon=True).start()


def stop() -> None:
    _stop.set()
    try:
        get_redis().delete(keys.worker(_hostname))
    except redis.RedisError:
        pass


def _beat() -> None:
    started = time.time()
    while not _stop.is_set():
        try:
            get_redis().set(
                keys.worker(_hostname),
                json.dumps(
                    {"hostname": _hostname, "pid": os.getpid(), "started": started, "ts": time.time()}
                ),
                ex=TTL_SECONDS,
            )
        except redis.RedisError:
            pass  # Redis is down; health reports that on its own
        _stop.wait(INTERVAL_SECONDS)


def live_workers(client: redis.Redis | None = None) -> list[dict]:
    r = client or get_redis()
    names = list(r.scan_iter(match=keys.worker_pattern(), count=500))
    values = r.mget(names) if names else []
    return [json.loads(v) for v in values if v]

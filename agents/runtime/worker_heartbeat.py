"""Each worker process says it is alive, and which queues it takes, by refreshing a Redis
key with a TTL.

Health counts these keys per queue (a control worker is no loop worker); they carry the
project's prefix, so workers of other installs (or test runs) sharing the Redis are not
counted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable

import redis

from agents.runtime import keys
from agents.runtime.redis import get_redis

# A killed worker's key outlives it by at most TTL_SECONDS: that is how long health may
# still count a dead worker. Three missed beats and a margin before it lapses.
INTERVAL_SECONDS = 2
TTL_SECONDS = 8

_stop = threading.Event()
_hostname = ""


def queues_of(consumer) -> list[str]:
    """The queues a Celery worker consumes from (its -Q), given the worker_ready sender."""
    try:
        return sorted(consumer.app.amqp.queues.consume_from)
    except AttributeError:  # not a worker consumer (a test calling start() by hand)
        return []


def start(hostname: str, queues: Iterable[str] = ()) -> None:
    global _hostname
    _hostname = hostname
    _stop.clear()
    threading.Thread(target=_beat, args=(sorted(queues),), name="worker-heartbeat", daemon=True).start()


def stop() -> None:
    _stop.set()
    try:
        get_redis().delete(keys.worker(_hostname))
    except redis.RedisError:
        pass


def _beat(queues: list[str]) -> None:
    started = time.time()
    while not _stop.is_set():
        try:
            get_redis().set(
                keys.worker(_hostname),
                json.dumps(
                    {
                        "hostname": _hostname,
                        "pid": os.getpid(),
                        "queues": queues,
                        "started": started,
                        "ts": time.time(),
                    }
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

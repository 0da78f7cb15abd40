"""Wake-ups for the loops of one process: one Redis subscription, a thread Event per loop.

A loop waits for its next tick on its own Event, so the wait ends exactly on time (a
BLPOP's timeout is rounded to Redis's 100 ms clock) and costs no Redis connection. A
person's stop/pause/resume publishes "<kind>:<id>" on one channel (agents.runtime.lifecycle);
this process's listener thread sets the Events of the loops it names. A wake-up that is
lost (the subscription was down) only delays the change to the loop's next tick, when it
reads its flags anyway; after a reconnect every loop is woken to look at once.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

import redis
from django.conf import settings

from agents.runtime import keys

log = logging.getLogger(__name__)

_lock = threading.Lock()
_events: dict[str, set[threading.Event]] = defaultdict(set)
_listener: threading.Thread | None = None


def register(kind: str, rid: str) -> threading.Event:
    """The Event that the next wake-up of (kind, rid) sets; call `unregister` when done."""
    event = threading.Event()
    with _lock:
        _events[f"{kind}:{rid}"].add(event)
        _ensure_listener()
    return event


def unregister(kind: str, rid: str, event: threading.Event) -> None:
    with _lock:
        events = _events.get(f"{kind}:{rid}")
        if events is not None:
            events.discard(event)
            if not events:
                del _events[f"{kind}:{rid}"]


def wake_local(name: str | None = None) -> None:
    """Set the Events of one runnable ("<kind>:<id>") in this process, or of all."""
    with _lock:
        if name is None:
            targets = [e for events in _events.values() for e in events]
        else:
            targets = list(_events.get(name, ()))
    for event in targets:
        event.set()


def _ensure_listener() -> None:
    global _listener
    if _listener is None or not _listener.is_alive():
        _listener = threading.Thread(target=_listen, name="loop-wakeups", daemon=True)
        _listener.start()


def _listen() -> None:
    delay = 0.1
    # Its own connection: a subscribed connection can do nothing else. No read timeout:
    # it waits for messages for as long as the process lives; health checks find a dead peer.
    client = redis.Redis.from_url(
        settings.REDIS_URL, decode_responses=True, socket_connect_timeout=3, health_check_interval=30
    )
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(keys.wakeups())
            if delay > 0.1:
                log.warning("loop wake-ups: subscribed again")
            delay = 0.1
            # Wake-ups sent while unsubscribed are lost: every loop looks at its flags now.
            wake_local()
            for message in pubsub.listen():
                if message.get("type") == "message":
                    wake_local(str(message["data"]))
        except redis.RedisError as exc:
            if delay == 0.1:
                log.warning("loop wake-ups: Redis unreachable (%s); loops fall back to their ticks", exc)
            threading.Event().wait(delay)  # back off before reconnecting
            delay = min(2.0, delay * 2)
        finally:
            try:
                pubsub.close()
            except redis.RedisError:
                pass

"""The state-change announcements (agents.runtime.lifecycle) the hub listens to on Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


async def watch_changes(on_change: Callable[[str], None]) -> None:
    """Call `on_change("<kind>:<id>")` for each announced change, until cancelled. Best
    effort: with Redis down it retries, backing off, and the hub's periodic sweep goes on."""
    import redis.asyncio as aioredis
    from django.conf import settings

    from agents.runtime import keys

    delay = 0.5
    while True:
        client = aioredis.from_url(settings.REDIS_URL, decode_responses=True)
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe(keys.changes())
            delay = 0.5
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    on_change(str(message.get("data")))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis down: the periodic sweep still runs
            log.debug("change watch interrupted (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)
        finally:
            try:
                await client.aclose()
            except Exception:
                pass

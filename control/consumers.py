"""The panel's websockets: /ws/control/ (HTML for htmx) and /ws/events/ (JSON for programs).

Both only listen to the per-process hub (control.live); they never query on their own.
Anonymous connections are refused (closed with 4401).
"""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from control.live import hub
from control.page import FeedFilter

UNAUTHENTICATED = 4401


class _HubConsumer(AsyncWebsocketConsumer):
    wants_html = True
    fresh = True
    stale = False
    can_control = False
    feed_filter = FeedFilter()

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        self.can_control = await database_sync_to_async(user.has_perm)("control.control")
        await self.accept()
        hub.join(self)

    async def disconnect(self, code: int) -> None:
        hub.leave(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page says what its activity feed shows: `{"feed_filter": {"level", "source"}}`,
        so the hub sends this socket only the new entries it shows. Anything else: ignored."""
        try:
            chosen = json.loads(text_data or "").get("feed_filter")
        except (ValueError, AttributeError):
            return
        if isinstance(chosen, dict):
            self.feed_filter = FeedFilter.parse(chosen.get("level"), chosen.get("source"))

    async def deliver(self, text: str) -> None:
        await self.send(text_data=text)


class ControlConsumer(_HubConsumer):
    """Out-of-band swaps of the page's partials, as their objects change."""


class EventsConsumer(_HubConsumer):
    """`{"type": "agent.status|session.status|system.status|trade|metrics|alert", "data", "ts", "seq"}`."""

    wants_html = False

"""The panel's websockets: /ws/control/ (HTML for htmx) and /ws/events/ (JSON for programs).

Both only listen to the per-process hub (control.live.hub); they never query on their own,
except for the login check (control.live.socket_auth). Anonymous connections are refused
(closed with 4401); an open socket closes with 4401 when its login ends and with 4403
when it was opened with the `control` permission and that is removed.
"""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from control.auth import may_control
from control.live.hub import hub
from control.live.socket_auth import LoginWatch
from control.web.dashboard_context import FeedFilter

UNAUTHENTICATED = 4401


class _HubConsumer(AsyncWebsocketConsumer):
    wants_html = True
    fresh = True
    stale = False
    can_control = False
    watch: LoginWatch | None = None
    feed_filter = FeedFilter()

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accepted, then closed with the code: a close before the accept reaches the
            # browser as a failed handshake (1006), which the page retries for good instead
            # of going to the login form (a login ended while the page was reconnecting).
            await self.accept()
            await self.close(code=UNAUTHENTICATED)
            return
        self.can_control = await database_sync_to_async(may_control)(user)
        await self.accept()
        hub.join(self)
        self.watch = LoginWatch(self.scope, self._login_lost, had_control=self.can_control)
        self.watch.start()

    async def _login_lost(self, code: int) -> None:
        # Off the hub first: no push reaches the socket once its login is gone.
        hub.leave(self)
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        hub.leave(self)
        if self.watch is not None:
            await self.watch.stop()

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

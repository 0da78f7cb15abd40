"""Sending one pass's changes to every open socket, each getting what it may see."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from control.live.rendering import feed_swap
from control.web.dashboard_context import FeedFilter

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One sweep's changes: html per permission level, and JSON events."""

    # One websocket message per part: htmx parses each message as one fragment, and a
    # table row only survives HTML parsing when it comes first (DOM of <template>).
    html: dict[bool, list[str]] = field(default_factory=dict)
    full: dict[bool, list[str]] = field(default_factory=dict)  # every part, for new listeners
    events: list[dict[str, Any]] = field(default_factory=list)
    # New activity entries (entry, its html): each listener gets those its filter shows.
    feed: list[tuple[dict[str, Any], str]] = field(default_factory=list)


class Listener:
    """What the hub needs of a consumer."""

    can_control: bool
    wants_html: bool
    fresh: bool  # joined since the last sweep: gets every part once
    stale: bool = False  # a push to it failed: gets every part at the next full sweep
    feed_filter: FeedFilter = FeedFilter()  # what its page's activity feed shows

    async def deliver(self, text: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


async def deliver(frame: Frame, listeners: Iterable[Listener]) -> None:
    """Each listener gets its level's parts (every part if it is fresh) and the feed
    entries its filter shows, or the JSON events; one that fails is marked stale."""
    for listener in list(listeners):
        try:
            if listener.wants_html:
                if listener.fresh and listener.can_control in frame.full:
                    listener.fresh = False
                    parts = frame.full[listener.can_control]
                else:
                    parts = frame.html.get(listener.can_control, [])
                for text in parts:
                    await listener.deliver(text)
                feed = feed_swap(frame.feed, listener.feed_filter) if frame.feed else ""
                if feed:
                    await listener.deliver(feed)
            else:
                for event in frame.events:
                    await listener.deliver(json.dumps(event, cls=DjangoJSONEncoder))
        except Exception:
            # A closed socket (its disconnect handler removes it) or a full one: what it
            # missed is not known, so it gets every part again.
            listener.stale = True
            log.debug("could not deliver to a listener", exc_info=True)

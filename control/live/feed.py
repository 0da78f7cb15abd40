"""The activity feed's new entries since the hub last looked."""

from __future__ import annotations

from typing import Any

from control.live.rendering import feed_item
from control.web import dashboard_context as page


class FeedCursor:
    def __init__(self) -> None:
        self._after: int | None = None

    def new_entries(self) -> list[tuple[dict[str, Any], str]]:
        """Activity entries new since the last call, each rendered once; the first call
        only marks where the feed stands (the page was rendered with what came before)."""
        if self._after is None:
            self._after = page.newest_feed_id()
            return []
        entries = page.feed_entries(after=self._after)
        if not entries:
            return []
        self._after = entries[-1]["id"]
        return [(item, feed_item(item)) for item in entries]

"""The HTML the hub pushes: the page's own partials as out-of-band swaps, the live-times
script, and activity feed entries filtered per socket."""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from control.templatetags.panel import json_script_safe
from control.web.dashboard_context import AgentCard, FeedFilter

TEMPLATE = "control/index.html"


def render_part(name: str, context: dict[str, Any], can_control: bool) -> str:
    """One partial of the page, swapped in out of band."""
    # Stripped: whitespace between fragments would reach htmx as nameless swap targets.
    context = {**context, "oob": True, "can_control": can_control}
    return render_to_string(f"{TEMPLATE}#{name}", context).strip()


def times_part(cards: list[AgentCard]) -> str:
    """The agents' "last active" times, for the page to show as ticking relative times."""
    times = {
        f"agent-{c.agent_id}": c.agent["last_active"].isoformat()
        for c in cards
        if c.agent.get("last_active") is not None
    }
    body = json_script_safe(times)
    return (
        # The same text while no agent was active: then it is not pushed again.
        f'<script type="application/json" id="live-times" hx-swap-oob="true">{body}</script>'
    )


def feed_item(item: dict[str, Any]) -> str:
    """One activity feed entry, rendered once for every socket."""
    return render_to_string(f"{TEMPLATE}#feed-item", {"item": item}).strip()


def feed_swap(entries: list[tuple[dict[str, Any], str]], feed_filter: FeedFilter) -> str:
    """The entries `feed_filter` shows, appended to the feed ("" if none): a page filtering
    its feed is sent nothing it would hide."""
    items = "".join(html for item, html in entries if feed_filter.matches(item))
    return f'<div id="feed-items" hx-swap-oob="beforeend">{items}</div>' if items else ""

"""The live page: one hub per web process fans the truth out to every open socket.

Every SWEEP_SECONDS the hub reads what the page shows (control.web.dashboard_context: a fixed number of
queries and Redis round trips, whatever the number of agents and sessions), compares each
part with what it pushed last, and re-renders only the parts that changed: the same
partials the page was first rendered with, sent as out-of-band swaps on /ws/control/, and
as JSON events on /ws/events/. Announced changes are re-read and pushed at once; an object
changing 50 times a second is pushed a few times a second (control.live.budget), its
latest state when its turn comes. The runtime never has to know about the page
(DESIGN.md: the runtime does not import control).

Nothing is lost for good: a socket that drops reconnects and the page re-fetches every
part (GET /ui/panel); a new socket first gets every part as the hub last rendered it; a
socket a push could not be delivered to (closed, or its channel full) gets every part
again at the next full sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.template.loader import render_to_string

from control.live.budget import PushBudget
from control.live.events import EventTracker
from control.templatetags.panel import json_script_safe
from control.web import dashboard_context as page

log = logging.getLogger(__name__)

# State changes are announced and pushed on their own; the full read is for counters,
# prices, fills and the feed, and runs beside the pushes (it competes for the same CPU).
SWEEP_SECONDS = 1.0
COALESCE_SECONDS = 0.02
TEMPLATE = "control/index.html"


def _digest(value: Any) -> str:
    return hashlib.blake2b(
        json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True).encode(), digest_size=12
    ).hexdigest()


# What each part shows, and nothing else: a field that moves without changing the page
# (a heartbeat every step, a counter) would re-render the part on every sweep, and the
# re-render would take the keyboard focus from its buttons. Times that tick ("Last active",
# "started 3 min ago") are rendered by the page itself from <time datetime>: only whether
# there is one shows here (live-times carries "last active" without a re-render).
CARD_SHOWS = (
    "agent_id",
    "name",
    "kind",
    "status",
    "desired_state",
    "symbols",
    "inputs_from",
    "error_message",
)
ROW_SHOWS = (
    "session_id",
    "name",
    "symbols",
    "status",
    "desired_state",
    "error_message",
    "started_at",
    "stopped_at",
    "equity",
    "pnl",
    "pnl_pct",
    "trades",
)


def card_fingerprint(card: page.AgentCard) -> str:
    """What the agent's card shows: its fingerprint moves only when the card would look different."""
    shown = {k: card.agent.get(k) for k in CARD_SHOWS}
    active = card.agent.get("last_active") is not None
    return _digest([shown, active, card.summary, card.log_lines, card.can_start, card.can_stop])


def row_fingerprint(row: page.SessionRow) -> str:
    """What the session's row shows (not its heartbeat, which moves every step)."""
    return _digest([{k: row.session.get(k) for k in ROW_SHOWS}, row.can])


@dataclass
class Snapshot:
    """One full read of what the page shows."""

    panel: dict[str, Any]
    cards: list[page.AgentCard]
    edges: list[dict[str, Any]]
    rows: list[page.SessionRow]


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
    feed_filter: page.FeedFilter = page.FeedFilter()  # what its page's activity feed shows

    async def deliver(self, text: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class Hub:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task | None = None
        self._watch: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()  # "<kind>:<id>" announced since the last sweep
        self._next_full = 0.0  # monotonic time the next full sweep is due
        self.seq = 0
        self._prints: dict[str, str] = {}  # dom id (or event key) -> fingerprint
        self._agent_ids: tuple[str, ...] | None = None
        self._session_ids: tuple[str, ...] | None = None
        self._feed_after: int | None = None
        self._json = EventTracker()
        self._edge_counts: dict[tuple[str, str], tuple[int, float]] = {}
        self._rates: dict[tuple[str, str], float] = {}
        self._budget = PushBudget()
        self._deferred: dict[str, float] = {}  # "<kind>:<id>" or "system" -> when its push is due
        self._now = 0.0  # monotonic start of the current pass
        self._read_at: float | None = None  # when the full read being applied started

    # --- listeners ------------------------------------------------------------------

    def join(self, listener: Listener) -> None:
        listener.fresh = True
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run())
            self._watch = loop.create_task(self._watch_changes())

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if not self.listeners and self._task is not None:
            self._task.cancel()
            self._watch.cancel()
            self._task = None

    async def _watch_changes(self) -> None:
        """Sweep at once when a loop or a person changes a state (agents.runtime.flags
        announces it), instead of at the next poll. Best effort: the poll goes on."""
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
                        self._dirty.add(str(message.get("data")))
                        self._wake.set()
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

    async def _run(self) -> None:
        """Push announced changes at once; read everything now and then, in a thread of its
        own, so a full read (long, with hundreds of agents) never holds up a change."""
        full: asyncio.Task | None = None
        full_started = 0.0
        try:
            while self.listeners:
                now = self._now = time.monotonic()
                self._wake.clear()  # a change announced from now on means another pass
                announced = False
                try:
                    html = [item for item in self.listeners if item.wants_html]
                    levels = {item.can_control for item in html}
                    events = any(not item.wants_html for item in self.listeners)
                    if full is None and (now >= self._next_full or any(item.fresh for item in html)):
                        full_started = now
                        full = asyncio.ensure_future(
                            database_sync_to_async(self.read_all, thread_sensitive=False)()
                        )
                    dirty, self._dirty = self._dirty, set()
                    announced = bool(dirty)
                    dirty |= self._take_due(now)
                    if dirty:
                        # Only what was announced: a few milliseconds however many agents.
                        # The panel after the cards: its counts matter less than the card a
                        # person is looking at.
                        frame = await database_sync_to_async(self.sweep_some)(levels, dirty, events)
                        await self._deliver(frame)
                        await self._deliver(await database_sync_to_async(self.sweep_panel)(levels, events))
                    if full is not None and full.done():
                        snapshot, full = full.result(), None
                        for item in html:
                            if item.stale:
                                item.stale, item.fresh = False, True
                        fresh = {item.can_control for item in html if item.fresh}
                        frame = await database_sync_to_async(self.apply_all)(
                            snapshot, levels, fresh, events, full_started
                        )
                        await self._deliver(frame)
                        # At most a quarter of the time in full reads: with hundreds of agents
                        # the counters refresh less often, state changes still come at once.
                        self._next_full = full_started + max(
                            SWEEP_SECONDS, 4 * (time.monotonic() - full_started)
                        )
                except asyncio.CancelledError:
                    raise
                except Exception:  # a failed pass must not end the live page; try again
                    log.exception("live sweep failed")
                    full = None
                    self._next_full = time.monotonic() + SWEEP_SECONDS
                if self._dirty:
                    if announced:
                        # Changes kept coming while changes were pushed: a flood. Gather them
                        # for a moment, then sweep them at once. (One that came during other
                        # work, a throttled object's turn or a full read, goes now.)
                        await asyncio.sleep(COALESCE_SECONDS)
                    continue
                wake_at = min([self._next_full, *self._deferred.values()])
                waits = [asyncio.ensure_future(self._wake.wait())]
                if full is not None:
                    waits.append(full)
                await asyncio.wait(
                    waits, timeout=max(0.0, wake_at - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
                )
                waits[0].cancel()
        finally:
            if full is not None:
                full.cancel()

    def _take_due(self, now: float) -> set[str]:
        """The throttled objects whose turn has come."""
        due = {key for key, at in self._deferred.items() if at <= now}
        for key in due:
            del self._deferred[key]
        return due

    async def _deliver(self, frame: Frame) -> None:
        for listener in list(self.listeners):
            try:
                if listener.wants_html:
                    if listener.fresh and listener.can_control in frame.full:
                        listener.fresh = False
                        parts = frame.full[listener.can_control]
                    else:
                        parts = frame.html.get(listener.can_control, [])
                    for text in parts:
                        await listener.deliver(text)
                    feed = _feed_swap(frame.feed, listener.feed_filter) if frame.feed else ""
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

    # --- the sweep (sync: database and Redis) ------------------------------------------

    def sweep(self, levels: set[bool], fresh: set[bool], with_events: bool) -> Frame:
        """A full read and its frame, in one call (benchmarks, tests)."""
        self._now = started = time.monotonic()
        return self.apply_all(self.read_all(), levels, fresh, with_events, started)

    @staticmethod
    def read_all() -> Snapshot:
        """Everything the page shows (any thread: it touches no hub state)."""
        cards = page.agent_cards()
        return Snapshot(page.system_panel(), cards, page.edges(cards), page.session_rows())

    def apply_all(
        self, snapshot: Snapshot, levels: set[bool], fresh: set[bool], with_events: bool, read_at: float
    ) -> Frame:
        """The parts of `snapshot` that changed; an object pushed on its own since `read_at`
        is newer than the snapshot and left alone."""
        self.seq += 1
        self._read_at = read_at
        frame = Frame()
        changed: dict[str, tuple[str, dict[str, Any]]] = {}  # dom id -> (partial name, context)

        panel = snapshot.panel
        self._note(changed, "system-panel", self._system_print(panel), "system-panel", panel, budget="system")

        cards = snapshot.cards
        agent_ids = tuple(c.agent_id for c in cards)
        if agent_ids != self._agent_ids:
            # Agents came or went: the whole grid, once.
            self._agent_ids = agent_ids
            for dom_id in [d for d in self._prints if d.startswith("agent-")]:
                self._forget(dom_id)
            self._note(
                changed, "flow", _digest(agent_ids), "flow", {"columns": page.columns(cards)}, force=True
            )
            for card in cards:
                self._prints[f"agent-{card.agent_id}"] = card_fingerprint(card)
        else:
            for card in cards:
                self._note(
                    changed,
                    f"agent-{card.agent_id}",
                    card_fingerprint(card),
                    "agent-card",
                    {"card": card},
                    budget=f"agent:{card.agent_id}",
                )

        edges = self._with_rates(snapshot.edges)
        self._note(changed, "edge-data", _digest(edges), "edge-data", {"edges": edges})

        rows = snapshot.rows
        session_ids = tuple(r.session_id for r in rows)
        if session_ids != self._session_ids:
            self._session_ids = session_ids
            for dom_id in [d for d in self._prints if d.startswith("session-") and d != "session-rows"]:
                self._forget(dom_id)
            self._note(
                changed, "session-rows", _digest(session_ids), "session-rows", {"sessions": rows}, force=True
            )
            for row in rows:
                self._prints[f"session-{row.session_id}"] = row_fingerprint(row)
        else:
            for row in rows:
                self._note(
                    changed,
                    f"session-{row.session_id}",
                    row_fingerprint(row),
                    "session-row",
                    {"row": row},
                    budget=f"session:{row.session_id}",
                )

        times = self._times(cards)
        times_changed = self._prints.get("live-times") != times
        self._prints["live-times"] = times
        frame.feed = self._new_feed_entries() if levels else []
        whole = {
            "system-panel": ("system-panel", panel),
            "flow": ("flow", {"columns": page.columns(cards)}),
            "edge-data": ("edge-data", {"edges": edges}),
            "session-rows": ("session-rows", {"sessions": rows}),
        }
        for can_control in levels:
            parts = [self._render(name, context, can_control) for name, context in changed.values()]
            frame.html[can_control] = [*parts, *([times] if times_changed else [])]
        for can_control in fresh:
            parts = [self._render(name, context, can_control) for name, context in whole.values()]
            frame.full[can_control] = [*parts, times]
        if with_events:
            frame.events = self._json.objects(cards, rows, self.seq) + self._json.panel(panel, self.seq)
        self._read_at = None
        return frame

    def sweep_some(self, levels: set[bool], dirty: set[str], with_events: bool) -> Frame:
        """Re-read the announced agents and sessions and the system panel only."""
        self.seq += 1
        frame = Frame()
        changed: dict[str, tuple[str, dict[str, Any]]] = {}
        agent_ids = [d.split(":", 1)[1] for d in dirty if d.startswith("agent:")]
        session_ids = [d.split(":", 1)[1] for d in dirty if d.startswith("session:")]
        cards = page.agent_cards(agent_ids) if agent_ids else []
        for card in cards:
            if self._agent_ids and card.agent_id in self._agent_ids:  # new agents: the full sweep
                key = f"agent-{card.agent_id}"
                budget = f"agent:{card.agent_id}"
                fingerprint = card_fingerprint(card)
                self._note(changed, key, fingerprint, "agent-card", {"card": card}, budget=budget)
        rows = page.session_rows(session_ids) if session_ids else []
        for row in rows:
            if self._session_ids and row.session_id in self._session_ids:
                key = f"session-{row.session_id}"
                fingerprint = row_fingerprint(row)
                budget = f"session:{row.session_id}"
                self._note(changed, key, fingerprint, "session-row", {"row": row}, budget=budget)
        for can_control in levels:
            frame.html[can_control] = [self._render(name, ctx, can_control) for name, ctx in changed.values()]
        if with_events:
            frame.events = self._json.objects(cards, rows, self.seq)
        return frame

    def sweep_panel(self, levels: set[bool], with_events: bool) -> Frame:
        """The system panel, if it changed (after announced changes)."""
        frame = Frame()
        changed: dict[str, tuple[str, dict[str, Any]]] = {}
        panel = page.system_panel()
        self._note(changed, "system-panel", self._system_print(panel), "system-panel", panel, budget="system")
        for can_control in levels:
            frame.html[can_control] = [self._render(name, ctx, can_control) for name, ctx in changed.values()]
        if with_events:
            frame.events = self._json.panel(panel, self.seq)
        return frame

    @staticmethod
    def _system_print(panel: dict[str, Any]) -> str:
        return _digest(
            {k: v for k, v in panel.items() if k not in ("system", "health")}
            | {
                "status": panel["system"]["status"],
                "agents": panel["system"]["agents"],
                "sessions": panel["system"]["sessions"],
                "checks": {k: v.get("ok") for k, v in panel["health"].get("checks", {}).items()},
            }
        )

    @staticmethod
    def _render(name: str, context: dict[str, Any], can_control: bool) -> str:
        # Stripped: whitespace between fragments would reach htmx as nameless swap targets.
        context = {**context, "oob": True, "can_control": can_control}
        return render_to_string(f"{TEMPLATE}#{name}", context).strip()

    def _note(
        self,
        changed: dict[str, Any],
        dom_id: str,
        fingerprint: str,
        partial: str,
        context: dict[str, Any],
        force: bool = False,
        budget: str | None = None,
    ) -> None:
        """Add the part to `changed` if its fingerprint moved. With `budget` (the object's
        announcement key), an object out of pushes is left unnoted and comes back, re-read,
        when its next push is due."""
        if not force and self._prints.get(dom_id) == fingerprint:
            return
        if budget is not None and not force:
            if self._read_at is not None and self._budget.last_taken(dom_id) > self._read_at:
                return  # a full read older than what was pushed on its own
            if not self._budget.take(dom_id, self._now):
                self._deferred[budget] = self._budget.due(dom_id, self._now)
                return
        self._prints[dom_id] = fingerprint
        changed[dom_id] = (partial, context)

    def _forget(self, dom_id: str) -> None:
        self._prints.pop(dom_id, None)

    def _times(self, cards: list[page.AgentCard]) -> str:
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

    def _with_rates(self, edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Messages per second along each edge, from the growth of the consumer's counter."""
        now = time.monotonic()
        out = []
        for edge in edges:
            key = (edge["from"], edge["to"])
            previous = self._edge_counts.get(key)
            if previous is not None and now - previous[1] >= 2.0:
                count, at = previous
                self._rates[key] = max(0.0, (edge["count"] - count) / (now - at))
                self._edge_counts[key] = (edge["count"], now)
            elif previous is None:
                self._edge_counts[key] = (edge["count"], now)
            rate = round(self._rates.get(key, 0.0), 1)
            out.append({**edge, "rate": rate, "live": rate > 0 and edge["consumer_running"]})
        return out

    def _new_feed_entries(self) -> list[tuple[dict[str, Any], str]]:
        """Activity entries new since the last sweep, each rendered once."""
        if self._feed_after is None:
            self._feed_after = page.newest_feed_id()
            return []
        entries = page.feed_entries(after=self._feed_after)
        if not entries:
            return []
        self._feed_after = entries[-1]["id"]
        return [(item, render_to_string(f"{TEMPLATE}#feed-item", {"item": item}).strip()) for item in entries]


def _feed_swap(entries: list[tuple[dict[str, Any], str]], feed_filter: page.FeedFilter) -> str:
    """The entries `feed_filter` shows, appended to the feed ("" if none): a page filtering
    its feed is sent nothing it would hide."""
    items = "".join(html for item, html in entries if feed_filter.matches(item))
    return f'<div id="feed-items" hx-swap-oob="beforeend">{items}</div>' if items else ""


hub = Hub()

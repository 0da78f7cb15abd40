"""The live page: one hub per web process fans the truth out to every open socket.

Every SWEEP_SECONDS the hub reads what the page shows (control.web.dashboard_context: a fixed number of
queries and Redis round trips, whatever the number of agents and sessions), compares each
part with what it pushed last, and re-renders only the parts that changed: the same
partials the page was first rendered with, sent as out-of-band swaps on /ws/control/, and
as JSON events on /ws/events/. Announced changes are re-read and pushed at once; an object
changing 50 times a second is pushed a few times a second (control.live.budget), its
latest state when its turn comes. The runtime never has to know about the page
(docs/architecture.md, Layers: the runtime does not import control).

Nothing is lost for good: a socket that drops reconnects and the page re-fetches every
part (GET /ui/panel); a new socket first gets every part as the hub last rendered it; a
socket a push could not be delivered to (closed, or its channel full) gets every part
again at the next full sweep.

The hub's parts: changes.py (the announcements it listens to), fingerprints.py (whether a
part changed), schedule.py and budget.py (when a changed object may go out),
rendering.py and feed.py (the HTML), edge_rates.py, events.py (the JSON events) and
delivery.py (who gets what). This module holds the loop that ties them together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from control.live.changes import watch_changes
from control.live.delivery import Frame, Listener, deliver
from control.live.edge_rates import EdgeRates
from control.live.events import EventTracker
from control.live.feed import FeedCursor
from control.live.fingerprints import card_fingerprint, digest, panel_fingerprint, row_fingerprint
from control.live.rendering import render_part, times_part
from control.live.schedule import PushSchedule
from control.web import dashboard_context as page

__all__ = ["Frame", "Hub", "Listener", "Snapshot", "hub"]

log = logging.getLogger(__name__)

# State changes are announced and pushed on their own; the full read is for counters,
# prices, fills and the feed, and runs beside the pushes (it competes for the same CPU).
SWEEP_SECONDS = 1.0
COALESCE_SECONDS = 0.02


@dataclass
class Snapshot:
    """One full read of what the page shows."""

    panel: dict[str, Any]
    cards: list[page.AgentCard]
    edges: list[dict[str, Any]]
    rows: list[page.SessionRow]


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
        self._feed = FeedCursor()
        self._json = EventTracker()
        self._edges = EdgeRates()
        self._schedule = PushSchedule()

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
        """Sweep at once when a loop or a person changes a state (agents.runtime.lifecycle
        announces it), instead of at the next poll."""
        await watch_changes(self._announced)

    def _announced(self, key: str) -> None:
        self._dirty.add(key)
        self._wake.set()

    async def _run(self) -> None:
        """Push announced changes at once; read everything now and then, in a thread of its
        own, so a full read (long, with hundreds of agents) never holds up a change."""
        full: asyncio.Task | None = None
        full_started = 0.0
        try:
            while self.listeners:
                now = self._schedule.now = time.monotonic()
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
                    dirty |= self._schedule.take_due(now)
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
                wake_at = min([self._next_full, *self._schedule.next_due()])
                waits = [asyncio.ensure_future(self._wake.wait())]
                if full is not None:
                    waits.append(full)
                try:
                    timeout = max(0.0, wake_at - time.monotonic())
                    await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    # Also when the hub itself is cancelled (the web process stopping): a
                    # wait left pending was logged as "Task was destroyed but it is pending!".
                    waits[0].cancel()
        finally:
            if full is not None:
                full.cancel()

    async def _deliver(self, frame: Frame) -> None:
        await deliver(frame, self.listeners)

    # --- the sweep (sync: database and Redis) ------------------------------------------

    def sweep(self, levels: set[bool], fresh: set[bool], with_events: bool) -> Frame:
        """A full read and its frame, in one call (benchmarks, tests)."""
        self._schedule.now = started = time.monotonic()
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
        self._schedule.read_at = read_at
        frame = Frame()
        changed: dict[str, tuple[str, dict[str, Any]]] = {}  # dom id -> (partial name, context)

        panel = snapshot.panel
        self._note(changed, "system-panel", panel_fingerprint(panel), "system-panel", panel, budget="system")

        cards = snapshot.cards
        agent_ids = tuple(c.agent_id for c in cards)
        if agent_ids != self._agent_ids:
            # Agents came or went: the whole grid, once.
            self._agent_ids = agent_ids
            for dom_id in [d for d in self._prints if d.startswith("agent-")]:
                self._forget(dom_id)
            self._note(
                changed, "flow", digest(agent_ids), "flow", {"columns": page.columns(cards)}, force=True
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

        edges = self._edges.with_rates(snapshot.edges)
        self._note(changed, "edge-data", digest(edges), "edge-data", {"edges": edges})

        rows = snapshot.rows
        session_ids = tuple(r.session_id for r in rows)
        if session_ids != self._session_ids:
            self._session_ids = session_ids
            for dom_id in [d for d in self._prints if d.startswith("session-") and d != "session-rows"]:
                self._forget(dom_id)
            self._note(
                changed, "session-rows", digest(session_ids), "session-rows", {"sessions": rows}, force=True
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

        times = times_part(cards)
        times_changed = self._prints.get("live-times") != times
        self._prints["live-times"] = times
        frame.feed = self._feed.new_entries() if levels else []
        whole = {
            "system-panel": ("system-panel", panel),
            "flow": ("flow", {"columns": page.columns(cards)}),
            "edge-data": ("edge-data", {"edges": edges}),
            "session-rows": ("session-rows", {"sessions": rows}),
        }
        for can_control in levels:
            parts = [render_part(name, context, can_control) for name, context in changed.values()]
            frame.html[can_control] = [*parts, *([times] if times_changed else [])]
        for can_control in fresh:
            parts = [render_part(name, context, can_control) for name, context in whole.values()]
            frame.full[can_control] = [*parts, times]
        if with_events:
            frame.events = self._json.objects(cards, rows, self.seq) + self._json.panel(panel, self.seq)
        self._schedule.read_at = None
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
            frame.html[can_control] = [render_part(name, ctx, can_control) for name, ctx in changed.values()]
        if with_events:
            frame.events = self._json.objects(cards, rows, self.seq)
        return frame

    def sweep_panel(self, levels: set[bool], with_events: bool) -> Frame:
        """The system panel, if it changed (after announced changes)."""
        frame = Frame()
        changed: dict[str, tuple[str, dict[str, Any]]] = {}
        panel = page.system_panel()
        self._note(changed, "system-panel", panel_fingerprint(panel), "system-panel", panel, budget="system")
        for can_control in levels:
            frame.html[can_control] = [render_part(name, ctx, can_control) for name, ctx in changed.values()]
        if with_events:
            frame.events = self._json.panel(panel, self.seq)
        return frame

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
        announcement key), the push schedule decides whether it goes out now or later."""
        if not force and self._prints.get(dom_id) == fingerprint:
            return
        if budget is not None and not force and not self._schedule.admit(dom_id, budget):
            return
        self._prints[dom_id] = fingerprint
        changed[dom_id] = (partial, context)

    def _forget(self, dom_id: str) -> None:
        self._prints.pop(dom_id, None)


hub = Hub()

"""The JSON side of the live hub (/ws/events/): what changed since the last look, as events.

`{"type": "agent.status|session.status|system.status|trade|metrics|alert", "data", "ts",
"seq"}`. The hub hands over what it read (cards, session rows, the system panel); this
keeps what was seen last, so each change is told once.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from control.presenters import fill_dict
from control.web import dashboard_context as page
from sessions.models import Fill

METRICS = ("equity", "pnl", "pnl_pct", "trades", "cash")


class EventTracker:
    def __init__(self) -> None:
        self._status: dict[str, tuple[str, str]] = {}  # "agent:<id>" -> (status, desired)
        self._seen: dict[str, Any] = {}  # "metrics:<id>", "alerts" -> what was last told
        self._fills_after = timezone.now()

    def objects(self, cards: list[page.AgentCard], rows: list[page.SessionRow], seq: int) -> list[dict]:
        """Status changes of these agents and sessions, their sessions' metrics, new fills."""
        now = timezone.now().isoformat()
        events: list[dict[str, Any]] = []
        for card in cards:
            a = card.agent
            if self._status_changed(f"agent:{card.agent_id}", a["status"], a["desired_state"]):
                data = {k: a[k] for k in ("agent_id", "status", "desired_state", "error_message")}
                events.append({"type": "agent.status", "data": data, "ts": now})
        for row in rows:
            s = row.session
            if self._status_changed(f"session:{row.session_id}", s["status"], s["desired_state"]):
                data = {k: s[k] for k in ("session_id", "status", "desired_state", "error_message")}
                events.append({"type": "session.status", "data": data, "ts": now})
            metrics = {k: s[k] for k in METRICS}
            if self._changed(f"metrics:{row.session_id}", metrics):
                data = {"session_id": row.session_id, **metrics}
                events.append({"type": "metrics", "data": data, "ts": now})
        fills = list(Fill.objects.filter(ts__gt=self._fills_after).order_by("ts")[:500])
        if fills:
            self._fills_after = fills[-1].ts
            for fill in fills:
                data = {"session_id": fill.session_id, **fill_dict(fill)}
                events.append({"type": "trade", "data": data, "ts": now})
        return _numbered(events, seq)

    def panel(self, panel: dict[str, Any], seq: int) -> list[dict]:
        """The system's status change and new alerts."""
        now = timezone.now().isoformat()
        events: list[dict[str, Any]] = []
        status = panel["system"]["status"]
        if self._status_changed("system", status, ""):
            events.append({"type": "system.status", "data": {"status": status}, "ts": now})
        alerts = panel["alerts"]
        if self._changed("alerts", alerts):
            events.extend({"type": "alert", "data": alert, "ts": now} for alert in alerts)
        return _numbered(events, seq)

    def _status_changed(self, key: str, status: str, desired: str) -> bool:
        before = self._status.get(key)
        self._status[key] = (status, desired)
        return before is not None and before != (status, desired)

    def _changed(self, key: str, value: Any) -> bool:
        """True when `value` differs from what was last seen (not the first time)."""
        known = key in self._seen
        before = self._seen.get(key)
        self._seen[key] = value
        return known and before != value


def _numbered(events: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    for event in events:
        event["seq"] = seq
    return events

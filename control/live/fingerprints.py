"""What each part of the page shows, reduced to a fingerprint.

The hub re-renders a part only when its fingerprint moves, so a fingerprint covers what
the part shows and nothing else: a field that moves without changing the page (a
heartbeat every step, a counter) would re-render the part on every sweep, and the
re-render would take the keyboard focus from its buttons. Times that tick ("Last active",
"started 3 min ago") are rendered by the page itself from <time datetime>: only whether
there is one counts here (the live-times part carries "last active" without a re-render).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from control.web.dashboard_context import AgentCard, SessionRow

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


def digest(value: Any) -> str:
    """A short stable hash of any JSON-able value (keys sorted)."""
    return hashlib.blake2b(
        json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True).encode(), digest_size=12
    ).hexdigest()


def card_fingerprint(card: AgentCard) -> str:
    """What the agent's card shows: its fingerprint moves only when the card would look different."""
    shown = {k: card.agent.get(k) for k in CARD_SHOWS}
    active = card.agent.get("last_active") is not None
    return digest([shown, active, card.summary, card.log_lines, card.problems, card.can_start, card.can_stop])


def row_fingerprint(row: SessionRow) -> str:
    """What the session's row shows (not its heartbeat, which moves every step)."""
    return digest([{k: row.session.get(k) for k in ROW_SHOWS}, row.can])


def panel_fingerprint(panel: dict[str, Any]) -> str:
    """What the system panel shows: the health checks' verdicts, not their timings."""
    return digest(
        {k: v for k, v in panel.items() if k not in ("system", "health")}
        | {
            "status": panel["system"]["status"],
            "agents": panel["system"]["agents"],
            "sessions": panel["system"]["sessions"],
            "checks": {k: v.get("ok") for k, v in panel["health"].get("checks", {}).items()},
        }
    )

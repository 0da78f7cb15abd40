"""What the control panel shows, read in a fixed number of queries whatever the number of
agents and sessions: the first render, htmx refreshes and live pushes all build their
partials' contexts here, so the three can never disagree.

Reads: agents (1 query + inputs 1), sessions with their ledger numbers (3), system counts
(a few), the feed (1); Redis in one pipeline per kind of data (live counters, the newest
messages of each agent's stream); log files by seeking from their end.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.db.models import Q

from agents.graph import parents_of, upstream_first
from agents.kinds.sources import config_label
from agents.models import ROLE_ORDER, Agent, LogEntry, Role
from agents.runtime import keys
from agents.runtime.bus import newest_messages
from agents.runtime.logs import log_path, tail
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from agents.validators import stored_object
from control import health, presenters, transitions
from control.reads import read_snapshot
from sessions.models import TradingSession

# Columns of the flow grid, left to right; both analysis roles share one column.
COLUMNS = [
    ("Data feeds", (Role.DATA_FEED,)),
    ("Analysis", (Role.SPECIALIZED_TECHNICAL, Role.SPECIALIZED_SENTIMENT)),
    ("Decision", (Role.DECISION,)),
    ("Execution", (Role.EXECUTION,)),
]
CARD_LOG_LINES = 3
MAX_CARD_PROBLEMS = 10
RECENT_MESSAGES = 30  # newest stream messages read per agent for its card summary
FEED_PAGE = 100
# What the activity feed shows: what people and the system did, and any trouble.
FEED_FILTER = Q(source__in=["control", "reconciler", "session"]) | Q(level__gte=30)

STATUS_ICONS = {
    Status.RUNNING: "bi-play-circle-fill",
    Status.PAUSED: "bi-pause-circle-fill",
    Status.STARTING: "bi-hourglass-split",
    Status.STOPPING: "bi-hourglass-split",
    Status.STOPPED: "bi-stop-circle",
    Status.READY: "bi-circle",
    Status.ERROR: "bi-exclamation-octagon-fill",
    "partial": "bi-pie-chart-fill",
}


def status_icon(status: str) -> str:
    return STATUS_ICONS.get(status, "bi-question-circle")


# --- agents -------------------------------------------------------------------------


@dataclass
class AgentCard:
    agent: dict[str, Any]
    summary: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines
    log_lines: list[str] = field(default_factory=list)
    # What the running kind reports wrong with itself (agents.runtime.keys.status), e.g.
    # each failing feed of a sentiment agent: {"url", "error", "since"}.
    problems: list[dict[str, Any]] = field(default_factory=list)
    can_start: bool = False
    can_stop: bool = False

    @property
    def agent_id(self) -> str:
        return self.agent["agent_id"]


def agent_cards(agent_ids: list[str] | None = None) -> list[AgentCard]:
    """Every agent (or those of `agent_ids`), upstream first, with what its card shows."""
    if agent_ids is None:
        parents = parents_of()
        agents = upstream_first(list(Agent.objects.all()), parents)
    else:
        # A few announced cards: their own edges only, and no order to work out.
        parents = parents_of(agent_ids)
        agents = list(Agent.objects.filter(pk__in=agent_ids).order_by("agent_id"))
    dicts = presenters.agent_dicts(agents, parents)
    newest = _newest_messages([a.agent_id for a in agents])
    reported = _reported_statuses([a.agent_id for a in agents])
    cards = []
    for agent, data in zip(agents, dicts, strict=True):
        cards.append(
            AgentCard(
                agent=data,
                summary=kind_summary(agent, data, newest.get(agent.agent_id, [])),
                log_lines=card_log_lines(agent.agent_id),
                problems=feed_problems(reported.get(agent.agent_id)),
                can_start=transitions.agent_can("start", agent),
                can_stop=transitions.agent_can("stop", agent),
            )
        )
    return cards


def _newest_messages(agent_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The newest messages of each agent's stream, newest first; {} if Redis is down."""
    try:
        return newest_messages(get_redis(), agent_ids, RECENT_MESSAGES)
    except redis.RedisError:
        return {}


def _reported_statuses(agent_ids: list[str]) -> dict[str, Any]:
    """What each running kind reported about itself (one MGET); {} if Redis is down."""
    if not agent_ids:
        return {}
    try:
        raw = get_redis().mget([keys.status("agent", a) for a in agent_ids])
    except redis.RedisError:
        return {}
    out: dict[str, Any] = {}
    for agent_id, value in zip(agent_ids, raw, strict=True):
        if value:
            try:
                out[agent_id] = json.loads(value)
            except ValueError:
                continue  # not ours to show
    return out


def feed_problems(status: Any) -> list[dict[str, Any]]:
    """The failing feeds of a reported status, each {"url", "error", "since"} with since
    a datetime (None when unreadable); read defensively, as anything stored is."""
    if not isinstance(status, dict) or not isinstance(status.get("feed_errors"), list):
        return []
    problems = []
    for item in status["feed_errors"][:MAX_CARD_PROBLEMS]:
        if not isinstance(item, dict):
            continue
        try:
            since = datetime.fromisoformat(str(item.get("since")))
        except ValueError:
            since = None
        url, error = str(item.get("url", "?"))[:300], str(item.get("error", "?"))[:300]
        problems.append({"url": url, "error": error, "since": since})
    return problems


def _latest_by_symbol(messages: list[dict[str, Any]], type_: str) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for message in messages:  # newest first: keep the first seen per symbol
        if message.get("type") == type_ and message.get("symbol") not in latest:
            latest[message.get("symbol")] = message
    return dict(sorted(latest.items()))


def kind_summary(agent: Agent, data: dict[str, Any], messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The few facts that matter for this kind of agent, as (label, value) lines."""
    kind = agent.kind
    lines: list[tuple[str, str]] = []
    if kind == "market_data":
        config, bars = stored_object(agent.config), _latest_by_symbol(messages, "bar")
        # A live feed's bars may name their exchange as it calls itself ("Coinbase Exchange").
        names = [b["exchange_name"] for b in bars.values() if isinstance(b.get("exchange_name"), str)]
        named = names[0] if names else ""
        lines.append(("Prices", config_label({**config, "exchange_name": named} if named else config)))
        for symbol, bar in bars.items():
            lines.append((symbol, _num(bar.get("close"))))
    elif kind == "technical":
        for symbol, signal in _latest_by_symbol(messages, "signal").items():
            lines.append((symbol, f"signal {_signed(signal.get('signal'))}"))
    elif kind == "sentiment":
        for symbol, score in _latest_by_symbol(messages, "sentiment").items():
            label = str(score.get("label") or "").title() or "Neutral"
            lines.append((symbol, f"{_signed(score.get('average'))} {label}"))
    elif kind == "decision":
        for symbol, directive in _latest_by_symbol(messages, "directive").items():
            target = directive.get("target_weight")
            weight = f" → {float(target):.0%}" if isinstance(target, int | float) else ""
            lines.append((symbol, f"{directive.get('action', '?')}{weight}"))
    elif kind == "execution":
        metrics = data.get("metrics") or {}
        orders = int(metrics.get("orders_in", 0) or 0)
        filled = int(metrics.get("filled", 0) or 0)
        rejected = int(metrics.get("rejected", 0) or 0)
        lines.append(("Orders", f"{orders} processed"))
        decided = filled + rejected
        lines.append(
            ("Fill rate", f"{filled / decided:.0%} ({filled} filled)" if decided else "no orders yet")
        )
    return lines


# (log dir, agent id) -> path, and path -> ((mtime, size), lines): a sweep every 0.3 s
# re-reads only the files that changed (resolving and tailing 500 files costs ~0.3 s).
_paths: dict[tuple[str, str], Path | None] = {}
_tails: dict[Path, tuple[tuple[int, int], list[str]]] = {}


def card_log_lines(agent_id: str) -> list[str]:
    key = (str(settings.LOG_DIR), agent_id)
    if key not in _paths:
        if len(_paths) > 10_000:
            _paths.clear()
        _paths[key] = log_path(agent_id)
    path = _paths[key]
    if path is None:
        return []
    try:
        stat = path.stat()
    except OSError:
        return []
    version = (stat.st_mtime_ns, stat.st_size)
    cached = _tails.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    try:
        lines = [_short_line(line) for line in tail(path, CARD_LOG_LINES).lines]
    except OSError:
        return []
    if len(_tails) > 10_000:
        _tails.clear()
    _tails[path] = (version, lines)
    return lines


def _short_line(line: str) -> str:
    """ "2026-11-25T16:41:11.106Z INFO agents.agent.feed: message" -> "16:41:11 INFO message"."""
    parts = line.split(" ", 3)
    if len(parts) == 4 and len(parts[0]) >= 19 and parts[2].endswith(":"):
        return f"{parts[0][11:19]} {parts[1]} {parts[3]}"[:200]
    return line[:200]


def _num(value: Any) -> str:
    try:
        return f"{float(value):,.2f}"
    except (TypeError, ValueError):
        return "?"


def _signed(value: Any) -> str:
    try:
        return f"{float(value):+.2f}"
    except (TypeError, ValueError):
        return "?"


def columns(cards: list[AgentCard]) -> list[tuple[str, list[AgentCard]]]:
    """Cards in their role's column, ordered by the saved position, then upstream first;
    cards without a saved position (None: left blank in the admin) below the others."""
    out = []
    for title, roles in COLUMNS:
        in_column = [c for c in cards if c.agent["role"] in roles]
        in_column.sort(
            key=lambda c: (*_position(c.agent.get("position_y")), ROLE_ORDER.index(c.agent["role"]))
        )
        out.append((title, in_column))
    return out


def _position(value: Any) -> tuple[bool, int]:
    """A sort key for a stored position, whatever it holds: (unset, position)."""
    return (False, value) if isinstance(value, int) and not isinstance(value, bool) else (True, 0)


def edges(cards: list[AgentCard]) -> list[dict[str, Any]]:
    """Every producer -> consumer edge with the messages the consumer counted from it."""
    out = []
    for card in cards:
        metrics = card.agent.get("metrics") or {}
        for producer in card.agent["inputs_from"]:
            out.append(
                {
                    "from": producer,
                    "to": card.agent_id,
                    "count": int(metrics.get(f"in.{producer}", 0) or 0),
                    "consumer_running": card.agent["status"] == Status.RUNNING,
                }
            )
    return out


# --- sessions -----------------------------------------------------------------------


@dataclass
class SessionRow:
    session: dict[str, Any]
    can: dict[str, bool]

    @property
    def session_id(self) -> str:
        return self.session["session_id"]


def session_rows(session_ids: list[str] | None = None) -> list[SessionRow]:
    """Sessions with their ledger numbers. Read in one read-only transaction (a consistent
    snapshot on SQLite's WAL) that takes no lock: the page must never hold up a fill, nor
    wait for a writer."""
    with read_snapshot():
        queryset = TradingSession.objects.filter(archived=False).order_by("created_at", "session_id")
        if session_ids is not None:
            queryset = TradingSession.objects.filter(pk__in=session_ids)
        sessions = list(queryset)
        numbers = presenters.session_numbers(sessions)
    notes = presenters.loop_notes("session", sessions)
    rows = []
    for session in sessions:
        data = presenters.session_dict(session, numbers[session.session_id], notes.get(session.session_id))
        can = {
            action: transitions.session_can(action, session)
            for action in ("start", "stop", "pause", "resume")
        }
        rows.append(SessionRow(session=data, can=can))
    return rows


# --- the system ---------------------------------------------------------------------


def system_panel() -> dict[str, Any]:
    status = presenters.system_status()
    report = health.cached_health()
    sessions = status["sessions"]
    alerts = system_alerts(report)
    return {
        "system": status,
        "health": report,
        "alerts": alerts,
        "stats": {
            "active_agents": status["agents"].get("running", 0),
            "total_agents": status["agents"].get("total", 0),
            "active_sessions": sessions.get("running", 0) + sessions.get("paused", 0),
            "total_sessions": sessions.get("total", 0),
            "trades_24h": status["recent_trades"],
            "health": report.get("score", 0),
        },
        "can_start": system_can_start(),
        "can_stop": status["agents"].get("running", 0) + status["agents"].get("starting", 0) > 0
        or bool(sessions.get("running") or sessions.get("paused") or sessions.get("starting")),
        "can_pause_all": bool(sessions.get("running")),
        "can_resume_all": bool(sessions.get("paused")),
    }


def system_can_start() -> bool:
    """Offer Start system when it would start something: an agent or session a person
    stopped (or never started), or one in error; or nothing is wanted running at all (it
    then says why it cannot). Not for loops wanted running that are starting, lost or
    stale: a start does not help them (the alerts say what is wrong instead)."""
    startable = Q(desired_state=Desired.STOPPED, status__in=[Status.READY, Status.STOPPED]) | Q(
        status=Status.ERROR
    )
    if Agent.objects.filter(startable, enabled=True).exists():
        return True
    if TradingSession.objects.filter(startable, archived=False).exists():
        return True
    wanted = Q(desired_state__in=[Desired.RUNNING, Desired.PAUSED])
    return not (Agent.objects.filter(wanted).exists() or TradingSession.objects.filter(wanted).exists())


def system_alerts(report: dict[str, Any]) -> list[dict[str, str]]:
    """What needs a person's attention now, most serious first."""
    alerts = []
    checks = report.get("checks", {})
    if not checks.get("database", {}).get("ok", True):
        alerts.append({"level": "danger", "text": f"Database unreachable: {checks['database'].get('error')}"})
    if not checks.get("redis", {}).get("ok", True):
        alerts.append(
            {
                "level": "danger",
                "text": f"Redis unreachable ({checks['redis'].get('error')}): loops cannot run.",
            }
        )
    elif not checks.get("workers", {}).get("ok", True):
        # The workers check names each queue without a worker, and what stops.
        text = checks["workers"].get("error") or "no Celery worker is running"
        alerts.append({"level": "danger", "text": f"{text[:1].upper()}{text[1:]}."})
    for agent_id, message in Agent.objects.filter(status=Status.ERROR).values_list(
        "agent_id", "error_message"
    )[:10]:
        alerts.append({"level": "danger", "text": f"Agent {agent_id} is in error: {message or 'no message'}"})
    for session_id, message in TradingSession.objects.filter(status=Status.ERROR).values_list(
        "session_id", "error_message"
    )[:10]:
        alerts.append(
            {"level": "danger", "text": f"Session {session_id} is in error: {message or 'no message'}"}
        )
    stale = report.get("stale_agents") or []
    if stale:
        shown = ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
        alerts.append(
            {
                "level": "warning",
                "text": f"Stale heartbeat: {len(stale)} loop(s) wanted running have not ticked for over "
                f"{settings.HEARTBEAT_STALE_SECONDS:g} s ({shown}). Their worker may be frozen, overloaded "
                "or gone; a lost loop is restarted once its lease lapses, and this stays until it ticks.",
            }
        )
    return alerts


# --- the activity feed --------------------------------------------------------------

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
SOURCES = ("control", "session", "reconciler", "agent")  # the page's Source choices


@dataclass(frozen=True)
class FeedFilter:
    """What a reader chose to see in the feed: a minimum level and a source ("": any).
    One rule for the page's first render, "Load older" and the entries pushed live."""

    level: str = ""
    source: str = ""

    @classmethod
    def parse(cls, level: Any, source: Any) -> FeedFilter:
        """From what a page sent; anything unknown is no filter on that field."""
        return cls(
            level=level if isinstance(level, str) and level in LEVELS else "",
            source=source if isinstance(source, str) and source in SOURCES else "",
        )

    def matches(self, item: dict[str, Any]) -> bool:
        return item["level_no"] >= LEVELS.get(self.level, 0) and (
            not self.source or item["source"] == self.source
        )


def feed_entries(
    *,
    before: int | None = None,
    after: int | None = None,
    level: str = "",
    source: str = "",
    limit: int = FEED_PAGE,
) -> list[dict[str, Any]]:
    """Feed entries oldest first: the newest page, a page older than `before`, or all newer
    than `after` (capped), filtered by minimum level and source."""
    queryset = LogEntry.objects.filter(FEED_FILTER).select_related("user")
    if level in LEVELS:
        queryset = queryset.filter(level__gte=LEVELS[level])
    if source:
        queryset = queryset.filter(source=source)
    if after is not None:
        rows = list(queryset.filter(id__gt=after).order_by("id")[:limit])
    else:
        if before is not None:
            queryset = queryset.filter(id__lt=before)
        rows = list(queryset.order_by("-id")[:limit])[::-1]
    # Session entries name their session (no foreign key: sessions are another app's).
    names = dict(
        TradingSession.objects.filter(pk__in={r.session_id for r in rows if r.session_id}).values_list(
            "session_id", "name"
        )
    )
    return [feed_item(entry, names.get(entry.session_id, "")) for entry in rows]


def feed_item(entry: LogEntry, session_name: str = "") -> dict[str, Any]:
    return {
        "id": entry.id,
        "ts": entry.ts,
        "level": logging.getLevelName(entry.level),
        "level_no": entry.level,
        "source": entry.source,
        "agent_id": entry.agent_id,
        "session_id": entry.session_id,
        "session_name": session_name,
        "message": entry.message,
        "user": entry.user.get_username() if entry.user else "",
    }


def newest_feed_id() -> int:
    return LogEntry.objects.filter(FEED_FILTER).order_by("-id").values_list("id", flat=True).first() or 0


# --- the whole page ------------------------------------------------------------------


def index_context() -> dict[str, Any]:
    cards = agent_cards()
    return {
        **system_panel(),
        "columns": columns(cards),
        "edges": edges(cards),
        "sessions": session_rows(),
        "feed": feed_entries(),
        "now": datetime.now(UTC),
        "desired": Desired,
    }

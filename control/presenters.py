"""Agents, sessions and the system as the API, the page and the commands show them."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from agents.models import Agent
from agents.runtime import keys
from agents.runtime.heartbeats import numbers
from agents.runtime.outage import REDIS
from agents.runtime.redis import get_redis
from agents.runtime.staleness import beat_time, stale_for
from agents.states import LIVE_STATUSES, Status
from agents.validators import stored_object, stored_symbols
from control.errors import NotFound
from control.reads import read_snapshot
from sessions import metrics, money
from sessions.models import OPEN_STATUSES, EquityPoint, Fill, Order, Position, TradingSession


def _loop_reads(kind: str, ids: list[str]) -> dict[str, tuple[dict[str, str], Any]] | None:
    """Per runnable, its loop's live metrics hash and heartbeat from Redis, in one round
    trip for all of them; None if Redis is down."""
    try:
        pipe = get_redis().pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(keys.metrics(kind, rid))
            pipe.get(keys.heartbeat(kind, rid))
        out = pipe.execute()
    except redis.RedisError:
        return None
    return {rid: (snapshot, beat) for rid, snapshot, beat in zip(ids, out[::2], out[1::2], strict=True)}


# --- what a loop goes through, shown beside its status ------------------------------

NO_LOOP_NOTE = {
    "waiting_for": None,
    "waiting_since": None,
    "stale_seconds": None,
    "degraded": None,
    "degraded_since": None,
    "last_price_at": None,
}


def loop_notes(kind: str, rows: list[Any]) -> dict[str, dict[str, Any]]:
    """Per runnable (agents or sessions), besides its status: what its loop waits for
    (`waiting_for` "database" or "redis", `waiting_since`) while an outage holds it up,
    and `stale_seconds` while it should be live but has not ticked (agents.runtime.staleness);
    `degraded` (a sentence) and `degraded_since` while its kind works in a degraded state
    (an exchange feed that cannot reach the exchange), and `last_price_at`, the time of
    the newest price it published, where its kind reports one. One Redis round trip;
    with Redis away, the wait as the loops wrote it to the database."""
    if not rows:
        return {}
    return _notes(rows, _loop_reads(kind, [row.pk for row in rows]))


def _notes(rows: list[Any], reads: dict[str, tuple[dict[str, str], Any]] | None) -> dict[str, dict[str, Any]]:
    if reads is None:
        return {row.pk: _notes_without_redis(row) for row in rows}
    now = time.time()
    threshold = settings.HEARTBEAT_STALE_SECONDS
    notes = {}
    for row in rows:
        snapshot, beat = reads[row.pk]
        waiting_for, waiting_since = snapshot.get("waiting_for"), snapshot.get("waiting_since")
        degraded, degraded_since = snapshot.get("degraded"), snapshot.get("degraded_since")
        last_price_at = snapshot.get("last_price_at")
        beat_at = beat_time(beat)
        stale = stale_for(row.desired_state, row.status, row.status_changed_at, beat_at, now, threshold)
        live = row.status in LIVE_STATUSES and stale is None
        notes[row.pk] = {
            "waiting_for": waiting_for if live and waiting_for else None,
            "waiting_since": _when(waiting_since) if live and waiting_for else None,
            "stale_seconds": round(stale, 1) if stale is not None and math.isfinite(stale) else None,
            "degraded": degraded if live and degraded else None,
            "degraded_since": _when(degraded_since) if live and degraded else None,
            "last_price_at": _when(last_price_at),
        }
    return notes


def _notes_without_redis(row: Any) -> dict[str, Any]:
    """Redis is away: every live loop waits for it (since when, if a loop wrote it)."""
    if row.status not in LIVE_STATUSES:
        return dict(NO_LOOP_NOTE)
    stored = row.metrics if isinstance(row.metrics, dict) else {}
    since = _when(stored.get("waiting_since")) if stored.get("waiting_for") == REDIS else None
    return {**NO_LOOP_NOTE, "waiting_for": REDIS, "waiting_since": since}


def _when(unix: Any) -> dt.datetime | None:
    try:
        value = float(unix)
    except (TypeError, ValueError):
        return None
    return dt.datetime.fromtimestamp(value, tz=dt.UTC) if value > 0 else None


def _last_active(agent: Agent, metrics: dict[str, Any] | None) -> dt.datetime | None:
    """The newer of the database's last_active (written every few seconds) and the loop's
    live one in Redis (every step)."""
    stored = agent.last_active
    live = (metrics or {}).get("last_active")
    if not live:
        return stored
    live_at = dt.datetime.fromtimestamp(float(live), tz=dt.UTC)
    return live_at if stored is None or live_at > stored else stored


def agent_dict(
    agent: Agent,
    metrics: dict[str, Any] | None = None,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    note: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One agent in the shape of docs/api.md. Lists pass `inputs`/`outputs` (from
    agents.graph.parents_of) or prefetch inputs_from and outputs_to."""
    if inputs is None:
        inputs = sorted(a.agent_id for a in agent.inputs_from.all())
    if outputs is None:
        outputs = sorted(a.agent_id for a in agent.outputs_to.all())
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "kind": agent.kind,
        "role": agent.role,
        "enabled": agent.enabled,
        "status": agent.status,
        "desired_state": agent.desired_state,
        "symbols": stored_symbols(agent.symbols),
        "inputs_from": inputs,
        "outputs_to": outputs,
        "config": stored_object(agent.config),
        "metrics": metrics if metrics else (agent.metrics or {}),
        "last_active": _last_active(agent, metrics),
        "last_heartbeat": agent.last_heartbeat,
        "status_changed_at": agent.status_changed_at,
        "run_id": agent.run_id or None,
        "error_message": agent.error_message or None,
        "position_y": agent.position_y,
        **(note or NO_LOOP_NOTE),
    }


def agent_dicts(agents: Iterable[Agent], parents: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Agents as docs/api.md shows them, in a fixed number of queries (`parents`: every edge,
    from agents.graph.parents_of, else the agents' prefetched relations)."""
    agents = list(agents)
    # The live counters and the loop notes come from one Redis round trip.
    reads = _loop_reads("agent", [a.agent_id for a in agents]) if agents else {}
    metrics = {rid: numbers(snapshot) for rid, (snapshot, _beat) in (reads or {}).items()}
    notes = _notes(agents, reads)
    if parents is None:
        return [agent_dict(a, metrics.get(a.agent_id), note=notes.get(a.agent_id)) for a in agents]
    children: dict[str, list[str]] = {}
    for consumer, producers in parents.items():
        for producer in producers:
            children.setdefault(producer, []).append(consumer)
    return [
        agent_dict(
            a,
            metrics.get(a.agent_id),
            parents.get(a.agent_id, []),
            sorted(children.get(a.agent_id, [])),
            note=notes.get(a.agent_id),
        )
        for a in agents
    ]


def agents_queryset():
    return Agent.objects.prefetch_related("inputs_from", "outputs_to")


def system_status() -> dict[str, Any]:
    """Overall status derived from observed states (docs/api.md GET /api/system/status)."""
    counts = {s: 0 for s in ("running", "stopped", "error", "starting", "stopping")}
    total = 0
    enabled_total = enabled_running = 0
    for row in Agent.objects.values("status", "enabled").annotate(n=Count("agent_id")):
        total += row["n"]
        counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
        if row["enabled"]:
            enabled_total += row["n"]
            if row["status"] == Status.RUNNING:
                enabled_running += row["n"]
    if counts.get(Status.ERROR):
        status = "error"
    elif counts.get(Status.STARTING) and not counts.get(Status.STOPPING):
        status = "starting"
    elif counts.get(Status.STOPPING) and not counts.get(Status.STARTING):
        status = "stopping"
    elif enabled_total and enabled_running == enabled_total:
        status = "running"
    elif (
        counts.get(Status.RUNNING) == 0
        and not counts.get(Status.STARTING)
        and not counts.get(Status.STOPPING)
    ):
        status = "stopped"
    else:
        status = "partial"
    return {
        "status": status,
        "agents": {"total": total, **counts},
        "sessions": session_counts(),
        "recent_trades": recent_trades(),
        "updated_at": timezone.now(),
    }


# --- sessions --------------------------------------------------------------------------
#
# Numbers as the API shows them: money and prices are exact decimal strings with at least
# two places ("10000.00", "0.96", "64012.10", "12.345678": never rounded, so they add up);
# quantities are exact decimal strings without trailing zeros ("0.015"); ratios and
# percentages (pnl_pct, win_rate, max_drawdown, exposure, max_position_weight) are JSON
# numbers (pnl_pct 2.3 = 2.3 %, the others fractions: 0.1 = 10 %).

RECENT_TRADES = 20  # fills in a session's detail
MAX_EQUITY_POINTS = 5000  # the newest points of an equity curve


def amount(value: Decimal | None) -> str | None:
    """Money or a price: exact, at least two decimal places."""
    if value is None:
        return None
    whole, _, fraction = money.as_str(value).partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def quantity(value: Decimal | None) -> str | None:
    """A quantity: exact, without trailing zeros."""
    return None if value is None else money.as_str(value)


def ratio(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def session_dict(
    session: TradingSession, numbers: dict[str, Any], note: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One session in the shape of docs/api.md; `numbers` holds cash, equity, pnl, pnl_pct and
    trades from its ledger (session_metrics, or session_numbers for a list); `note` what
    its loop goes through (loop_notes)."""
    return {
        "session_id": session.session_id,
        "name": session.name,
        "status": session.status,
        "desired_state": session.desired_state,
        "symbols": stored_symbols(session.symbols),
        "decision_agent": session.decision_agent_id,
        "execution_agent": session.execution_agent_id,
        "starting_cash": amount(session.starting_cash),
        "cash": amount(numbers["cash"]),
        "equity": amount(numbers["equity"]),
        "pnl": amount(numbers["pnl"]),
        "pnl_pct": ratio(numbers["pnl_pct"]),
        "trades": numbers["trades"],
        "started_at": session.started_at,
        "paused_at": session.paused_at,
        "stopped_at": session.stopped_at,
        "status_changed_at": session.status_changed_at,
        "last_heartbeat": session.last_heartbeat,
        "archived": session.archived,
        "max_position_weight": ratio(session.max_position_weight),
        "max_orders_per_minute": session.max_orders_per_minute,
        "max_price_age_seconds": session.max_price_age_seconds,
        "flatten_on_stop": session.flatten_on_stop,
        "fee_bps": quantity(session.fee_bps),
        "slippage_bps": quantity(session.slippage_bps),
        "slippage_size_scaled": session.slippage_size_scaled,
        "slippage_size_reference": amount(session.slippage_size_reference),
        "error_message": session.error_message or None,
        "created_at": session.created_at,
        **(note or NO_LOOP_NOTE),
    }


def session_numbers(sessions: list[TradingSession]) -> dict[str, dict[str, Any]]:
    """cash, equity, pnl, pnl_pct and trades of each session, in two queries whatever
    their number, by the formulas of sessions.metrics (positions at their last mark).

    Call it inside the transaction that read `sessions` with select_for_update, so that
    cash and positions come from the same moment (a fill locks its session row first).
    Sums are made in Python (SQLite would add decimals in floating point).
    """
    ids = {s.session_id for s in sessions}
    if not ids:
        return {}
    positions = Position.objects.filter(quantity__gt=0)
    fills = Fill.objects.all()
    if len(ids) <= 100:  # a few sessions: read only theirs (else all, and skip the others)
        positions, fills = positions.filter(session_id__in=ids), fills.filter(session_id__in=ids)
    holdings: dict[str, list[tuple[Decimal, Decimal]]] = {sid: [] for sid in ids}
    for session_id, qty, last_mark, avg_cost in positions.values_list(
        "session_id", "quantity", "last_mark", "avg_cost"
    ):
        if session_id in ids:
            holdings[session_id].append((qty, last_mark if last_mark is not None else avg_cost))
    trades = dict(
        fills.order_by().values("session_id").annotate(n=Count("fill_id")).values_list("session_id", "n")
    )
    numbers = {}
    for session in sessions:
        equity_now = money.storable(metrics.equity(session.cash, holdings[session.session_id]))
        numbers[session.session_id] = {
            "cash": session.cash,
            "equity": equity_now,
            "pnl": metrics.pnl(equity_now, session.starting_cash),
            "pnl_pct": metrics.pnl_pct(equity_now, session.starting_cash),
            "trades": trades.get(session.session_id, 0),
        }
    return numbers


def session_dicts(session_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Sessions (all, or those of `session_ids`) with their ledger numbers, in a fixed
    number of queries. The session rows are locked while cash and positions are read."""
    with read_snapshot():
        queryset = TradingSession.objects.select_for_update().order_by("session_id")
        if session_ids is not None:
            queryset = queryset.filter(pk__in=session_ids)
        sessions = list(queryset)
        numbers = session_numbers(sessions)
    notes = loop_notes("session", sessions)
    return [session_dict(s, numbers[s.session_id], notes.get(s.session_id)) for s in sessions]


def one_session(session_id: str) -> dict[str, Any]:
    found = session_dicts([session_id])
    if not found:
        raise NotFound(f"There is no session with id {session_id!r}.")
    return found[0]


def require_session(session_id: str) -> None:
    if not TradingSession.objects.filter(pk=session_id).exists():
        raise NotFound(f"There is no session with id {session_id!r}.")


def fill_dict(fill: Fill) -> dict[str, Any]:
    return {
        "fill_id": fill.fill_id,
        "order_id": fill.order_id,
        "symbol": fill.symbol,
        "side": fill.side,
        "quantity": quantity(fill.quantity),
        "price": amount(fill.price),
        "mark_price": amount(fill.mark_price),
        "notional": amount(fill.notional),
        "fee": amount(fill.fee),
        "slippage": amount(fill.slippage),
        "realized_pnl": amount(fill.realized_pnl),
        "ts": fill.ts,
    }


def order_dict(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "symbol": order.symbol,
        "side": order.side,
        "order_type": order.order_type,
        "quantity": quantity(order.quantity),
        "limit_price": amount(order.limit_price),
        "reduce_only": order.reduce_only,
        "status": order.status,
        "created_at": order.created_at,
    }


def position_dict(position: Position) -> dict[str, Any]:
    """A held position, valued like session_metrics does: at its last mark."""
    mark = position.last_mark if position.last_mark is not None else position.avg_cost
    value = money.quantize_money(money.mul(position.quantity, mark))
    return {
        "symbol": position.symbol,
        "quantity": quantity(position.quantity),
        "avg_cost": amount(position.avg_cost),
        "cost_basis": amount(position.cost_basis),
        "last_mark": amount(position.last_mark),
        # When the mark's price was observed, and how old it is now: a position valued at
        # an old price (its feed stalled, or the loop restarted) says so.
        "last_mark_at": position.last_mark_at,
        "mark_age_seconds": _age_seconds(position.last_mark_at),
        "market_value": amount(value),
        "unrealized_pnl": amount(value - position.cost_basis),
        "realized_pnl": amount(position.realized_pnl),
    }


def _age_seconds(when: dt.datetime | None) -> int | None:
    if when is None:
        return None
    return max(0, int((timezone.now() - when).total_seconds()))


def metrics_dict(values: dict[str, Any]) -> dict[str, Any]:
    """session_metrics for JSON: ratios as numbers, amounts as strings, counts as ints."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in RATIO_METRICS:
            out[key] = ratio(value)
        elif isinstance(value, Decimal):
            out[key] = amount(value)
        else:
            out[key] = value
    return out


RATIO_METRICS = frozenset({"pnl_pct", "win_rate", "max_drawdown", "exposure"})


def session_detail(session_id: str) -> dict[str, Any]:
    """The session object plus positions, open orders, recent fills and every metric.

    One transaction: session_metrics locks the session row, and the lock is held until
    the positions, orders and fills are read, so every number comes from the same moment.
    """
    with read_snapshot():
        try:
            values = metrics.session_metrics(session_id)
        except TradingSession.DoesNotExist:
            raise NotFound(f"There is no session with id {session_id!r}.") from None
        session = TradingSession.objects.get(pk=session_id)
        positions = list(Position.objects.filter(session_id=session_id, quantity__gt=0).order_by("symbol"))
        orders = list(
            Order.objects.filter(session_id=session_id, status__in=OPEN_STATUSES).order_by("created_at")
        )
        fills = list(Fill.objects.filter(session_id=session_id).order_by("-ts", "-fill_id")[:RECENT_TRADES])
    body = session_dict(session, values, loop_notes("session", [session]).get(session_id))
    body["positions"] = [position_dict(p) for p in positions]
    body["open_orders"] = [order_dict(o) for o in orders]
    body["recent_trades"] = [fill_dict(f) for f in fills]
    body["metrics"] = metrics_dict(values)
    return body


def session_trades(session_id: str, limit: int, offset: int) -> dict[str, Any]:
    """A page of the session's fills, newest first, with the total count."""
    require_session(session_id)
    fills = Fill.objects.filter(session_id=session_id).order_by("-ts", "-fill_id")
    return {
        "count": fills.count(),
        "limit": limit,
        "offset": offset,
        "items": [fill_dict(f) for f in fills[offset : offset + limit]],
    }


def session_equity(session_id: str, cap: int | None = None) -> dict[str, Any]:
    """The newest `cap` (MAX_EQUITY_POINTS) equity points, oldest first; `truncated`
    says older ones were left out."""
    cap = cap or MAX_EQUITY_POINTS
    require_session(session_id)
    rows = list(
        EquityPoint.objects.filter(session_id=session_id)
        .order_by("-ts", "-id")
        .values_list("ts", "equity", "cash")[: cap + 1]
    )
    truncated = len(rows) > cap
    rows = rows[:cap]
    rows.reverse()
    return {
        "session_id": session_id,
        "points": [{"ts": ts, "equity": amount(eq), "cash": amount(cash)} for ts, eq, cash in rows],
        "truncated": truncated,
    }


def session_counts() -> dict[str, int]:
    """Sessions by observed status, with the total (docs/api.md GET /api/system/status)."""
    counts = {"total": 0, **{s.value: 0 for s in Status}}
    for row in TradingSession.objects.order_by().values("status").annotate(n=Count("session_id")):
        counts["total"] += row["n"]
        counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
    return counts


def recent_trades(hours: int = 24) -> int:
    """Fills of every session in the last `hours` hours."""
    return Fill.objects.filter(ts__gte=timezone.now() - timedelta(hours=hours)).count()

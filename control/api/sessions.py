"""The JSON API's paper trading sessions (docs/api.md "Paper trading sessions"): thin
endpoints over control.services and control.presenters, mounted by control.api.app."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from ninja import Body, Query, Router, Schema, Status
from pydantic import AfterValidator, Field

from agents.validators import MAX_PRICE_AGE_SECONDS, MAX_SESSION_SYMBOLS, SYMBOL
from control import presenters, services
from control.api.schemas import BODY_ERRORS, ERRORS, JsonInt, StrictBody, json_int_between, optional
from control.auth import require_control

# --- paper trading sessions ---------------------------------------------------------
#
# Numbers: money and prices are exact decimal strings with at least two places
# ("10000.00", "0.96", "12.345678": never rounded, so they add up); quantities and basis
# points exact decimal strings without trailing zeros ("0.015", "2.5"); ratios and
# percentages JSON numbers (pnl_pct 2.3 means 2.3 %; win_rate, max_drawdown, exposure and
# max_position_weight are fractions, 0.1 = 10 %).

sessions = Router(tags=["sessions"])

MAX_TRADES_PAGE = 1000


class SessionOut(Schema):
    session_id: str
    name: str
    status: str
    desired_state: str
    symbols: list[str]
    decision_agent: str | None
    execution_agent: str | None
    starting_cash: str
    cash: str
    equity: str
    pnl: str
    pnl_pct: float
    trades: int
    started_at: datetime | None
    paused_at: datetime | None
    stopped_at: datetime | None
    status_changed_at: datetime | None
    last_heartbeat: datetime | None
    archived: bool
    max_position_weight: float
    max_orders_per_minute: int
    flatten_on_stop: bool
    # Null: automatic (twice the feeds' bar interval plus 30 s, at least 60 s).
    max_price_age_seconds: int | None
    fee_bps: str
    slippage_bps: str
    slippage_size_scaled: bool
    slippage_size_reference: str
    error_message: str | None
    created_at: datetime | None
    # What the loop goes through besides its status: an outage it waits out
    # ("database", "redis"), or no heartbeat for this many seconds (stale).
    waiting_for: str | None = None
    waiting_since: datetime | None = None
    stale_seconds: float | None = None


class FillOut(Schema):
    fill_id: str
    order_id: str
    symbol: str
    side: str
    quantity: str
    price: str
    mark_price: str
    notional: str
    fee: str
    slippage: str
    realized_pnl: str | None
    ts: datetime


class OrderOut(Schema):
    order_id: str
    symbol: str
    side: str
    order_type: str
    quantity: str
    limit_price: str | None
    reduce_only: bool
    status: str
    created_at: datetime


class PositionOut(Schema):
    symbol: str
    quantity: str
    avg_cost: str
    cost_basis: str
    last_mark: str | None
    last_mark_at: datetime | None
    mark_age_seconds: int | None
    market_value: str
    unrealized_pnl: str
    realized_pnl: str


class SessionDetailOut(SessionOut):
    positions: list[PositionOut]
    open_orders: list[OrderOut]
    recent_trades: list[FillOut]
    metrics: dict[str, Any]


class TradesOut(Schema):
    count: int
    limit: int
    offset: int
    items: list[FillOut]


class EquityPointOut(Schema):
    ts: datetime
    equity: str
    cash: str


class EquityOut(Schema):
    session_id: str
    points: list[EquityPointOut]
    truncated: bool


class SessionBulkOut(Schema):
    changed: list[str]
    skipped: list[dict[str, str]]


def _text(pattern: str, what: str) -> Any:
    """A string matching `pattern` (documented as the schema's `pattern`), or `what` as
    the error: a sentence instead of the regular expression."""

    # A schema's pattern is searched for, as here; its "$" is the very end (Python's
    # also matches before a final newline).
    compiled = re.compile(pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern)

    def check(value: str) -> str:
        if not compiled.search(value):
            raise ValueError(what)
        return value

    return Annotated[str, Field(json_schema_extra={"pattern": pattern}), AfterValidator(check)]


DecimalText = _text(r"^[0-9]{1,12}(\.[0-9]{1,8})?$", 'must be a decimal number in a string, e.g. "10000.00"')
Symbol = _text(
    f"^{SYMBOL.pattern}$", "must be a symbol in capitals (letters, digits, '-', '.', '_'), e.g. BTC-USD"
)
NotBlank = _text(r"\S", "must not be blank")
SessionId = _text(r"^[-a-zA-Z0-9_]{1,64}$", "must be 1 to 64 letters, digits, '-' or '_'")


def _unique(symbols: list[str]) -> list[str]:
    if len(set(symbols)) != len(symbols):
        raise ValueError("a symbol is listed twice")
    return symbols


class SessionIn(StrictBody):
    """A new session. The types and formats are checked here; what a schema cannot say
    (the decision agent exists and follows the symbols, the id is free) is checked by
    sessions.forms.SessionCreateForm, shared with the page, with 422 naming the field."""

    session_id: SessionId = optional()
    name: Annotated[NotBlank, Field(max_length=120)]
    symbols: Annotated[
        list[Symbol],
        Field(min_length=1, max_length=MAX_SESSION_SYMBOLS, json_schema_extra={"uniqueItems": True}),
        AfterValidator(_unique),
    ]
    decision_agent: str = Field(description="The id of a decision agent.")
    execution_agent: str = optional(description="The id of an execution agent.")
    starting_cash: Annotated[DecimalText, Field(examples=["10000.00"])]
    max_position_weight: float = optional(gt=0, le=1)
    max_orders_per_minute: JsonInt = optional(ge=1, le=600)
    flatten_on_stop: bool = optional()
    # The one field where null means something: "automatic" (the default).
    max_price_age_seconds: json_int_between(1, MAX_PRICE_AGE_SECONDS) | None = None  # type: ignore[valid-type]
    fee_bps: DecimalText = optional()
    slippage_bps: DecimalText = optional()
    slippage_size_scaled: bool = optional()
    slippage_size_reference: DecimalText = optional()


@sessions.get("", response={200: list[SessionOut], **ERRORS})
def list_sessions(request):
    """Every session with its status and performance (cash, equity, pnl, pnl_pct, trades)
    from its own ledger, positions valued at their last mark; a fixed number of queries."""
    return presenters.session_dicts()


@sessions.post("", response={201: SessionOut, **BODY_ERRORS})
def create_session(request, data: Body[SessionIn]):
    """Create a session (status `ready`) from a JSON object: `name`, `symbols`,
    `decision_agent`, `starting_cash` and optionally `session_id` (made from the name
    when left out), `execution_agent` (needed when there are several), the risk rules
    (`max_position_weight`, `max_orders_per_minute`, `flatten_on_stop`,
    `max_price_age_seconds`: null or left out for automatic) and the fill
    model (`fee_bps`, `slippage_bps`, `slippage_size_scaled`, `slippage_size_reference`).
    Each value in exactly the JSON type of the schema (no number or boolean in a string,
    no null but for max_price_age_seconds). 422 lists each bad or unknown field with the
    reason; 400 for a body that is not strict JSON (duplicate keys, NaN); 415 unless it
    is sent as `application/json`. Nothing is created then."""
    require_control(request.user)
    session = services.create_session(data.model_dump(exclude_unset=True), user=request.user)
    return Status(201, presenters.one_session(session.session_id))


# These two literal paths come before the `/{session_id}` routes, which would take them.
@sessions.post("/pause-all", response={200: SessionBulkOut, **ERRORS})
def pause_all_sessions(request):
    """Pause every running session; the others are listed in `skipped` with the reason."""
    require_control(request.user)
    result = services.pause_all_sessions(user=request.user)
    return {"changed": result.changed, "skipped": result.skipped}


@sessions.post("/resume-all", response={200: SessionBulkOut, **ERRORS})
def resume_all_sessions(request):
    """Resume every paused session; the others are listed in `skipped` with the reason."""
    require_control(request.user)
    result = services.resume_all_sessions(user=request.user)
    return {"changed": result.changed, "skipped": result.skipped}


# A session made before these two ids were reserved may be called "pause-all": GET on
# those two paths is still that session's detail. Documented, so the schema lists every
# method the paths answer (their `Allow` header says GET, POST).
@sessions.get("/pause-all", response={200: SessionDetailOut, **ERRORS})
def get_session_named_pause_all(request):
    """The detail of a session whose id is `pause-all` (ids made before it was reserved)."""
    return presenters.session_detail("pause-all")


@sessions.get("/resume-all", response={200: SessionDetailOut, **ERRORS})
def get_session_named_resume_all(request):
    """The detail of a session whose id is `resume-all` (ids made before it was reserved)."""
    return presenters.session_detail("resume-all")


@sessions.get("/{session_id}", response={200: SessionDetailOut, **ERRORS})
def get_session(request, session_id: str):
    """The session object plus its held positions (valued at their last mark), open
    orders (oldest first), the 20 most recent fills (newest first) and every metric of
    sessions.metrics.session_metrics. In `metrics`, amounts are decimal strings and
    pnl_pct, win_rate, max_drawdown and exposure are numbers (null when undefined, e.g.
    win_rate before the first sell); `trades` is a count. All read in one transaction
    under the session's lock, so the numbers reconcile."""
    return presenters.session_detail(session_id)


@sessions.post("/{session_id}/start", response={200: SessionOut, **ERRORS})
def start_session(request, session_id: str):
    """Start a ready or stopped session (a stopped one continues with its cash and
    positions). 409 if it is running, paused, starting or stopping."""
    require_control(request.user)
    services.start_session(session_id, user=request.user)
    return presenters.one_session(session_id)


@sessions.post("/{session_id}/stop", response={200: SessionOut, **ERRORS})
def stop_session(request, session_id: str):
    """Stop a session: its loop cancels open orders, flattens if the session says so and
    confirms `stopped`. 409 if it is stopped, stopping or was never started."""
    require_control(request.user)
    services.stop_session(session_id, user=request.user)
    return presenters.one_session(session_id)


@sessions.post("/{session_id}/pause", response={200: SessionOut, **ERRORS})
def pause_session(request, session_id: str):
    """Pause a running session: no fill from now on; the loop cancels its open orders and
    keeps marking to market. 409 unless it is running."""
    require_control(request.user)
    services.pause_session(session_id, user=request.user)
    return presenters.one_session(session_id)


@sessions.post("/{session_id}/resume", response={200: SessionOut, **ERRORS})
def resume_session(request, session_id: str):
    """Resume a paused session with the same cash and positions. 409 unless it is paused."""
    require_control(request.user)
    services.resume_session(session_id, user=request.user)
    return presenters.one_session(session_id)


# Offsets past this are refused: no session has that many fills, and a huge OFFSET is
# work for the database (and overflows a 64-bit integer in SQLite).
MAX_TRADES_OFFSET = 10_000_000


@sessions.get("/{session_id}/trades", response={200: TradesOut, 422: BODY_ERRORS[422], **ERRORS})
def session_trades(
    request,
    session_id: str,
    limit: int = Query(100, ge=1, le=MAX_TRADES_PAGE),
    offset: int = Query(0, ge=0, le=MAX_TRADES_OFFSET),
):
    """The session's fills, newest first: `count` is the total, `items` the page of
    `limit` (1..1000, default 100) fills after skipping `offset` (0 or more); outside
    those ranges 422 naming the parameter."""
    return presenters.session_trades(session_id, limit, offset)


@sessions.get("/{session_id}/equity", response={200: EquityOut, **ERRORS})
def session_equity(request, session_id: str):
    """The equity curve, oldest first: the newest 5000 recorded points at most
    (`truncated` is true when older points were left out), each with `ts`, `equity`
    and `cash`. Points are recorded by the session loop when it marks to market."""
    return presenters.session_equity(session_id)

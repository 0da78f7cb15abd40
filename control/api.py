"""The JSON API (API.md): thin endpoints over control.services.

Schema at /api/openapi.json, interactive docs at /api/docs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, JsonResponse
from ninja import Body, NinjaAPI, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyCookie, HttpBearer

from agents.models import Agent
from control import health, presenters, services
from control.auth import bearer_user, require_control
from control.errors import Forbidden, InvalidInput, NotFound, ServiceError


class SessionAuth(APIKeyCookie):
    """A logged-in browser; CSRF is checked on unsafe methods."""

    param_name = "sessionid"

    def __call__(self, request: HttpRequest):
        # Only a logged-in session needs (and gets) the CSRF check: ninja would check it
        # before looking at the user, refusing every bearer-token or anonymous POST with
        # 403 before TokenAuth and the 401 were reached.
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        try:
            return super().__call__(request)
        except HttpError as exc:
            raise Forbidden(
                "The CSRF check failed: send the X-CSRFToken header with the csrftoken cookie's value.",
                code="csrf_failed",
            ) from exc

    def authenticate(self, request: HttpRequest, key: str | None):
        user = getattr(request, "user", None)
        return user if user is not None and user.is_authenticated else None


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = bearer_user(request)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="Paper trading control panel API",
    version="1",
    description="Start, stop and watch the agents and paper trading sessions. "
    "Authenticate with a browser session or `Authorization: Bearer <token>` "
    "(`python manage.py issue_token <username>`).",
    auth=[SessionAuth(), TokenAuth()],
    urls_namespace="api",
)


def _error(request: HttpRequest, status: int, detail: str, code: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code, **extra}, status=status)


@api.exception_handler(ServiceError)
def _service_error(request, exc: ServiceError):
    return JsonResponse(exc.as_dict(), status=exc.status)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return _error(
        request,
        401,
        "Log in, or send 'Authorization: Bearer <token>' (manage.py issue_token).",
        "not_authenticated",
    )


@api.exception_handler(NinjaValidationError)
def _invalid(request, exc: NinjaValidationError):
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", [])[1:]) or "body", "reason": e.get("msg", "")}
        for e in exc.errors
    ]
    malformed = any(e.get("type") in ("json_invalid", "model_attributes_type") for e in exc.errors)
    if malformed:
        return _error(
            request,
            400,
            "The request body is not valid JSON of the expected shape.",
            "malformed",
            errors=errors,
        )
    summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    return _error(request, 422, f"Invalid values: {summary}.", "invalid", errors=errors)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return _error(request, exc.status_code, str(exc), "malformed" if exc.status_code == 400 else "error")


# --- schemas ---------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str
    code: str
    errors: list[dict[str, str]] | None = None


class AgentOut(Schema):
    agent_id: str
    name: str
    kind: str
    role: str
    enabled: bool
    status: str
    desired_state: str
    symbols: list[str]
    inputs_from: list[str]
    outputs_to: list[str]
    config: dict[str, Any]
    metrics: dict[str, Any]
    last_active: datetime | None
    last_heartbeat: datetime | None
    status_changed_at: datetime | None
    run_id: str | None
    error_message: str | None


class AgentMetricsOut(Schema):
    agent_id: str
    metrics: dict[str, Any]
    last_active: datetime | None


class BulkOut(Schema):
    status: str
    changed: list[str]
    skipped: list[dict[str, str]]


class SystemStatusOut(Schema):
    status: str
    agents: dict[str, int]
    sessions: dict[str, int]
    recent_trades: int
    health: dict[str, Any]
    updated_at: datetime


ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut}


# --- system ------------------------------------------------------------------------

system = Router(tags=["system"])


@system.get("/status", response={200: SystemStatusOut, **ERRORS})
def system_status(request):
    """Overall status derived from what is actually running, with counts.

    `sessions` counts the sessions by observed status (total, ready, starting, running,
    paused, stopping, stopped, error); `recent_trades` is the number of fills of every
    session in the last 24 hours.
    """
    body = presenters.system_status()
    body["health"] = {"score": health.cached_score()}
    return body


def _bulk_out(result: services.BulkResult) -> dict[str, Any]:
    return {
        "status": presenters.system_status()["status"],
        "changed": result.changed,
        "skipped": result.skipped,
    }


@system.post("/start", response={200: BulkOut, **ERRORS})
def system_start(request):
    """Start every enabled agent (upstream first). 409 if everything already runs."""
    require_control(request.user)
    return _bulk_out(services.start_system(user=request.user))


@system.post("/stop", response={200: BulkOut, **ERRORS})
def system_stop(request):
    """Stop every running agent gracefully (downstream first). 409 if nothing runs."""
    require_control(request.user)
    return _bulk_out(services.stop_system(user=request.user))


@system.get("/health", response={200: dict[str, Any], **ERRORS})
def system_health(request):
    """Database, Redis, workers, channel layer, host and stale heartbeats, with a score."""
    return health.health()


# --- agents ------------------------------------------------------------------------

agents = Router(tags=["agents"])


def _agent(agent_id: str) -> Agent:
    agent = presenters.agents_queryset().filter(pk=agent_id).first()
    if agent is None:
        raise NotFound(f"There is no agent with id {agent_id!r}.")
    return agent


def _agent_out(agent_id: str) -> dict[str, Any]:
    return presenters.agent_dicts([_agent(agent_id)])[0]


@agents.get("", response={200: list[AgentOut], **ERRORS})
def list_agents(request):
    return presenters.agent_dicts(presenters.agents_queryset())


@agents.get("/{agent_id}", response={200: AgentOut, **ERRORS})
def get_agent(request, agent_id: str):
    return _agent_out(agent_id)


@agents.post("/{agent_id}/start", response={200: AgentOut, **ERRORS})
def start_agent(request, agent_id: str):
    """Start the agent's loop. 409 if it is running, starting or stopping."""
    require_control(request.user)
    services.start_agent(agent_id, user=request.user)
    return _agent_out(agent_id)


@agents.post("/{agent_id}/stop", response={200: AgentOut, **ERRORS})
def stop_agent(request, agent_id: str):
    """Stop the agent's loop; it confirms within one tick. 409 if already stopped."""
    require_control(request.user)
    services.stop_agent(agent_id, user=request.user)
    return _agent_out(agent_id)


@agents.get("/{agent_id}/metrics", response={200: AgentMetricsOut, **ERRORS})
def agent_metrics(request, agent_id: str):
    out = _agent_out(agent_id)
    return {"agent_id": agent_id, "metrics": out["metrics"], "last_active": out["last_active"]}


@agents.post("/{agent_id}/config", response={200: AgentOut, 422: ErrorOut, **ERRORS})
def agent_config(request, agent_id: str, config: Body[dict[str, Any]]):
    """Validate a new config with the agent's kind and store it (422 with the field and reason).

    The request body is the config object itself, e.g. `{"tick_seconds": 2}`.
    """
    require_control(request.user)
    services.update_agent_config(agent_id, config, user=request.user)
    return _agent_out(agent_id)


@agents.post("/{agent_id}/metrics/reset", response={200: AgentMetricsOut, **ERRORS})
def agent_metrics_reset(request, agent_id: str):
    require_control(request.user)
    services.reset_agent_metrics(agent_id, user=request.user)
    return {"agent_id": agent_id, "metrics": {}, "last_active": _agent(agent_id).last_active}


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
    fee_bps: str
    slippage_bps: str
    slippage_size_scaled: bool
    slippage_size_reference: str
    error_message: str | None
    created_at: datetime | None


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


@sessions.get("", response={200: list[SessionOut], **ERRORS})
def list_sessions(request):
    """Every session with its status and performance (cash, equity, pnl, pnl_pct, trades)
    from its own ledger, positions valued at their last mark; a fixed number of queries."""
    return presenters.session_dicts()


@sessions.post("", response={201: SessionOut, 400: ErrorOut, 422: ErrorOut, **ERRORS})
def create_session(request, data: Body[dict[str, Any]]):
    """Create a session (status `ready`) from a JSON object: `name`, `symbols`,
    `decision_agent`, `starting_cash` and optionally `session_id` (made from the name
    when left out), `execution_agent` (needed when there are several), the risk rules
    (`max_position_weight`, `max_orders_per_minute`, `flatten_on_stop`) and the fill
    model (`fee_bps`, `slippage_bps`, `slippage_size_scaled`, `slippage_size_reference`).
    422 lists each bad or unknown field with the reason; nothing is created then."""
    require_control(request.user)
    session = services.create_session(data, user=request.user)
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


# A session may be called "pause-all" (ids are slugs made from names): GET on those two
# paths is still that session's detail.
@sessions.get("/pause-all", response={200: SessionDetailOut, **ERRORS}, include_in_schema=False)
def get_session_named_pause_all(request):
    return presenters.session_detail("pause-all")


@sessions.get("/resume-all", response={200: SessionDetailOut, **ERRORS}, include_in_schema=False)
def get_session_named_resume_all(request):
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


@sessions.get("/{session_id}/trades", response={200: TradesOut, 422: ErrorOut, **ERRORS})
def session_trades(request, session_id: str, limit: int = 100, offset: int = 0):
    """The session's fills, newest first: `count` is the total, `items` the page of
    `limit` (1..1000, default 100) fills after skipping `offset` (0 or more); outside
    those ranges 422."""
    errors = []
    if not 1 <= limit <= MAX_TRADES_PAGE:
        errors.append({"field": "limit", "reason": f"must be between 1 and {MAX_TRADES_PAGE}, not {limit}"})
    if offset < 0:
        errors.append({"field": "offset", "reason": f"must be 0 or more, not {offset}"})
    if errors:
        summary = "; ".join(f"{e['field']} {e['reason']}" for e in errors)
        raise InvalidInput(f"Cannot page the trades: {summary}.", code="invalid", errors=errors)
    return presenters.session_trades(session_id, limit, offset)


@sessions.get("/{session_id}/equity", response={200: EquityOut, **ERRORS})
def session_equity(request, session_id: str):
    """The equity curve, oldest first: the newest 5000 recorded points at most
    (`truncated` is true when older points were left out), each with `ts`, `equity`
    and `cash`. Points are recorded by the session loop when it marks to market."""
    return presenters.session_equity(session_id)


api.add_router("/system", system)
api.add_router("/agents", agents)
api.add_router("/paper-trading/sessions", sessions)

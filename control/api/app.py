"""The JSON API (docs/api.md): thin endpoints over control.services.

Schema at /api/openapi.json, interactive docs at /api/docs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.debug import sensitive_variables
from ninja import Body, NinjaAPI, Router, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyCookie, HttpBearer

from agents.models import Agent
from control import health, presenters, services
from control.api.parser import StrictJSONParser
from control.api.schemas import BODY_ERRORS, ERRORS, reason
from control.api.sessions import sessions as sessions_router
from control.auth import bearer_user, docs_login_required, require_control
from control.errors import Forbidden, NotFound, ServiceError, json_error


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
    """`Authorization: Bearer <token>`, read by control.auth.bearer_user (which also
    throttles unknown tokens). ninja's own header parsing is skipped: its frame would hold
    the raw token where an error report can show it."""

    @sensitive_variables("token")
    def __call__(self, request: HttpRequest):
        return self.authenticate(request, "")

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
    # The schema and the docs page need a login too (docs/architecture.md, Auth: every page).
    docs_decorator=docs_login_required,
    urls_namespace="api",
    # Every body is read by control.api.parser: JSON only, strictly.
    parser=StrictJSONParser(),
)


def _error(request: HttpRequest, status: int, detail: str, code: str, **extra: Any) -> JsonResponse:
    return json_error(status, detail, code, **extra)


@api.exception_handler(ServiceError)
def _service_error(request, exc: ServiceError):
    return exc.response()


@api.exception_handler(Http404)
def _not_found(request, exc: Http404):
    # ninja's own answer has no code, and with DEBUG the exception's text.
    return _error(request, 404, f"There is nothing at {request.path}.", "not_found")


@api.exception_handler(Exception)
def _unexpected(request, exc: Exception):
    # ninja answers a plain-text traceback with DEBUG on; Django logs the exception and
    # control.middleware.ApiJsonErrors turns its 500 page into the API's JSON.
    raise exc


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return _error(
        request,
        401,
        "Log in, or send 'Authorization: Bearer <token>' (manage.py issue_token).",
        "not_authenticated",
    )


def _field(loc: tuple | list) -> str:
    """The field an error is about: ("body", <param>, "symbols", 0) -> "symbols.0";
    ("query", "limit") -> "limit"; the body itself -> "body"."""
    parts = loc[2:] if loc and loc[0] == "body" else loc[1:]
    return ".".join(str(p) for p in parts) or "body"


def _viewer_refusal(request: HttpRequest) -> JsonResponse | None:
    """Every unsafe method of this API is a control action, and its permission comes
    before its body: a viewer is told 403, not what is wrong with the body."""
    user = getattr(request, "auth", None)
    if request.method in ("GET", "HEAD", "OPTIONS") or user is None:
        return None
    try:
        require_control(user)
    except Forbidden as exc:
        return _service_error(request, exc)
    return None


@api.exception_handler(NinjaValidationError)
def _invalid(request, exc: NinjaValidationError):
    if refusal := _viewer_refusal(request):
        return refusal
    if any(e.get("type") == "missing" and _field(e.get("loc", ())) == "body" for e in exc.errors):
        return _error(request, 400, "The request has no body; send a JSON object.", "malformed")
    errors = [{"field": _field(e.get("loc", ())), "reason": reason(e)} for e in exc.errors]
    summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    return _error(request, 422, f"Invalid values: {summary}", "invalid", errors=errors)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, ServiceError):
        # ninja wraps whatever its body parser raises (control.api.parser) in a 400.
        return _viewer_refusal(request) or _service_error(request, exc.__cause__)
    return _error(request, exc.status_code, str(exc), "malformed" if exc.status_code == 400 else "error")


# --- schemas ---------------------------------------------------------------------


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
    # What the loop goes through besides its status: an outage it waits out
    # ("database", "redis"), or no heartbeat for this many seconds (stale).
    waiting_for: str | None = None
    waiting_since: datetime | None = None
    stale_seconds: float | None = None
    # A kind working in a degraded state (an exchange feed that cannot reach the
    # exchange): why, since when, and the time of its newest price.
    degraded: str | None = None
    degraded_since: datetime | None = None
    last_price_at: datetime | None = None


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
    """Database, Redis, workers, host and stale heartbeats, with a score."""
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


@agents.post("/{agent_id}/config", response={200: AgentOut, **BODY_ERRORS})
def agent_config(request, agent_id: str, config: Body[dict[str, Any]]):
    """Validate a new config with the agent's kind and store it (422 with the field and reason).

    The request body is the config object itself, e.g. `{"tick_seconds": 2}`, each value
    in its field's JSON type (`2`, not `"2"`; `true`, not `"yes"`). 400 for a body that
    is not strict JSON (duplicate keys, NaN); 415 unless it is sent as `application/json`.
    """
    require_control(request.user)
    services.update_agent_config(agent_id, config, user=request.user)
    return _agent_out(agent_id)


@agents.post("/{agent_id}/metrics/reset", response={200: AgentMetricsOut, **ERRORS})
def agent_metrics_reset(request, agent_id: str):
    require_control(request.user)
    services.reset_agent_metrics(agent_id, user=request.user)
    return {"agent_id": agent_id, "metrics": {}, "last_active": _agent(agent_id).last_active}


api.add_router("/system", system)
api.add_router("/agents", agents)
api.add_router("/paper-trading/sessions", sessions_router)

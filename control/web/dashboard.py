"""The panel's own endpoints (htmx): each calls control.services and answers with the
partial of what it changed, plus a toast (HX-Trigger). Refusals keep their HTTP status
(409, 403, 503...) and say their sentence in the toast; nothing is swapped then."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from agents.models import Agent
from control import services
from control.auth import require_control
from control.errors import InvalidInput, ServiceError
from control.query import BadParameter, int_param
from control.web import dashboard_context as page
from sessions.forms import SessionCreateForm

TEMPLATE = "control/index.html"


def can_control(request: HttpRequest) -> bool:
    return request.user.has_perm("control.control")


def index(request: HttpRequest) -> HttpResponse:
    context = {**page.index_context(), "form": SessionCreateForm(), "can_control": can_control(request)}
    return render(request, TEMPLATE, context)


def _partial(request: HttpRequest, name: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    context = {"can_control": can_control(request), **context}
    return HttpResponse(render_to_string(f"{TEMPLATE}#{name}", context, request=request), status=status)


def _toast(response: HttpResponse, level: str, message: str) -> HttpResponse:
    # Fired on <body>, not on the button: a live push may have replaced the button (and
    # detached it from the page) before this response arrives.
    return trigger_client_event(response, "toast", {"level": level, "message": message, "target": "body"})


def _act(
    request: HttpRequest,
    action: Callable[[], Any],
    done: str | Callable[[Any], tuple[str, str]],
    render_after: Callable[[], HttpResponse],
) -> HttpResponse:
    """Run a control action; answer with the re-rendered partial and a toast either way.
    `done` is the success toast, or gives (level, message) from the action's result."""
    try:
        require_control(request.user)
        result = action()
    except ServiceError as exc:
        response = render_after()
        response.status_code = exc.status
        return _toast(response, "danger", exc.detail)
    level, message = done(result) if callable(done) else ("success", done)
    return _toast(render_after(), level, message)


# --- the system ----------------------------------------------------------------------


def _bulk(request: HttpRequest, action: Callable[..., services.BulkResult], verb: str) -> HttpResponse:
    """A system-wide action: the system panel, and a toast saying what changed and what not."""

    def done(result: services.BulkResult) -> tuple[str, str]:
        message = f"{verb} {len(result.changed)}."
        if result.skipped:
            message += f" Skipped {len(result.skipped)}: {result.skipped[0]['reason']}"
        return ("success" if result.changed else "warning"), message

    def panel() -> HttpResponse:
        return _partial(request, "system-panel", page.system_panel())

    return _act(request, lambda: action(user=request.user), done, panel)


@require_POST
def system_start(request: HttpRequest) -> HttpResponse:
    return _bulk(request, services.start_system, "Starting the system: started")


@require_POST
def system_stop(request: HttpRequest) -> HttpResponse:
    return _bulk(request, services.stop_system, "Stopping the system: stopped")


@require_POST
def sessions_pause_all(request: HttpRequest) -> HttpResponse:
    return _bulk(request, services.pause_all_sessions, "Paused sessions:")


@require_POST
def sessions_resume_all(request: HttpRequest) -> HttpResponse:
    return _bulk(request, services.resume_all_sessions, "Resumed sessions:")


# --- agents ----------------------------------------------------------------------------


def _agent_card(request: HttpRequest, agent_id: str) -> Callable[[], HttpResponse]:
    def render_card() -> HttpResponse:
        cards = page.agent_cards([agent_id])
        if not cards:
            return HttpResponse("", status=404)
        return _partial(request, "agent-card", {"card": cards[0]})

    return render_card


@require_POST
def agent_start(request: HttpRequest, agent_id: str) -> HttpResponse:
    return _act(
        request,
        lambda: services.start_agent(agent_id, user=request.user),
        f"Starting agent {agent_id}.",
        _agent_card(request, agent_id),
    )


@require_POST
def agent_stop(request: HttpRequest, agent_id: str) -> HttpResponse:
    return _act(
        request,
        lambda: services.stop_agent(agent_id, user=request.user),
        f"Stopping agent {agent_id}.",
        _agent_card(request, agent_id),
    )


@require_POST
def agents_order(request: HttpRequest) -> HttpResponse:
    """Save the order of the cards in a column after a drag: `order` = ids top to bottom."""
    try:
        require_control(request.user)
        ids = [i for i in request.POST.get("order", "").split(",") if i]
        if not ids or len(ids) > 1000:
            raise InvalidInput("Send the column's agent ids, top to bottom, as order=a,b,c.")
        known = set(Agent.objects.filter(pk__in=ids).values_list("agent_id", flat=True))
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise InvalidInput(f"Unknown agent ids: {', '.join(unknown[:5])}.")
        services.reorder_agents(ids, user=request.user)
    except ServiceError as exc:
        return _toast(HttpResponse("", status=exc.status), "danger", exc.detail)
    return HttpResponse(status=204)


# --- sessions --------------------------------------------------------------------------

SESSION_ACTIONS = {
    "start": (services.start_session, "Starting session {}."),
    "stop": (services.stop_session, "Stopping session {}."),
    "pause": (services.pause_session, "Pausing session {}: no new orders from now on."),
    "resume": (services.resume_session, "Resuming session {}."),
}


@require_POST
def session_action(request: HttpRequest, session_id: str, action: str) -> HttpResponse:
    if action not in SESSION_ACTIONS:
        return _toast(HttpResponse("", status=404), "danger", f"There is no session action {action!r}.")
    fn, done = SESSION_ACTIONS[action]

    def render_row() -> HttpResponse:
        rows = page.session_rows([session_id])
        if not rows:
            return HttpResponse("", status=404)
        return _partial(request, "session-row", {"row": rows[0]})

    return _act(request, lambda: fn(session_id, user=request.user), done.format(session_id), render_row)


@require_POST
def session_new(request: HttpRequest) -> HttpResponse:
    """Create a session from the form; field errors are shown in place."""
    data = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
    # Unticked checkboxes are absent from a form post; the API takes them as false.
    for name in ("flatten_on_stop", "slippage_size_scaled"):
        data[name] = name in request.POST
    try:
        require_control(request.user)
        session = services.create_session(data, user=request.user)
    except InvalidInput as exc:
        form = SessionCreateForm(data=data)
        form.is_valid()
        for error in exc.errors or []:
            if error["field"] in form.fields and error["field"] not in form.errors:
                form.add_error(error["field"], error["reason"])
        response = _partial(request, "session-form", {"form": form}, status=422)
        return _toast(response, "danger", "The session was not created: see the fields marked in red.")
    except ServiceError as exc:
        return _toast(
            _partial(request, "session-form", {"form": SessionCreateForm(data=data)}, exc.status),
            "danger",
            exc.detail,
        )
    response = _partial(request, "session-form", {"form": SessionCreateForm()})
    # The new row joins the table now; the live push keeps it fresh afterwards.
    rows = render_to_string(
        f"{TEMPLATE}#session-rows",
        {"sessions": page.session_rows(), "oob": True, "can_control": can_control(request)},
        request=request,
    )
    response.content += rows.encode()
    return _toast(
        response, "success", f"Created session {session.session_id} ({session.name}). Start it when ready."
    )


# --- reads -----------------------------------------------------------------------------


@require_GET
def feed(request: HttpRequest) -> HttpResponse:
    """Feed entries: ?before=<id> for older ones; ?level= and ?source= filter."""
    try:
        before = int_param(request.GET, "before", default=None, low=1)
    except BadParameter as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    entries = page.feed_entries(
        before=before,
        level=request.GET.get("level", ""),
        source=request.GET.get("source", ""),
    )
    html = "".join(render_to_string(f"{TEMPLATE}#feed-item", {"item": item}) for item in entries)
    return HttpResponse(html)


@require_GET
def panel(request: HttpRequest) -> HttpResponse:
    """Every live part at once, as out-of-band swaps: what the page fetches after its
    socket was down (pushes may have been missed)."""
    context = {**page.index_context(), "oob": True, "can_control": can_control(request)}
    parts = ["system-panel", "flow", "edge-data", "session-rows"]
    html = "".join(render_to_string(f"{TEMPLATE}#{name}", context, request=request) for name in parts)
    return HttpResponse(html)

"""The log tail, kept at its old path outside /api/: /system/agents/<agent_id>/logs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import FileResponse, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from agents.models import Agent
from agents.runtime.logs import LogFileRefused, log_path, open_log, tail
from control.auth import request_user
from control.errors import Throttled, json_error
from control.query import BadParameter, int_param

MAX_LINES = 5000


@login_not_required
@require_GET
def agent_logs(request: HttpRequest, agent_id: str):
    """Last N lines of the agent's log file (docs/api.md "Log tail")."""
    try:
        user = request_user(request)
    except Throttled as exc:
        return exc.response()
    if user is None:
        return json_error(401, "Log in, or send 'Authorization: Bearer <token>'.", "not_authenticated")
    try:
        lines = int_param(request.GET, "lines", default=100, low=1, high=MAX_LINES)
    except BadParameter as exc:
        return json_error(400, str(exc), "bad_lines")
    # The id is looked up in the database first: only a known agent's file can be read.
    agent = Agent.objects.filter(pk=agent_id).only("agent_id").first()
    if agent is None:
        return json_error(404, f"There is no agent with id {agent_id!r}.", "not_found")
    path = log_path(agent.agent_id)
    if path is None:
        return json_error(404, f"The log of agent {agent.agent_id} is not readable.", "not_found")
    try:
        if request.GET.get("download") == "1":
            name = f"{agent.agent_id}.log"
            return FileResponse(open_log(path), as_attachment=True, filename=name, content_type="text/plain")
        result = tail(path, lines, min_level=request.GET.get("level") or None, q=request.GET.get("q") or None)
    except FileNotFoundError:
        return json_error(404, f"Agent {agent.agent_id} has not written a log yet.", "no_log")
    except LogFileRefused:
        # The same rule as the live tail (agents.runtime.logs.open_log).
        return json_error(404, f"The log of agent {agent.agent_id} is not readable.", "not_found")
    except ValueError as exc:
        return json_error(400, str(exc), "bad_request")
    return JsonResponse({"agent_id": agent.agent_id, "lines": result.lines, "truncated": result.truncated})


@login_not_required
def agent_logs_unknown_path(request: HttpRequest, rest: str) -> JsonResponse:
    """Anything else under /system/agents/ (e.g. traversal attempts): a JSON 404."""
    return json_error(404, "There is no such agent log.", "not_found")

"""The standalone log viewer page: /system/agents/<agent_id>/logs/view.

The page is the log viewer modal (templates/control/log_viewer.html, the same one the
main page includes) opened on load for one agent; a link to it works anywhere. The
lines themselves come from the JSON tail endpoint and the live socket, so an unknown
agent still gets the page (status 404) and the viewer shows the endpoint's sentence.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents.models import Agent


@require_GET
def agent_log_viewer(request: HttpRequest, agent_id: str) -> HttpResponse:
    agent = Agent.objects.filter(pk=agent_id).only("agent_id", "name").first()
    return render(
        request,
        "control/log_page.html",
        {"agent": agent, "agent_id": agent_id},
        status=200 if agent is not None else 404,
    )

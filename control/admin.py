"""Admin: start/stop actions on agents (through the services), and API tokens."""

from __future__ import annotations

from django.contrib import admin, messages

from agents.admin import AgentAdmin
from control import services
from control.errors import ServiceError
from control.models import CONTROL_PERMISSION, ApiToken


def _run(modeladmin, request, queryset, action, verb: str) -> None:
    if not request.user.has_perm(CONTROL_PERMISSION):
        modeladmin.message_user(request, "You lack the 'control' permission.", messages.ERROR)
        return
    done = []
    for agent in queryset:
        try:
            action(agent.agent_id, user=request.user)
            done.append(agent.agent_id)
        except ServiceError as exc:
            modeladmin.message_user(request, exc.detail, messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{verb}: {', '.join(done)}", messages.SUCCESS)


@admin.action(description="Start selected agents")
def start_agents(modeladmin, request, queryset) -> None:
    _run(modeladmin, request, queryset, services.start_agent, "Started")


@admin.action(description="Stop selected agents")
def stop_agents(modeladmin, request, queryset) -> None:
    _run(modeladmin, request, queryset, services.stop_agent, "Stopping")


AgentAdmin.actions = [start_agents, stop_agents]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "created_at", "last_used_at")
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")
    list_select_related = ("user",)

    def has_add_permission(self, request) -> bool:
        return False  # tokens are issued with `manage.py issue_token`, which shows them once

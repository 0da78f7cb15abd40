"""Admin: start/stop actions on agents (through the services), API tokens, and the
`control` permission over every change an admin page can make to an agent or a session.

Every edit of an agent or a session made here goes through control.services, like the
API's: validated, audited with the user, and announced to a running loop.

The API refuses a change to an agent or a session without `control` (control.auth); the
admin follows the same rule (control.auth.may_control) on top of Django's model
permissions, so a staff user with change_agent but not `control` sees the pages
read-only. The model admins live in their apps, which know nothing of control; they are
registered again here with the rule added.
"""

from __future__ import annotations

from django.contrib import admin, messages

from agents.admin import AgentAdmin
from agents.models import Agent
from control import services
from control.auth import may_control
from control.errors import ServiceError
from control.models import ApiToken
from sessions.admin import TradingSessionAdmin
from sessions.models import TradingSession


class ControlRequiredAdmin(admin.ModelAdmin):
    """Adding, changing and deleting (the bulk delete action included) also need the
    `control` permission; viewing needs only Django's view or change permission (its
    has_view_permission asks for those directly)."""

    def has_add_permission(self, request, *args) -> bool:
        return may_control(request.user) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        return may_control(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return may_control(request.user) and super().has_delete_permission(request, obj)

    def has_control_permission(self, request) -> bool:
        """For actions declared with permissions=["control"]."""
        return may_control(request.user)


def _run(modeladmin, request, queryset, action, verb: str) -> None:
    done = []
    for agent in queryset:
        try:
            action(agent.agent_id, user=request.user)
            done.append(agent.agent_id)
        except ServiceError as exc:
            modeladmin.message_user(request, exc.detail, messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{verb}: {', '.join(done)}", messages.SUCCESS)


@admin.action(description="Start selected agents", permissions=["control"])
def start_agents(modeladmin, request, queryset) -> None:
    _run(modeladmin, request, queryset, services.start_agent, "Started")


@admin.action(description="Stop selected agents", permissions=["control"])
def stop_agents(modeladmin, request, queryset) -> None:
    _run(modeladmin, request, queryset, services.stop_agent, "Stopping")


class ThroughServicesAdmin(ControlRequiredAdmin):
    """Every edit goes through the same service as the API (control.services): validated,
    audited with the user, and announced to a running loop through the flags."""

    update = None  # services.update_agent or services.update_session

    def save_changes(self, request, obj, changes: dict) -> None:
        try:
            done = type(self).update(obj.pk, changes, user=request.user)
        except ServiceError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return
        if done.note:
            self.message_user(request, done.note, messages.WARNING)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            kind = obj._meta.verbose_name
            services.audit(
                f"{request.user.get_username()} created {kind} {obj.pk} in the admin",
                user=request.user,
                **self.audit_ids(obj),
            )

    def delete_model(self, request, obj):
        ids = self.audit_ids(obj)
        super().delete_model(request, obj)
        services.audit(
            f"{request.user.get_username()} deleted {obj._meta.verbose_name} {obj.pk} in the admin",
            user=request.user,
            **{k: v for k, v in ids.items() if k == "session_id"},
        )

    def audit_ids(self, obj) -> dict:
        return {}


class ControlledAgentAdmin(ThroughServicesAdmin, AgentAdmin):
    actions = [start_agents, stop_agents]
    update = staticmethod(services.update_agent)

    def audit_ids(self, obj) -> dict:
        return {"agent_id": obj.pk}


class ControlledTradingSessionAdmin(ThroughServicesAdmin, TradingSessionAdmin):
    update = staticmethod(services.update_session)

    def audit_ids(self, obj) -> dict:
        return {"session_id": obj.pk}


for model, model_admin in ((Agent, ControlledAgentAdmin), (TradingSession, ControlledTradingSessionAdmin)):
    admin.site.unregister(model)
    admin.site.register(model, model_admin)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "created_at", "last_used_at")
    # The owner is fixed too: moving a token one holds to another account would take
    # that account's rights.
    readonly_fields = ("prefix", "key_hash", "user", "created_at", "last_used_at")
    list_select_related = ("user",)

    def has_add_permission(self, request) -> bool:
        return False  # tokens are issued with `manage.py issue_token`, which shows them once

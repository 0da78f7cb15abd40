"""Admin for agents and log entries.

Observed state (status, heartbeat, run_id...) is read-only here: the loops write it.
Desired state changes only through control.services, via the start/stop actions that
control registers (agents knows nothing of control).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import F
from django.utils import timezone

from agents.kinds import ConfigError, UnknownKind, kind_names, validate_config
from agents.models import RUNNABLE_STATE_FIELDS, Agent, LogEntry

OBSERVED = (*RUNNABLE_STATE_FIELDS, "last_active", "config_version", "created_at", "updated_at")


class AgentForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=())

    class Meta:
        model = Agent
        fields = [
            "agent_id",
            "name",
            "kind",
            "role",
            "enabled",
            "symbols",
            "config",
            "inputs_from",
            "position_x",
            "position_y",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(k, k) for k in kind_names()]

    def clean(self):
        data = super().clean()
        kind, config = data.get("kind"), data.get("config")
        if kind:
            try:
                data["config"] = validate_config(kind, config, strict=True).model_dump(mode="json")
            except UnknownKind as exc:
                self.add_error("kind", str(exc))
            except ConfigError as exc:
                for field, reason in exc.errors:
                    self.add_error("config", f"{field}: {reason}")
        # Symbols are checked by the model's field (agents.validators.validate_symbols).
        return data


class ChangedFieldsOnlyAdmin(admin.ModelAdmin):
    """Saves an edited row by writing only the fields the person changed.

    A plain save() would also write back the status, heartbeat (and, for sessions, cash)
    read when the form opened, over what the loop or the broker wrote since.
    """

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        concrete = {f.name for f in type(obj)._meta.concrete_fields}
        updates = {name: getattr(obj, name) for name in form.changed_data if name in concrete}
        if not updates:
            return
        self.changed_field_updates(obj, updates)
        updates["updated_at"] = timezone.now()
        type(obj).objects.filter(pk=obj.pk).update(**updates)

    def changed_field_updates(self, obj, updates: dict) -> None:
        """Add derived updates (e.g. a version bump) to what the form changed."""


@admin.register(Agent)
class AgentAdmin(ChangedFieldsOnlyAdmin):
    form = AgentForm
    list_display = (
        "agent_id",
        "name",
        "kind",
        "role",
        "enabled",
        "status",
        "desired_state",
        "last_heartbeat",
    )
    list_filter = ("status", "desired_state", "kind", "role", "enabled")
    search_fields = ("agent_id", "name")
    readonly_fields = OBSERVED
    filter_horizontal = ("inputs_from",)

    def get_readonly_fields(self, request, obj=None):
        # The id is the primary key that sessions, logs and edges point at: renaming it
        # here would save a second row under the new id (a 500 on the foreign keys).
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if obj is None else ("agent_id", *fields)

    def changed_field_updates(self, obj, updates: dict) -> None:
        if "config" in updates:
            # A running loop reloads when the version moves (agents.runtime.loop).
            updates["config_version"] = F("config_version") + 1


@admin.register(LogEntry)
class LogEntryAdmin(admin.ModelAdmin):
    list_display = ("ts", "level_name", "source", "agent", "session_id", "user", "message")
    list_filter = ("level", "source")
    search_fields = ("message", "agent__agent_id", "session_id")
    date_hierarchy = "ts"
    list_select_related = ("agent", "user")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # an audit trail is not edited

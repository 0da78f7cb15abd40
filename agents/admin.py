"""Admin for agents and log entries.

Observed state (status, heartbeat, run_id...) is read-only here: the loops write it.
Desired state changes only through control.services, via the start/stop actions that
control registers (agents knows nothing of control); control's admin also sends every
edit through control.services (validated, audited, announced to a running loop).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils import timezone

from agents.graph import inputs_refusal
from agents.kinds import ConfigError, UnknownKind, get_kind, kind_names, validate_config
from agents.models import AGENT_EDITABLE_FIELDS, RUNNABLE_STATE_FIELDS, Agent, LogEntry

OBSERVED = (*RUNNABLE_STATE_FIELDS, "last_active", "config_version", "created_at", "updated_at")


class AgentForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=())

    class Meta:
        model = Agent
        fields = ["agent_id", *AGENT_EDITABLE_FIELDS]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(k, k) for k in kind_names()]

    def clean(self):
        data = super().clean()
        kind, config = data.get("kind"), data.get("config")
        if kind:
            try:
                parsed = validate_config(kind, config, strict=True)
            except UnknownKind as exc:
                self.add_error("kind", str(exc))
            except ConfigError as exc:
                for field, reason in exc.errors:
                    self.add_error("config", f"{field}: {reason}")
            else:
                data["config"] = parsed.model_dump(mode="json")
                # A new agent: the kind's checks beyond its schema (an exchange's market
                # list). An edit gets them from control.services, which it goes through.
                symbols = data.get("symbols")
                if self.instance._state.adding and isinstance(symbols, list) and not self.errors:
                    for field, reason in get_kind(kind).check_agent(parsed, symbols):
                        self.add_error("config", f"{field}: {reason}")
        # Symbols are checked by the model's field (agents.validators.validate_symbols).
        agent_id = data.get("agent_id") or getattr(self.instance, "agent_id", "")
        inputs = data.get("inputs_from")
        if agent_id and inputs is not None:
            refusal = inputs_refusal(agent_id, [a.agent_id for a in inputs])
            if refusal:
                self.add_error("inputs_from", refusal)
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
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        if changes:
            self.save_changes(request, obj, changes)

    def save_related(self, request, form, formsets, change):
        if not change:
            super().save_related(request, form, formsets, change)
            return
        # Many-to-many fields went with the other changes (save_changes).
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def save_changes(self, request, obj, changes: dict) -> None:
        """Write what the person changed. control's admin sends it through
        control.services instead (validation, audit, the loop told)."""
        model = type(obj)
        m2m = {f.name for f in model._meta.many_to_many}
        concrete = {
            model._meta.get_field(name).attname: getattr(obj, model._meta.get_field(name).attname)
            for name in changes
            if name not in m2m
        }
        model.objects.filter(pk=obj.pk).update(**concrete, updated_at=timezone.now())
        for name in m2m & set(changes):
            getattr(obj, name).set(changes[name])


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

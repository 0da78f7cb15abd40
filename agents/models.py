"""Agents in the signal graph, and the log/audit rows the panel shows."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, validate_slug
from django.db import models
from django.utils import timezone

from agents.states import Desired, Status
from agents.validators import MAX_POSITION, PersonJSONField, validate_symbols, validate_text


class Role(models.TextChoices):
    DATA_FEED = "data_feed", "Data feed"
    SPECIALIZED_TECHNICAL = "specialized_technical", "Technical analysis"
    SPECIALIZED_SENTIMENT = "specialized_sentiment", "Sentiment analysis"
    DECISION = "decision", "Decision"
    EXECUTION = "execution", "Execution"


# Left-to-right order of the flow (and of system start: upstream first).
ROLE_ORDER = [
    Role.DATA_FEED,
    Role.SPECIALIZED_TECHNICAL,
    Role.SPECIALIZED_SENTIMENT,
    Role.DECISION,
    Role.EXECUTION,
]


class RunnableState(models.Model):
    """What every runnable (agent, session) carries for its loop: the contract of
    agents.runtime.loop. Every write of desired_state, status and run_id is in
    agents.runtime.lifecycle: desired_state changes through control.services only (which
    also writes `starting`/`stopping` with it); then the loop writes status, and the
    reconciler when the loop is gone."""

    desired_state = models.CharField(max_length=16, choices=Desired.choices, default=Desired.STOPPED)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STOPPED)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # Identifies the current incarnation of the loop; a loop whose run_id is no longer
    # this one is superseded and may not write.
    run_id = models.CharField(max_length=36, blank=True, default="")
    task_id = models.CharField(max_length=64, blank=True, default="")
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    # Snapshot of the loop's counters (live values are in Redis, see runtime.metrics).
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True


# The loop-owned fields, read-only wherever a person edits a runnable.
RUNNABLE_STATE_FIELDS = tuple(f.name for f in RunnableState._meta.fields)


POSITION_VALIDATORS = [MinValueValidator(0), MaxValueValidator(MAX_POSITION)]


class Agent(RunnableState):
    agent_id = models.CharField(primary_key=True, max_length=64, validators=[validate_slug])
    name = models.CharField(max_length=120, validators=[validate_text])
    kind = models.CharField(max_length=40, validators=[validate_text])
    role = models.CharField(max_length=40, choices=Role.choices)
    enabled = models.BooleanField(default=True)
    symbols = PersonJSONField(default=list, blank=True, validators=[validate_symbols])
    config = PersonJSONField(default=dict, blank=True)
    # Bumped on every change of kind, config, symbols or inputs (control.services); a
    # running loop reloads when it sees a new value in its flags.
    config_version = models.PositiveIntegerField(default=1)
    # Edges of the signal graph: this agent consumes the streams of `inputs_from`.
    inputs_from = models.ManyToManyField("self", symmetrical=False, related_name="outputs_to", blank=True)

    last_active = models.DateTimeField(null=True, blank=True)

    # Where the card sits on the flow grid (set by dragging it on the page).
    position_x = models.IntegerField(null=True, blank=True, validators=POSITION_VALIDATORS)
    position_y = models.IntegerField(null=True, blank=True, validators=POSITION_VALIDATORS)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["agent_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.agent_id})"


# What a person may edit on an agent (the admin's form, control.services.update_agent):
# the rest is the loop's (RunnableState) or the database's.
AGENT_EDITABLE_FIELDS = (
    "name",
    "kind",
    "role",
    "enabled",
    "symbols",
    "config",
    "inputs_from",
    "position_x",
    "position_y",
)


class LogEntry(models.Model):
    """A line for the panel: loop events, errors, and the audit trail of who did what."""

    ts = models.DateTimeField(default=timezone.now, db_index=True)
    level = models.PositiveSmallIntegerField(default=20)  # logging levels: 10..50
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="log_entries"
    )
    # Sessions live in another app that depends on this one, so no foreign key here.
    session_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    source = models.CharField(max_length=64)
    message = models.TextField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agent_log_entries",
    )

    class Meta:
        ordering = ["-ts", "-id"]
        verbose_name_plural = "log entries"

    def __str__(self) -> str:
        return f"{self.ts:%Y-%m-%d %H:%M:%S} {self.source}: {self.message[:60]}"

    @property
    def level_name(self) -> str:
        import logging

        return logging.getLevelName(self.level)

"""Desired vs observed: bring every agent and session to the state the database asks for.

Runs every few seconds from Celery beat and once from `manage.py restore`. Safe to run
on several machines at once: every write is conditional on the run_id (and status) it
read, so two reconcilers never start two incarnations.

Observed status is written here only when the loop itself cannot (it is gone, or it
does not answer); desired state is never touched. The writes themselves (and the flag
format) are agents.runtime.lifecycle's; this module decides when to make them.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, LogEntry
from agents.runtime import keys, lifecycle
from agents.runtime.lease import Lease
from agents.runtime.redis import get_redis
from agents.runtime.staleness import NOT_LIVE, beat_time, stale_for
from agents.states import LIVE_STATUSES, Desired, Status
from control.services import launch_agent, launch_session
from sessions.models import TradingSession

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    restarted: list[str] = field(default_factory=list)
    marked_stopped: list[str] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)
    flags_written: int = 0

    def summary(self) -> str:
        return (
            f"restarted {len(self.restarted)}, marked stopped {len(self.marked_stopped)}, "
            f"fenced {len(self.fenced)}, flags written {self.flags_written}"
        )


@dataclass(frozen=True)
class _Kind:
    """How the reconciler reads and relaunches one kind of runnable."""

    name: str  # "agent" or "session": the Redis key kind
    model: type
    rev_field: str | None  # the config revision mirrored into the flags, if any

    def launch(self, rid: str, run_id: str, desired: str, rev: int | None) -> None:
        if self.name == "agent":
            launch_agent(rid, run_id, desired, rev or 1)
        else:
            launch_session(rid, run_id, desired)

    def log_fields(self, rid: str) -> dict[str, str]:
        return {"agent_id": rid} if self.name == "agent" else {"session_id": rid}


KINDS = (_Kind("agent", Agent, "config_version"), _Kind("session", TradingSession, None))


def reconcile(*, start_grace_seconds: float | None = None) -> ReconcileReport:
    """One pass over every agent and session. `start_grace_seconds=0` (restore)
    relaunches queued starts. Ids in the report are prefixed "session:" for sessions."""
    grace = settings.START_GRACE_SECONDS if start_grace_seconds is None else start_grace_seconds
    client = get_redis()
    report = ReconcileReport()
    for kind in KINDS:
        _reconcile_kind(kind, client, grace, report)
    if report.restarted or report.marked_stopped or report.fenced:
        log.info("reconcile: %s", report.summary())
    return report


def _reconcile_kind(kind: _Kind, client, grace: float, report: ReconcileReport) -> None:
    pk = kind.model._meta.pk.name
    fields = [pk, "desired_state", "status", "run_id", "status_changed_at"]
    rows = [
        (*row, None) if kind.rev_field is None else row
        for row in kind.model.objects.values_list(*fields, *([kind.rev_field] if kind.rev_field else []))
    ]
    if not rows:
        return
    label = "" if kind.name == "agent" else "session:"

    # Flags are a mirror of the database: rewrite them all (cheap, one round trip), and
    # read every lease in the same pipeline.
    pipe = client.pipeline(transaction=False)
    for rid, desired, _status, run_id, _changed, rev in rows:
        lifecycle.queue_flags(pipe, kind.name, rid, desired, run_id, rev)
    for rid, *_ in rows:
        pipe.get(keys.lease(kind.name, rid))
    out = pipe.execute()
    report.flags_written += len(rows)
    holders = out[len(rows) :]

    now = timezone.now()
    for (rid, desired, status, run_id, changed_at, rev), holder in zip(rows, holders, strict=True):
        age = (now - changed_at).total_seconds() if changed_at else float("inf")
        if desired in (Desired.RUNNING, Desired.PAUSED):
            if status in (Status.ERROR, Status.READY) or holder is not None:
                continue  # errors wait for a person; a held lease means a live loop
            if status == Status.STARTING and age < grace:
                continue  # its task is probably still queued
            if _relaunch(kind, rid, status, run_id, desired, rev):
                report.restarted.append(label + rid)
        elif status in LIVE_STATUSES:
            if holder is None:
                if lifecycle.mark_status(kind.model, rid, run_id, status, Status.STOPPED, ""):
                    report.marked_stopped.append(label + rid)
            elif status == Status.STOPPING and age >= settings.STOP_GRACE_SECONDS:
                if _fence(kind, client, rid, holder, run_id, age):
                    report.fenced.append(label + rid)
            elif status != Status.STOPPING:
                if lifecycle.mark_status(kind.model, rid, run_id, status, Status.STOPPING):
                    lifecycle.wake(kind.name, rid, client=client)


def _relaunch(kind: _Kind, rid: str, status: str, run_id: str, desired: str, rev: int | None) -> bool:
    new_run = uuid.uuid4().hex
    with transaction.atomic():
        if not lifecycle.claim_relaunch(kind.model, rid, status, run_id, new_run):
            return False  # someone else (a person, another reconciler) got there first
        LogEntry.objects.create(
            level=30,
            source="reconciler",
            message=f"loop of {kind.name} {rid} was lost ({status}); starting run {new_run[:8]}",
            **kind.log_fields(rid),
        )
        transaction.on_commit(lambda: kind.launch(rid, new_run, desired, rev))
    return True


def _fence(kind: _Kind, client, rid: str, holder: str, run_id: str, age: float) -> bool:
    """A loop that did not confirm its stop: supersede its run so it can no longer write."""
    fenced_run = uuid.uuid4().hex
    message = (
        f"loop of {kind.name} {rid} did not confirm its stop within {age:.0f} s; "
        f"it was fenced (run {holder[:8]} can no longer write)"
    )
    with transaction.atomic():
        if not lifecycle.fence(kind.model, rid, run_id, fenced_run, message):
            return False
        LogEntry.objects.create(level=40, source="reconciler", message=message, **kind.log_fields(rid))
    # Drop its lease (only if it is still that loop's) so its next tick finds itself fenced.
    Lease(client, keys.lease(kind.name, rid), holder, 0).release()
    lifecycle.write_flags(kind.name, rid, Desired.STOPPED, fenced_run, client=client)
    return True


def stale_heartbeats(client=None, *, threshold: float | None = None) -> list[str]:
    """Agents that should be running whose loop has not ticked within the threshold
    (agents.runtime.staleness): listed until a loop of theirs ticks again, through the
    relaunch of a lost loop."""
    client = client or get_redis()
    threshold = settings.HEARTBEAT_STALE_SECONDS if threshold is None else threshold
    rows = list(
        Agent.objects.filter(desired_state__in=[Desired.RUNNING, Desired.PAUSED])
        .exclude(status__in=NOT_LIVE)
        .values_list("agent_id", "desired_state", "status", "status_changed_at")
    )
    if not rows:
        return []
    beats = client.mget([keys.heartbeat("agent", row[0]) for row in rows])
    now = time.time()
    return [
        agent_id
        for (agent_id, desired, status, changed_at), beat in zip(rows, beats, strict=True)
        if stale_for(desired, status, changed_at, beat_time(beat), now, threshold) is not None
    ]

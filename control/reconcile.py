"""Desired vs observed: bring every agent to the state the database asks for.

Runs every few seconds from Celery beat and once from `manage.py restore`. Safe to run
on several machines at once: every write is conditional on the run_id (and status) it
read, so two reconcilers never start two incarnations.

Observed status is written here only when the loop itself cannot (it is gone, or it
does not answer); desired state is never touched.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, LogEntry
from agents.runtime import flags, keys
from agents.runtime.lease import Lease
from agents.runtime.redis import get_redis
from agents.states import LIVE_STATUSES, Desired, Status
from control.services import launch_agent

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


def reconcile(*, start_grace_seconds: float | None = None) -> ReconcileReport:
    """One pass over every agent. `start_grace_seconds=0` (restore) relaunches queued starts."""
    grace = settings.START_GRACE_SECONDS if start_grace_seconds is None else start_grace_seconds
    client = get_redis()
    report = ReconcileReport()
    rows = list(
        Agent.objects.values_list(
            "agent_id", "desired_state", "status", "run_id", "status_changed_at", "config_version"
        )
    )
    if not rows:
        return report

    # Flags are a mirror of the database: rewrite them all (cheap, one round trip), and
    # read every lease in the same pipeline.
    pipe = client.pipeline(transaction=False)
    for agent_id, desired, _status, run_id, _changed, version in rows:
        pipe.hset(
            keys.flags("agent", agent_id),
            mapping={"desired": desired, "run_id": run_id, "config_rev": str(version)},
        )
    for agent_id, *_ in rows:
        pipe.get(keys.lease("agent", agent_id))
    out = pipe.execute()
    report.flags_written = len(rows)
    holders = out[len(rows) :]

    now = timezone.now()
    for (agent_id, desired, status, run_id, changed_at, version), holder in zip(rows, holders, strict=True):
        age = (now - changed_at).total_seconds() if changed_at else float("inf")
        if desired in (Desired.RUNNING, Desired.PAUSED):
            if status == Status.ERROR or holder is not None:
                continue  # errors wait for a person; a held lease means a live loop
            if status == Status.STARTING and age < grace:
                continue  # its task is probably still queued
            if _relaunch(agent_id, status, run_id, desired, version):
                report.restarted.append(agent_id)
        elif status in LIVE_STATUSES:
            if holder is None:
                if _mark(agent_id, run_id, status, Status.STOPPED, ""):
                    report.marked_stopped.append(agent_id)
            elif status == Status.STOPPING and age >= settings.STOP_GRACE_SECONDS:
                if _fence(client, agent_id, holder, run_id, age):
                    report.fenced.append(agent_id)
            elif status != Status.STOPPING:
                if _mark(agent_id, run_id, status, Status.STOPPING, None):
                    flags.wake("agent", agent_id, client=client)
    if report.restarted or report.marked_stopped or report.fenced:
        log.info("reconcile: %s", report.summary())
    return report


def _relaunch(agent_id: str, status: str, run_id: str, desired: str, version: int) -> bool:
    new_run = uuid.uuid4().hex
    with transaction.atomic():
        changed = Agent.objects.filter(pk=agent_id, run_id=run_id, status=status).update(
            run_id=new_run, status=Status.STARTING, status_changed_at=timezone.now(), task_id=""
        )
        if not changed:
            return False  # someone else (a person, another reconciler) got there first
        LogEntry.objects.create(
            level=30,
            agent_id=agent_id,
            source="reconciler",
            message=f"loop of agent {agent_id} was lost ({status}); starting run {new_run[:8]}",
        )
        transaction.on_commit(lambda: launch_agent(agent_id, new_run, desired, version))
    return True


def _mark(agent_id: str, run_id: str, old: str, new: str, error: str | None) -> bool:
    fields = {"status": new, "status_changed_at": timezone.now()}
    if error is not None:
        fields["error_message"] = error
    return bool(Agent.objects.filter(pk=agent_id, run_id=run_id, status=old).update(**fields))


def _fence(client, agent_id: str, holder: str, run_id: str, age: float) -> bool:
    """A loop that did not confirm its stop: supersede its run so it can no longer write."""
    fenced_run = uuid.uuid4().hex
    message = (
        f"loop of agent {agent_id} did not confirm its stop within {age:.0f} s; "
        f"it was fenced (run {holder[:8]} can no longer write)"
    )
    with transaction.atomic():
        changed = Agent.objects.filter(pk=agent_id, run_id=run_id, status=Status.STOPPING).update(
            run_id=fenced_run, status=Status.STOPPED, status_changed_at=timezone.now(), error_message=message
        )
        if not changed:
            return False
        LogEntry.objects.create(level=40, agent_id=agent_id, source="reconciler", message=message)
    # Drop its lease (only if it is still that loop's) so its next tick finds itself fenced.
    Lease(client, keys.lease("agent", agent_id), holder, 0).release()
    flags.write("agent", agent_id, Desired.STOPPED, fenced_run, client=client)
    return True


def stale_heartbeats(client=None, *, threshold: float | None = None) -> list[str]:
    """Agents that should be running whose loop has not ticked within the threshold."""
    client = client or get_redis()
    threshold = settings.HEARTBEAT_STALE_SECONDS if threshold is None else threshold
    ids = list(
        Agent.objects.filter(desired_state__in=[Desired.RUNNING, Desired.PAUSED])
        .exclude(status=Status.ERROR)
        .values_list("agent_id", flat=True)
    )
    if not ids:
        return []
    beats = client.mget([keys.heartbeat("agent", i) for i in ids])
    cutoff = time.time() - threshold
    stale = []
    for agent_id, beat in zip(ids, beats, strict=True):
        if beat is None or float(beat) < cutoff:
            stale.append(agent_id)
    # A loop that was started moments ago has not ticked yet: not stale.
    recent = set(
        Agent.objects.filter(
            agent_id__in=stale,
            status=Status.STARTING,
            status_changed_at__gte=timezone.now() - timedelta(seconds=threshold),
        ).values_list("agent_id", flat=True)
    )
    return [a for a in stale if a not in recent]

"""Every way a runnable's (agent's or session's) lifecycle state can change, in one file.

The database row holds `desired_state` (what a person asked for), `status` (what is
happening) and `run_id` (which incarnation of the loop may write). Each write below is a
conditional UPDATE: it names the run_id (and usually the status) its caller read, so a
concurrent writer makes it a no-op (False) instead of a lost update or a twin loop.

Who calls what:

* control.services, for a person (the panel, the API, the admin, management commands):
  `claim_start`, `request_stop`, `set_desired`, `record_task`. These are the only writes
  of `desired_state`; status changes here only together with it (`starting`, `stopping`).
* control.reconcile, when a loop is gone or does not answer: `claim_relaunch`,
  `mark_status`, `fence`.
* the loop itself (agents.runtime.loop): `loop_status`; and the database heartbeat writer
  (agents.runtime.heartbeats): `loop_heartbeat`, which never changes the status but
  tells a superseded loop so.

The Redis flags (`desired`, `run_id`, `config_rev` of each runnable) mirror the row so
loops react in milliseconds; they are written only here (`write_flags`, `queue_flags`).
When a flag is missing the loop reads the database instead, and the reconciler rewrites
every flag from the database.
"""

from __future__ import annotations

from typing import Any

import redis
from django.db import models
from django.utils import timezone

from agents.runtime import keys
from agents.runtime.redis import get_redis
from agents.states import LIVE_STATUSES, Desired, Status

# A row that says stopped or error has no live loop, whatever its run says.
ENDED = (Status.STOPPED, Status.ERROR)

Model = type[models.Model]


# --- the flags: the Redis mirror of desired state and run ------------------------------


def flag_fields(desired: str, run_id: str, config_rev: str | int | None = "") -> dict[str, str]:
    """The flag hash of one runnable, as the loop reads it (Lease.tick)."""
    return {"desired": desired, "run_id": run_id, "config_rev": "" if config_rev is None else str(config_rev)}


def queue_flags(
    pipe, kind: str, rid: str, desired: str, run_id: str, config_rev: str | int | None = ""
) -> None:
    """Add the flag write to a pipeline (the reconciler rewrites every flag in one)."""
    pipe.hset(keys.flags(kind, rid), mapping=flag_fields(desired, run_id, config_rev))


def write_flags(
    kind: str, rid: str, desired: str, run_id: str, config_rev: str = "", client: redis.Redis | None = None
) -> None:
    """Mirror the database row's desired state and run_id, then wake the loop."""
    pipe = (client or get_redis()).pipeline()
    queue_flags(pipe, kind, rid, desired, run_id, config_rev)
    pipe.publish(keys.wakeups(), f"{kind}:{rid}")
    pipe.publish(keys.changes(), f"{kind}:{rid}")
    pipe.execute()


def announce(kind: str, rid: str, client: redis.Redis | None = None) -> None:
    """Say that a runnable's observed state changed (best effort: watchers also poll)."""
    try:
        (client or get_redis()).publish(keys.changes(), f"{kind}:{rid}")
    except redis.RedisError:
        pass


def wake(kind: str, rid: str, client: redis.Redis | None = None) -> None:
    """Wake the loop so it re-reads its state now rather than at its next tick."""
    (client or get_redis()).publish(keys.wakeups(), f"{kind}:{rid}")


def drop(kind: str, rid: str, client: redis.Redis | None = None) -> None:
    """Remove every key of a runnable that no longer exists."""
    r = client or get_redis()
    r.delete(
        keys.flags(kind, rid), keys.heartbeat(kind, rid), keys.metrics(kind, rid), keys.status(kind, rid)
    )


# --- a person, through control.services ------------------------------------------------


def claim_start(row: models.Model, new_run: str, desired: str, **extra: Any) -> bool:
    """Desired `desired`, status `starting`, a new run_id: conditional on the status and
    run read (under the row lock), so a concurrent change makes this a no-op (False)."""
    return bool(
        type(row)
        .objects.filter(pk=row.pk, status=row.status, run_id=row.run_id)
        .update(
            desired_state=desired,
            status=Status.STARTING,
            status_changed_at=timezone.now(),
            run_id=new_run,
            task_id="",
            error_message="",
            **extra,
        )
    )


def request_stop(row: models.Model) -> bool:
    """Desired stopped; `stopping` while a loop may be alive (it confirms), else `stopped`."""
    return bool(
        type(row)
        .objects.filter(pk=row.pk, run_id=row.run_id)
        .update(
            desired_state=Desired.STOPPED,
            status=Status.STOPPING if row.status in LIVE_STATUSES else Status.STOPPED,
            status_changed_at=timezone.now(),
        )
    )


def set_desired(row: models.Model, desired: str) -> bool:
    """Pause or resume: only the desired state; the loop confirms with its status."""
    return bool(type(row).objects.filter(pk=row.pk, run_id=row.run_id).update(desired_state=desired))


def record_task(model: Model, rid: str, run_id: str, task_id: str) -> bool:
    """The Celery task that carries a run (for a revoke), while that run is current."""
    return bool(model.objects.filter(pk=rid, run_id=run_id).update(task_id=task_id))


# --- the reconciler, when the loop cannot write ----------------------------------------


def claim_relaunch(model: Model, rid: str, status: str, run_id: str, new_run: str) -> bool:
    """A lost loop: a new run, status `starting`, if nothing moved since it was read."""
    return bool(
        model.objects.filter(pk=rid, run_id=run_id, status=status).update(
            run_id=new_run, status=Status.STARTING, status_changed_at=timezone.now(), task_id=""
        )
    )


def mark_status(model: Model, rid: str, run_id: str, old: str, new: str, error: str | None = None) -> bool:
    """Observed status from `old` to `new` for a loop that is gone or has not noticed a
    stop (stopped / stopping), conditional on both run and status."""
    fields: dict[str, Any] = {"status": new, "status_changed_at": timezone.now()}
    if error is not None:
        fields["error_message"] = error
    return bool(model.objects.filter(pk=rid, run_id=run_id, status=old).update(**fields))


def fence(model: Model, rid: str, run_id: str, fenced_run: str, message: str) -> bool:
    """A loop that did not confirm its stop: supersede its run (so it can no longer write)
    and say `stopped` with the reason."""
    return bool(
        model.objects.filter(pk=rid, run_id=run_id, status=Status.STOPPING).update(
            run_id=fenced_run, status=Status.STOPPED, status_changed_at=timezone.now(), error_message=message
        )
    )


# --- the loop itself -------------------------------------------------------------------


def loop_status(
    model: Model,
    rid: str,
    run_id: str,
    status: str,
    error: str | None = None,
    extra: dict[str, Any] | None = None,
    *,
    kind: str = "",
    client: redis.Redis | None = None,
) -> bool:
    """The loop's own observed status (and its extra columns), only while its run is
    current; announced to the watchers when written."""
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "status_changed_at": now}
    if error is not None:
        fields["error_message"] = error
    if status in (Status.RUNNING, Status.PAUSED):
        fields["last_heartbeat"] = now
    fields.update(extra or {})
    written = bool(model.objects.filter(pk=rid, run_id=run_id).update(**fields))
    if written and kind:
        announce(kind, rid, client)
    return written


def loop_heartbeat(model: Model, rid: str, run_id: str, fields: dict[str, Any]) -> bool:
    """The database heartbeat of a live loop; False when the row names another run or
    says the loop ended (it is superseded then)."""
    return bool(model.objects.filter(pk=rid, run_id=run_id).exclude(status__in=ENDED).update(**fields))

"""THE one place that changes desired state.

Views, the JSON API, management commands, the admin and the reconciler call these
functions; none of them changes state on its own. Each change is a conditional update
inside a transaction, with an audit LogEntry, and its side effects on Redis and Celery
(flags, wake-up, task) run only after the transaction commits.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.graph import upstream_first
from agents.kinds import ConfigError, UnknownKind, validate_config
from agents.models import Agent, LogEntry
from agents.runtime import flags, keys
from agents.runtime.redis import get_redis
from agents.states import LIVE_STATUSES, Desired, Status
from control import transitions
from control.errors import DependencyDown, InvalidInput, NotFound, TransitionRefused

log = logging.getLogger(__name__)


@dataclass
class BulkResult:
    """What a system-wide action did: which ids changed, which were skipped and why."""

    changed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


# --- helpers -----------------------------------------------------------------------


def require_redis() -> redis.Redis:
    """Return the Redis client, or raise DependencyDown (503) naming what is down."""
    client = get_redis()
    try:
        client.ping()
    except redis.RedisError as exc:
        raise DependencyDown(
            f"Redis at {settings.REDIS_URL} is unreachable ({exc}); nothing was changed.",
            code="redis_unavailable",
        ) from exc
    return client


def audit(
    message: str, *, user=None, agent_id: str | None = None, session_id: str = "", level: int = 20
) -> None:
    """Record who did what, for the activity feed and the admin."""
    LogEntry.objects.create(
        level=level,
        agent_id=agent_id,
        session_id=session_id,
        source="control",
        message=message,
        user=user if getattr(user, "is_authenticated", False) else None,
    )
    log.info("audit: %s", message)


def _who(user) -> str:
    return user.get_username() if getattr(user, "is_authenticated", False) else "system"


def _get_agent_for_update(agent_id: str) -> Agent:
    agent = Agent.objects.select_for_update().filter(pk=agent_id).first()
    if agent is None:
        raise NotFound(f"There is no agent with id {agent_id!r}.")
    return agent


def launch_agent(agent_id: str, run_id: str, desired: str = Desired.RUNNING, config_version: int = 1) -> None:
    """Mirror the flags to Redis and send the loop's task (after commit)."""
    from agents.tasks import run_agent

    flags.write("agent", agent_id, desired, run_id, str(config_version))
    result = run_agent.apply_async((agent_id, run_id), queue=settings.LOOP_QUEUE)
    Agent.objects.filter(pk=agent_id, run_id=run_id).update(task_id=result.id)


def _after_stop(agent_id: str, run_id: str, task_id: str) -> None:
    from celery import current_app

    flags.write("agent", agent_id, Desired.STOPPED, run_id)
    if task_id:
        # Plain revoke: discards the task if it is still queued. Never terminate=True,
        # which kills the worker process and every other loop in it.
        current_app.control.revoke(task_id)


# --- agents ------------------------------------------------------------------------


def start_agent(agent_id: str, *, user=None) -> Agent:
    """Ask for an agent to run: new run_id, status `starting`, task sent after commit."""
    require_redis()
    run_id = uuid.uuid4().hex
    with transaction.atomic():
        agent = _get_agent_for_update(agent_id)
        transitions.check_agent("start", agent)
        now = timezone.now()
        changed = Agent.objects.filter(pk=agent_id, status=agent.status, run_id=agent.run_id).update(
            desired_state=Desired.RUNNING,
            status=Status.STARTING,
            status_changed_at=now,
            run_id=run_id,
            task_id="",
            error_message="",
        )
        if not changed:
            raise TransitionRefused(
                f"Agent {agent_id} changed while starting it; try again.", code="conflict"
            )
        audit(f"{_who(user)} started agent {agent_id}", user=user, agent_id=agent_id)
        version = agent.config_version
        transaction.on_commit(lambda: launch_agent(agent_id, run_id, config_version=version))
    agent.refresh_from_db()
    return agent


def stop_agent(agent_id: str, *, user=None) -> Agent:
    """Ask for an agent to stop; its loop confirms (writes `stopped`) within one tick."""
    require_redis()
    with transaction.atomic():
        agent = _get_agent_for_update(agent_id)
        transitions.check_agent("stop", agent)
        live = agent.status in LIVE_STATUSES
        Agent.objects.filter(pk=agent_id, run_id=agent.run_id).update(
            desired_state=Desired.STOPPED,
            status=Status.STOPPING if live else Status.STOPPED,
            status_changed_at=timezone.now(),
        )
        audit(f"{_who(user)} stopped agent {agent_id}", user=user, agent_id=agent_id)
        run_id, task_id = agent.run_id, agent.task_id
        transaction.on_commit(lambda: _after_stop(agent_id, run_id, task_id))
    agent.refresh_from_db()
    return agent


def update_agent_config(agent_id: str, config: Any, *, user=None) -> Agent:
    """Validate `config` with the agent's kind and store it; a running loop reloads it."""
    with transaction.atomic():
        agent = _get_agent_for_update(agent_id)
        try:
            validated = validate_config(agent.kind, config)
        except ConfigError as exc:
            raise InvalidInput(
                f"The config for agent {agent_id} is invalid: {exc}.",
                code="invalid_config",
                errors=[{"field": f, "reason": r} for f, r in exc.errors],
            ) from None
        except UnknownKind as exc:
            raise InvalidInput(str(exc), code="unknown_kind") from None
        Agent.objects.filter(pk=agent_id).update(
            config=validated.model_dump(mode="json"), config_version=F("config_version") + 1
        )
        audit(f"{_who(user)} changed the config of agent {agent_id}", user=user, agent_id=agent_id)
    agent.refresh_from_db()
    desired, run_id, version = agent.desired_state, agent.run_id, agent.config_version

    def mirror() -> None:
        try:
            flags.write("agent", agent_id, desired, run_id, str(version))
        except redis.RedisError:
            pass  # the reconciler rewrites flags; the loop reloads then

    transaction.on_commit(mirror)
    return agent


def reset_agent_metrics(agent_id: str, *, user=None) -> Agent:
    """Zero the agent's counters (live ones in Redis and the database snapshot)."""
    client = require_redis()
    with transaction.atomic():
        agent = _get_agent_for_update(agent_id)
        Agent.objects.filter(pk=agent_id).update(metrics={})
        audit(f"{_who(user)} reset the metrics of agent {agent_id}", user=user, agent_id=agent_id)
    client.delete(keys.metrics("agent", agent_id))
    agent.refresh_from_db()
    return agent


# --- the system --------------------------------------------------------------------


def start_system(*, user=None) -> BulkResult:
    """Start every enabled agent that is not running, upstream first."""
    require_redis()
    result = BulkResult()
    for agent in upstream_first(Agent.objects.filter(enabled=True)):
        try:
            start_agent(agent.agent_id, user=user)
            result.changed.append(agent.agent_id)
        except TransitionRefused as exc:
            result.skipped.append({"id": agent.agent_id, "reason": exc.detail})
    if not result.changed:
        if not result.skipped:
            raise TransitionRefused("There is no enabled agent to start. Enable an agent first.")
        raise TransitionRefused("The system is already running: every enabled agent is running or starting.")
    audit(f"{_who(user)} started the system ({len(result.changed)} agents)", user=user)
    return result


def stop_system(*, user=None) -> BulkResult:
    """Stop every agent that runs (downstream first, so consumers stop before producers)."""
    require_redis()
    result = BulkResult()
    for agent in reversed(upstream_first(Agent.objects.all())):
        try:
            stop_agent(agent.agent_id, user=user)
            result.changed.append(agent.agent_id)
        except TransitionRefused as exc:
            result.skipped.append({"id": agent.agent_id, "reason": exc.detail})
    if not result.changed:
        raise TransitionRefused("The system is already stopped. You can start it.")
    audit(f"{_who(user)} stopped the system ({len(result.changed)} agents)", user=user)
    return result

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
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from agents.graph import upstream_first
from agents.kinds import ConfigError, UnknownKind, validate_config
from agents.models import Agent, LogEntry
from agents.net.redact import redact_text, redact_url
from agents.runtime import flags, keys
from agents.runtime.redis import get_redis
from agents.states import LIVE_STATUSES, Desired, Status
from control import transitions
from control.errors import DependencyDown, InvalidInput, NotFound, TransitionRefused
from sessions.forms import SessionCreateForm, unique_session_id
from sessions.models import TradingSession

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
            f"Redis at {redact_url(settings.REDIS_URL)} is unreachable ({redact_text(str(exc))}); "
            "nothing was changed.",
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


def desired_after_start(row) -> str:
    """What a start asks for: running, except that a paused session stays paused (after an
    error, a restart or a start of everything) until a person resumes it."""
    return Desired.PAUSED if row.desired_state == Desired.PAUSED else Desired.RUNNING


def _claim_start(row, run_id: str, name: str, **extra: Any) -> str:
    """Desired running (or still paused), status `starting`, a new run_id: conditional on
    the status and run read under the row lock, so a concurrent change makes this a
    refusal, not a twin. Returns the desired state written."""
    desired = desired_after_start(row)
    changed = (
        type(row)
        .objects.filter(pk=row.pk, status=row.status, run_id=row.run_id)
        .update(
            desired_state=desired,
            status=Status.STARTING,
            status_changed_at=timezone.now(),
            run_id=run_id,
            task_id="",
            error_message="",
            **extra,
        )
    )
    if not changed:
        raise TransitionRefused(f"{name} changed while starting it; try again.", code="conflict")
    return desired


def _mark_stopping(row) -> None:
    """Desired stopped; `stopping` while a loop may be alive (it confirms), else `stopped`."""
    type(row).objects.filter(pk=row.pk, run_id=row.run_id).update(
        desired_state=Desired.STOPPED,
        status=Status.STOPPING if row.status in LIVE_STATUSES else Status.STOPPED,
        status_changed_at=timezone.now(),
    )


def launch_agent(agent_id: str, run_id: str, desired: str = Desired.RUNNING, config_version: int = 1) -> None:
    """Mirror the flags to Redis and send the loop's task (after commit)."""
    from agents.tasks import run_agent

    flags.write("agent", agent_id, desired, run_id, str(config_version))
    result = run_agent.apply_async((agent_id, run_id), queue=settings.LOOP_QUEUE)
    Agent.objects.filter(pk=agent_id, run_id=run_id).update(task_id=result.id)


def launch_session(session_id: str, run_id: str, desired: str) -> None:
    """Mirror the flags to Redis and send the session loop's task (after commit)."""
    from sessions.tasks import run_session

    flags.write("session", session_id, desired, run_id)
    result = run_session.apply_async((session_id, run_id), queue=settings.LOOP_QUEUE)
    TradingSession.objects.filter(pk=session_id, run_id=run_id).update(task_id=result.id)


def _after_stop(agent_id: str, run_id: str, task_id: str, kind: str = "agent") -> None:
    from celery import current_app

    flags.write(kind, agent_id, Desired.STOPPED, run_id)
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
        _claim_start(agent, run_id, f"Agent {agent_id}")
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
        _mark_stopping(agent)
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
            validated = validate_config(agent.kind, config, strict=True)
        except ConfigError as exc:
            raise InvalidInput(
                f"The config for agent {agent_id} is invalid: {str(exc).removesuffix('.')}.",
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


def reorder_agents(agent_ids: list[str], *, user=None) -> None:
    """Save the order of cards in a flow column (a drag on the page): top to bottom."""
    with transaction.atomic():
        for index, agent_id in enumerate(agent_ids):
            Agent.objects.filter(pk=agent_id).update(position_y=index)
        audit(f"{_who(user)} rearranged agents {', '.join(agent_ids)}", user=user, level=10)


# --- the system --------------------------------------------------------------------


def start_system(*, user=None) -> BulkResult:
    """Start every enabled agent that is not running, upstream first, then every session
    that is not archived (a session needs its agents running to trade)."""
    require_redis()
    result = BulkResult()
    for agent in upstream_first(Agent.objects.filter(enabled=True)):
        _try(result, agent.agent_id, lambda a=agent: start_agent(a.agent_id, user=user))
    agents_started = len(result.changed)
    for session_id in TradingSession.objects.filter(archived=False).values_list("session_id", flat=True):
        _try(result, session_id, lambda s=session_id: start_session(s, user=user))
    if not result.changed:
        if not result.skipped:
            raise TransitionRefused("There is no enabled agent to start. Enable an agent first.")
        raise TransitionRefused(
            "The system is already running: every enabled agent and session is running or starting."
        )
    audit(
        f"{_who(user)} started the system ({agents_started} agents, "
        f"{len(result.changed) - agents_started} sessions)",
        user=user,
    )
    return result


def stop_system(*, user=None) -> BulkResult:
    """Stop every session, then every agent (downstream first, so consumers stop before
    producers and a flattening session still finds its execution agent)."""
    require_redis()
    result = BulkResult()
    for session_id in TradingSession.objects.values_list("session_id", flat=True):
        _try(result, session_id, lambda s=session_id: stop_session(s, user=user))
    for agent in reversed(upstream_first(Agent.objects.all())):
        _try(result, agent.agent_id, lambda a=agent: stop_agent(a.agent_id, user=user))
    if not result.changed:
        raise TransitionRefused("The system is already stopped. You can start it.")
    audit(f"{_who(user)} stopped the system ({len(result.changed)} agents and sessions)", user=user)
    return result


def _try(result: BulkResult, rid: str, action, id_key: str = "id") -> None:
    try:
        action()
        result.changed.append(rid)
    except (TransitionRefused, NotFound) as exc:  # NotFound: deleted meanwhile
        result.skipped.append({id_key: rid, "reason": exc.detail})


# --- sessions ----------------------------------------------------------------------


def _get_session_for_update(session_id: str) -> TradingSession:
    session = TradingSession.objects.select_for_update().filter(pk=session_id).first()
    if session is None:
        raise NotFound(f"There is no session with id {session_id!r}.")
    return session


def create_session(data: dict[str, Any], *, user=None) -> TradingSession:
    """Validate and create a session (status ready); InvalidInput lists each bad field."""
    if not isinstance(data, dict):
        raise InvalidInput("The session must be a JSON object.", code="invalid")
    known = set(SessionCreateForm.Meta.fields)
    unknown = sorted(set(data) - known)
    errors = [{"field": f, "reason": "Unknown field."} for f in unknown]
    form = SessionCreateForm(data=data)
    if not form.is_valid():
        errors += [
            {"field": f if f != "__all__" else "body", "reason": " ".join(str(m) for m in msgs)}
            for f, msgs in form.errors.items()
        ]
    if errors:
        summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        raise InvalidInput(f"The session cannot be created: {summary}", code="invalid", errors=errors)
    session = form.save(commit=False)
    try:
        with transaction.atomic():
            if not session.session_id:
                session.session_id = unique_session_id(session.name)
            session.cash = session.starting_cash
            session.save(force_insert=True)
    except IntegrityError:
        # Another request took the id between the check and the insert.
        raise InvalidInput(
            f"A session with id {session.session_id!r} exists already.",
            code="invalid",
            errors=[{"field": "session_id", "reason": "This id was taken a moment ago; try again."}],
        ) from None
    with transaction.atomic():
        audit(
            f"{_who(user)} created session {session.session_id} ({session.name})",
            user=user,
            session_id=session.session_id,
        )
    return session


def start_session(session_id: str, *, user=None) -> TradingSession:
    """Ask for a session to run: new run_id, status `starting`, task sent after commit.
    Restarting a stopped session continues with its cash and positions."""
    require_redis()
    run_id = uuid.uuid4().hex
    with transaction.atomic():
        session = _get_session_for_update(session_id)
        transitions.check_session("start", session)
        if session.decision_agent_id is None or session.execution_agent_id is None:
            raise TransitionRefused(
                f"Session {session_id} needs a decision agent and an execution agent before it can start."
            )
        # started_at is the person's start; the reconciler's relaunches keep it.
        now = timezone.now()
        restart = {"started_at": now, "stopped_at": None}
        if session.desired_state != Desired.PAUSED:
            restart["paused_at"] = None
        desired = _claim_start(session, run_id, f"Session {session_id}", **restart)
        how = " (paused: it trades once resumed)" if desired == Desired.PAUSED else ""
        audit(f"{_who(user)} started session {session_id}{how}", user=user, session_id=session_id)
        transaction.on_commit(lambda: launch_session(session_id, run_id, desired))
    session.refresh_from_db()
    return session


def stop_session(session_id: str, *, user=None) -> TradingSession:
    """Ask for a session to stop; its loop cancels open orders, flattens if configured,
    and confirms `stopped`."""
    require_redis()
    with transaction.atomic():
        session = _get_session_for_update(session_id)
        transitions.check_session("stop", session)
        _mark_stopping(session)
        audit(f"{_who(user)} stopped session {session_id}", user=user, session_id=session_id)
        run_id, task_id = session.run_id, session.task_id
        transaction.on_commit(lambda: _after_stop(session_id, run_id, task_id, kind="session"))
    session.refresh_from_db()
    return session


def pause_session(session_id: str, *, user=None) -> TradingSession:
    """Stop placing orders at once: from this commit on the broker fills nothing for the
    session (it reads desired_state under the session lock); the loop cancels the open
    orders and confirms `paused`, and keeps marking to market."""
    return _set_session_desired(session_id, "pause", Desired.PAUSED, user)


def resume_session(session_id: str, *, user=None) -> TradingSession:
    """Trade again, with the same cash and positions."""
    return _set_session_desired(session_id, "resume", Desired.RUNNING, user)


def _set_session_desired(session_id: str, action: str, desired: str, user) -> TradingSession:
    require_redis()
    with transaction.atomic():
        session = _get_session_for_update(session_id)
        transitions.check_session(action, session)
        TradingSession.objects.filter(pk=session_id, run_id=session.run_id).update(desired_state=desired)
        verb = {"pause": "paused", "resume": "resumed"}[action]
        audit(f"{_who(user)} {verb} session {session_id}", user=user, session_id=session_id)
        run_id = session.run_id

        def mirror() -> None:
            try:
                flags.write("session", session_id, desired, run_id)
            except redis.RedisError:
                pass  # the loop falls back to the database; the reconciler rewrites flags

        transaction.on_commit(mirror)
    session.refresh_from_db()
    return session


def pause_all_sessions(*, user=None) -> BulkResult:
    """Pause every running session; the others are listed as skipped with the reason."""
    return _each_session(pause_session, "pause", user)


def resume_all_sessions(*, user=None) -> BulkResult:
    """Resume every paused session; the others are listed as skipped with the reason."""
    return _each_session(resume_session, "resume", user)


def _each_session(action, verb: str, user) -> BulkResult:
    require_redis()
    result = BulkResult()
    for session_id in TradingSession.objects.values_list("session_id", flat=True):
        _try(result, session_id, lambda s=session_id: action(s, user=user), id_key="session_id")
    if result.changed:
        audit(f"{_who(user)} {verb}d all sessions ({len(result.changed)})", user=user)
    return result

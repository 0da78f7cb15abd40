"""THE one place that changes desired state, and what a person edits on a runnable.

Views, the JSON API, management commands, the admin and the reconciler call these
functions; none of them changes state on its own. Each change is a conditional update
(agents.runtime.lifecycle) inside a transaction, with an audit LogEntry, and its side
effects on Redis and Celery (flags, wake-up, task) run only after the transaction commits.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone

from agents.graph import inputs_refusal, upstream_first
from agents.kinds import ConfigError, UnknownKind, get_kind, validate_config
from agents.models import AGENT_EDITABLE_FIELDS, Agent, LogEntry
from agents.net.redact import redact_text, redact_url
from agents.runtime import keys, lifecycle
from agents.runtime.redis import get_redis
from agents.states import LIVE_STATUSES, Desired
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
    the status and run read under the row lock (lifecycle.claim_start), so a concurrent
    change makes this a refusal, not a twin. Returns the desired state written."""
    desired = desired_after_start(row)
    if not lifecycle.claim_start(row, run_id, desired, **extra):
        raise TransitionRefused(f"{name} changed while starting it; try again.", code="conflict")
    return desired


def launch_agent(agent_id: str, run_id: str, desired: str = Desired.RUNNING, config_version: int = 1) -> None:
    """Mirror the flags to Redis and send the loop's task (after commit)."""
    from agents.tasks import run_agent

    lifecycle.write_flags("agent", agent_id, desired, run_id, str(config_version))
    result = run_agent.apply_async((agent_id, run_id), queue=settings.LOOP_QUEUE)
    lifecycle.record_task(Agent, agent_id, run_id, result.id)


def launch_session(session_id: str, run_id: str, desired: str) -> None:
    """Mirror the flags to Redis and send the session loop's task (after commit)."""
    from sessions.tasks import run_session

    lifecycle.write_flags("session", session_id, desired, run_id)
    result = run_session.apply_async((session_id, run_id), queue=settings.LOOP_QUEUE)
    lifecycle.record_task(TradingSession, session_id, run_id, result.id)


def _after_stop(agent_id: str, run_id: str, task_id: str, kind: str = "agent") -> None:
    from celery import current_app

    lifecycle.write_flags(kind, agent_id, Desired.STOPPED, run_id)
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
        lifecycle.request_stop(agent)
        audit(f"{_who(user)} stopped agent {agent_id}", user=user, agent_id=agent_id)
        run_id, task_id = agent.run_id, agent.task_id
        transaction.on_commit(lambda: _after_stop(agent_id, run_id, task_id))
    agent.refresh_from_db()
    return agent


@dataclass
class Update:
    """What an edit did: the row after it, the fields that changed, and a sentence for
    the person when the change waits for a restart ("" when it applies at once)."""

    row: Any
    changed: list[str] = field(default_factory=list)
    note: str = ""


# What a person may edit on an agent is agents.models.AGENT_EDITABLE_FIELDS. A running
# loop reloads (rebuilds its kind from the row: config, symbols, inputs) when
# config_version moves (agents.runtime.loop).
AGENT_RELOADED = ("kind", "config", "symbols", "inputs_from")

# What a person may edit on a session. Its loop reads the risk and fill rules from the
# row as it trades; the symbols and agents it follows are read when it starts.
SESSION_EDITABLE = (
    "name",
    "symbols",
    "decision_agent",
    "execution_agent",
    "archived",
    "max_position_weight",
    "max_orders_per_minute",
    "flatten_on_stop",
    "max_price_age_seconds",
    "fee_bps",
    "slippage_bps",
    "slippage_size_scaled",
    "slippage_size_reference",
)
SESSION_NEEDS_RESTART = ("symbols", "decision_agent", "execution_agent")


def update_agent(agent_id: str, changes: dict[str, Any], *, user=None) -> Update:
    """Validate and store a person's edit of an agent (the API and the admin): only the
    fields that changed are written, the change is audited, and a running loop reloads
    (config_version moves and the flags carry it)."""
    if not isinstance(changes, dict):
        raise InvalidInput("The changes must be a JSON object.", code="invalid")
    _warm_agent_checks(agent_id, changes)
    with transaction.atomic():
        agent = _get_agent_for_update(agent_id)
        updates, inputs = _validated_agent_changes(agent, changes)
        changed = sorted([*updates, *(["inputs_from"] if inputs is not None else [])])
        if not changed:
            return Update(agent)
        if any(name in AGENT_RELOADED for name in changed):
            updates["config_version"] = F("config_version") + 1
        Agent.objects.filter(pk=agent_id).update(**updates, updated_at=timezone.now())
        if inputs is not None:
            agent.inputs_from.set(inputs)
        what = "the config" if changed == ["config"] else ", ".join(changed)
        audit(f"{_who(user)} changed {what} of agent {agent_id}", user=user, agent_id=agent_id)
        agent.refresh_from_db()
        _mirror_on_commit("agent", agent_id, agent.desired_state, agent.run_id, str(agent.config_version))
    return Update(agent, changed)


def update_agent_config(agent_id: str, config: Any, *, user=None) -> Agent:
    """Validate `config` with the agent's kind and store it; a running loop reloads it."""
    return update_agent(agent_id, {"config": config}, user=user).row


def _validated_agent_changes(
    agent: Agent, changes: dict[str, Any]
) -> tuple[dict[str, Any], list[str] | None]:
    """The concrete fields that differ from the row, and the new inputs (None: unchanged);
    InvalidInput naming every bad field, before anything is written."""
    errors = [
        {"field": f, "reason": "This field cannot be changed here."}
        for f in changes
        if f not in AGENT_EDITABLE_FIELDS
    ]
    if errors:
        raise _invalid(f"Agent {agent.agent_id}", errors)
    kind = changes.get("kind", agent.kind)
    if "config" in changes or "kind" in changes:
        try:
            config = validate_config(kind, changes.get("config", agent.config), strict=True)
        except ConfigError as exc:
            raise InvalidInput(
                f"The config for agent {agent.agent_id} is invalid: {str(exc).removesuffix('.')}.",
                code="invalid_config",
                errors=[{"field": f, "reason": r} for f, r in exc.errors],
            ) from None
        except UnknownKind as exc:
            raise InvalidInput(str(exc), code="unknown_kind") from None
        changes = {**changes, "config": config.model_dump(mode="json")}
        if kind == agent.kind and changes["config"] == _normalized_config(agent):
            changes["config"] = agent.config  # the same settings, spelled out: no change
    updates = {
        name: value
        for name, value in changes.items()
        if name != "inputs_from" and getattr(agent, name) != value
    }
    inputs = None
    if "inputs_from" in changes:
        inputs = sorted({getattr(a, "pk", a) for a in changes["inputs_from"] or []})
        current = sorted(agent.inputs_from.values_list("agent_id", flat=True))
        missing = sorted(set(inputs) - set(Agent.objects.filter(pk__in=inputs).values_list("pk", flat=True)))
        refusal = (
            f"There is no agent with id {missing[0]!r}."
            if missing
            else inputs_refusal(agent.agent_id, inputs)
        )
        if refusal:
            raise _invalid(f"Agent {agent.agent_id}", [{"field": "inputs_from", "reason": refusal}])
        if inputs == current:
            inputs = None
    _full_clean(agent, updates, f"Agent {agent.agent_id}")
    if {"config", "kind", "symbols"} & set(updates):
        _check_agent(agent, kind, updates)
    return updates, inputs


def _warm_agent_checks(agent_id: str, changes: dict[str, Any]) -> None:
    """Run the kind's checks once before the row is locked, so what they download (an
    exchange's market list, then cached) is not fetched while the lock is held; the
    checks inside the transaction decide."""
    if not {"config", "kind", "symbols"} & set(changes):
        return
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        return
    try:
        _check_agent(agent, changes.get("kind", agent.kind), changes)
    except (InvalidInput, UnknownKind, TypeError, ValueError):
        pass  # said properly, with everything else, by the validation inside


def _check_agent(agent: Agent, kind: str, changes: dict[str, Any]) -> None:
    """The kind's checks beyond its schema (an exchange's market list), on the config and
    symbols as they would be saved; InvalidInput naming each problem."""
    try:
        config = validate_config(kind, changes.get("config", agent.config))
    except (ConfigError, UnknownKind):
        return  # the stored config no longer parses: only a new one is checked, above
    symbols = changes.get("symbols", agent.symbols)
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        return  # the symbols field's own validation refuses them (_full_clean)
    problems = get_kind(kind).check_agent(config, symbols)
    if problems:
        raise InvalidInput(
            f"The config for agent {agent.agent_id} is invalid: "
            + "; ".join(f"{f}: {r}" for f, r in problems).removesuffix(".")
            + ".",
            code="invalid_config",
            errors=[{"field": f, "reason": r} for f, r in problems],
        )


def _normalized_config(agent: Agent) -> Any:
    """The stored config with its kind's defaults filled in (None if it no longer parses)."""
    try:
        return validate_config(agent.kind, agent.config).model_dump(mode="json")
    except (ConfigError, UnknownKind):
        return None


def update_session(session_id: str, changes: dict[str, Any], *, user=None) -> Update:
    """Validate and store a person's edit of a session (the admin): only the fields that
    changed, audited, and the loop woken. A running session applies its risk and fill
    rules at once; new symbols or agents wait for a restart, and the note says so."""
    if not isinstance(changes, dict):
        raise InvalidInput("The changes must be a JSON object.", code="invalid")
    with transaction.atomic():
        session = _get_session_for_update(session_id)
        errors = [
            {"field": f, "reason": "This field cannot be changed here."}
            for f in changes
            if f not in SESSION_EDITABLE
        ]
        if errors:
            raise _invalid(f"Session {session_id}", errors)
        updates: dict[str, Any] = {}
        for name, value in changes.items():
            column = TradingSession._meta.get_field(name).attname
            value = getattr(value, "pk", value)
            if getattr(session, column) != value:
                updates[column] = value
        if not updates:
            return Update(session)
        _full_clean(session, updates, f"Session {session_id}")
        TradingSession.objects.filter(pk=session_id).update(**updates, updated_at=timezone.now())
        changed = sorted(TradingSession._meta.get_field(c.removesuffix("_id")).name for c in updates)
        audit(
            f"{_who(user)} changed {', '.join(changed)} of session {session_id}",
            user=user,
            session_id=session_id,
        )
        session.refresh_from_db()
        _mirror_on_commit("session", session_id, session.desired_state, session.run_id, "")
    waiting = [name for name in changed if name in SESSION_NEEDS_RESTART]
    note = ""
    if waiting and session.status in LIVE_STATUSES:
        note = (
            f"Session {session_id} is {session.status}: the change to {', '.join(waiting)} "
            "applies when it is stopped and started again."
        )
    return Update(session, changed, note)


_OWN_EMPTY_FIELDS = (models.CharField, models.TextField, models.JSONField)


def _full_clean(row, updates: dict[str, Any], name: str) -> None:
    """The model's own validators over the changed fields (on a copy: the row is kept)."""
    if not updates:
        return
    # Django's full_clean skips a blank field holding any of its empty values ("", [], {},
    # ()), so on a number, date or relation they went unchecked to the database, which
    # raised TypeError (a 500). Text and JSON fields have their own empty value; every
    # other field's empty value is None.
    meta = type(row)._meta
    wrong_empty = [
        {"field": field.name, "reason": "Give a value of this field's type, or null to leave it empty."}
        for column, value in updates.items()
        if value is not None
        and not isinstance(field := meta.get_field(column.removesuffix("_id")), _OWN_EMPTY_FIELDS)
        and any(value == empty and type(value) is type(empty) for empty in field.empty_values)
    ]
    if wrong_empty:
        raise _invalid(name, wrong_empty)
    candidate = type(row).objects.get(pk=row.pk)
    for column, value in updates.items():
        setattr(candidate, column, value)
    names = {type(row)._meta.get_field(c.removesuffix("_id")).name for c in updates}
    exclude = [f.name for f in type(row)._meta.fields if f.name not in names]
    try:
        candidate.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise _invalid(
            name,
            [{"field": f, "reason": " ".join(str(m) for m in msgs)} for f, msgs in exc.message_dict.items()],
        ) from None


def _invalid(name: str, errors: list[dict[str, str]]) -> InvalidInput:
    summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    return InvalidInput(f"{name} was not changed: {summary}", code="invalid", errors=errors)


def _mirror_on_commit(kind: str, rid: str, desired: str, run_id: str, config_rev: str) -> None:
    """After the commit, the flags carry the row (a new config_rev makes a loop reload)."""

    def mirror() -> None:
        try:
            lifecycle.write_flags(kind, rid, desired, run_id, config_rev)
        except redis.RedisError:
            pass  # the reconciler rewrites flags; the loop reloads then

    transaction.on_commit(mirror)


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
            "The system is already running: every enabled agent and session is running or starting "
            "(a paused session stays paused: resume it to trade)."
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
        lifecycle.request_stop(session)
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
        lifecycle.set_desired(session, desired)
        verb = {"pause": "paused", "resume": "resumed"}[action]
        audit(f"{_who(user)} {verb} session {session_id}", user=user, session_id=session_id)
        # (Redis down after the commit: the loop falls back to the database.)
        _mirror_on_commit("session", session_id, desired, session.run_id, "")
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

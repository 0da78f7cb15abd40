"""Agents and the system as the API (and later the page) shows them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from django.db.models import Count
from django.utils import timezone

from agents.models import Agent
from agents.runtime import keys
from agents.runtime.loop import numbers
from agents.runtime.redis import get_redis
from agents.states import Status


def live_metrics(agent_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The loops' live counters from Redis (one round trip); {} per agent if Redis is down."""
    if not agent_ids:
        return {}
    try:
        pipe = get_redis().pipeline(transaction=False)
        for agent_id in agent_ids:
            pipe.hgetall(keys.metrics("agent", agent_id))
        return {a: numbers(m) for a, m in zip(agent_ids, pipe.execute(), strict=True)}
    except redis.RedisError:
        return {}


def agent_dict(agent: Agent, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """One agent in the shape of API.md (prefetch inputs_from and outputs_to for lists)."""
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "kind": agent.kind,
        "role": agent.role,
        "enabled": agent.enabled,
        "status": agent.status,
        "desired_state": agent.desired_state,
        "symbols": list(agent.symbols or []),
        "inputs_from": sorted(a.agent_id for a in agent.inputs_from.all()),
        "outputs_to": sorted(a.agent_id for a in agent.outputs_to.all()),
        "config": agent.config,
        "metrics": metrics if metrics else (agent.metrics or {}),
        "last_active": agent.last_active,
        "last_heartbeat": agent.last_heartbeat,
        "status_changed_at": agent.status_changed_at,
        "run_id": agent.run_id or None,
        "error_message": agent.error_message or None,
    }


def agent_dicts(agents: Iterable[Agent]) -> list[dict[str, Any]]:
    agents = list(agents)
    metrics = live_metrics([a.agent_id for a in agents])
    return [agent_dict(a, metrics.get(a.agent_id)) for a in agents]


def agents_queryset():
    return Agent.objects.prefetch_related("inputs_from", "outputs_to")


def system_status() -> dict[str, Any]:
    """Overall status derived from observed states (API.md GET /api/system/status)."""
    counts = {s: 0 for s in ("running", "stopped", "error", "starting", "stopping")}
    total = 0
    enabled_total = enabled_running = 0
    for row in Agent.objects.values("status", "enabled").annotate(n=Count("agent_id")):
        total += row["n"]
        counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
        if row["enabled"]:
            enabled_total += row["n"]
            if row["status"] == Status.RUNNING:
                enabled_running += row["n"]
    if counts.get(Status.ERROR):
        status = "error"
    elif counts.get(Status.STARTING) and not counts.get(Status.STOPPING):
        status = "starting"
    elif counts.get(Status.STOPPING) and not counts.get(Status.STARTING):
        status = "stopping"
    elif enabled_total and enabled_running == enabled_total:
        status = "running"
    elif (
        counts.get(Status.RUNNING) == 0
        and not counts.get(Status.STARTING)
        and not counts.get(Status.STOPPING)
    ):
        status = "stopped"
    else:
        status = "partial"
    return {
        "status": status,
        "agents": {"total": total, **counts},
        "updated_at": timezone.now(),
    }

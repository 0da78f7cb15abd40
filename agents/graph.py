"""The signal graph's order: producers before their consumers."""

from __future__ import annotations

from collections.abc import Iterable

from agents.models import ROLE_ORDER, Agent


def parents_of(agent_ids: Iterable[str] | None = None) -> dict[str, list[str]]:
    """consumer id -> its producers' ids, in one query (cheaper than prefetching objects)."""
    through = Agent.inputs_from.through.objects.all()
    if agent_ids is not None:
        through = through.filter(from_agent_id__in=list(agent_ids))
    parents: dict[str, list[str]] = {}
    for consumer, producer in through.values_list("from_agent_id", "to_agent_id"):
        parents.setdefault(consumer, []).append(producer)
    return {consumer: sorted(producers) for consumer, producers in parents.items()}


def upstream_first(agents: Iterable[Agent], parents: dict[str, list[str]] | None = None) -> list[Agent]:
    """Agents ordered by depth in the graph (edges), then role, then id.

    Used to start the system (producers first), stop it (reversed) and list it.
    Cycles are tolerated: an edge back to an agent already on the path is ignored.
    `parents` (see parents_of) saves loading the edges as objects.
    """
    if parents is None and hasattr(agents, "prefetch_related"):
        agents = agents.prefetch_related("inputs_from")
    agents = list(agents)
    if parents is None:
        parents = {a.agent_id: [p.agent_id for p in a.inputs_from.all()] for a in agents}
    rank = {role: i for i, role in enumerate(ROLE_ORDER)}
    by_id = {a.agent_id: a for a in agents}
    depth: dict[str, int] = {}

    def depth_of(a: Agent, seen: frozenset[str] = frozenset()) -> int:
        if a.agent_id in depth:
            return depth[a.agent_id]
        up = [by_id[p] for p in parents.get(a.agent_id, []) if p in by_id and p not in seen]
        d = 1 + max((depth_of(p, seen | {a.agent_id}) for p in up), default=-1)
        depth[a.agent_id] = d
        return d

    return sorted(agents, key=lambda a: (depth_of(a), rank.get(a.role, 99), a.agent_id))

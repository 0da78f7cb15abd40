"""The signal graph's order: producers before their consumers."""

from __future__ import annotations

from collections.abc import Iterable

from agents.models import ROLE_ORDER, Agent


def upstream_first(agents: Iterable[Agent]) -> list[Agent]:
    """Agents ordered by depth in the graph (edges), then role, then id.

    Used to start the system (producers first), stop it (reversed) and list it.
    Cycles are tolerated: an edge back to an agent already on the path is ignored.
    """
    if hasattr(agents, "prefetch_related"):
        agents = agents.prefetch_related("inputs_from")
    agents = list(agents)
    rank = {role: i for i, role in enumerate(ROLE_ORDER)}
    by_id = {a.agent_id: a for a in agents}
    depth: dict[str, int] = {}

    def depth_of(a: Agent, seen: frozenset[str] = frozenset()) -> int:
        if a.agent_id in depth:
            return depth[a.agent_id]
        parents = [
            by_id[p.agent_id] for p in a.inputs_from.all() if p.agent_id in by_id and p.agent_id not in seen
        ]
        d = 1 + max((depth_of(p, seen | {a.agent_id}) for p in parents), default=-1)
        depth[a.agent_id] = d
        return d

    return sorted(agents, key=lambda a: (depth_of(a), rank.get(a.role, 99), a.agent_id))

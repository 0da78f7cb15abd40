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


def inputs_refusal(agent_id: str, input_ids: Iterable[str]) -> str | None:
    """Why `agent_id` may not consume the streams of `input_ids`, as a sentence; None
    when it may. An agent is never its own input, and no edge may close a cycle (a
    consumer's signal would feed back into its own producers). The agent's current
    inputs are replaced by `input_ids`, so they are left out of the check."""
    inputs = sorted(set(input_ids))
    if agent_id in inputs:
        return f"Agent {agent_id} cannot be among its own inputs."
    parents = parents_of()
    parents.pop(agent_id, None)
    for producer in inputs:
        path = _path_up(producer, agent_id, parents)
        if path is not None:
            chain = " ← ".join(path)
            return (
                f"Agent {agent_id} cannot take input from {producer}: {producer} already depends on "
                f"{agent_id} ({chain}), so the edge would make a cycle."
            )
    return None


def _path_up(start: str, target: str, parents: dict[str, list[str]]) -> list[str] | None:
    """The chain of producers from `start` up to `target` (start first), if there is one."""
    came_from: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        node = todo.pop()
        if node == target:
            path = [node]
            while (prev := came_from[path[-1]]) is not None:
                path.append(prev)
            return list(reversed(path))
        for producer in parents.get(node, []):
            if producer not in came_from:
                came_from[producer] = node
                todo.append(producer)
    return None

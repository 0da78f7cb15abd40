"""Which control actions are allowed from which state: the one place that decides.

Each rule maps an observed status to None (allowed) or the sentence that explains the
refusal. Refusals become HTTP 409 and change nothing.
"""

from __future__ import annotations

from typing import Protocol

from agents.states import Desired, Status
from control.errors import TransitionRefused


class Runnable(Protocol):
    status: str
    desired_state: str


_AGENT_RULES: dict[str, dict[str, str | None]] = {
    "start": {
        Status.STOPPED: None,
        Status.ERROR: None,
        Status.STARTING: "{name} is already starting. You can stop it.",
        Status.RUNNING: "{name} is already running. You can stop it.",
        Status.STOPPING: "{name} is still stopping; start it again once it has stopped.",
    },
    "stop": {
        Status.STARTING: None,
        Status.RUNNING: None,
        Status.ERROR: None,
        Status.STOPPED: "{name} is already stopped. You can start it.",
        Status.STOPPING: "{name} is already stopping; it confirms within one tick.",
    },
}


def check_agent(action: str, agent) -> None:
    """Raise TransitionRefused unless `action` is allowed for `agent` now."""
    name = f"Agent {agent.agent_id}"
    if action == "start" and not agent.enabled:
        raise TransitionRefused(f"{name} is disabled; enable it before starting it.")
    # A loop that is being restarted (wanted running, observed stopped) is started;
    # a stop is allowed then too, so the user can cancel the restart.
    if action == "stop" and agent.status == Status.STOPPED and agent.desired_state == Desired.RUNNING:
        return
    sentence = _AGENT_RULES[action].get(agent.status, f"{name} cannot {action} while {agent.status}.")
    if sentence is not None:
        raise TransitionRefused(sentence.format(name=name))


def agent_can(action: str, agent) -> bool:
    """For the page: is the button for `action` enabled?"""
    try:
        check_agent(action, agent)
    except TransitionRefused:
        return False
    return True

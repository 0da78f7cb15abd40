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


_SESSION_RULES: dict[str, dict[str, str | None]] = {
    "start": {
        Status.READY: None,
        Status.STOPPED: None,
        Status.ERROR: None,
        Status.STARTING: "{name} is already starting. You can stop it.",
        Status.RUNNING: "{name} is already running. You can pause or stop it.",
        Status.PAUSED: "{name} is paused, not stopped. You can resume or stop it.",
        Status.STOPPING: "{name} is still stopping; start it again once it has stopped.",
    },
    "stop": {
        Status.STARTING: None,
        Status.RUNNING: None,
        Status.PAUSED: None,
        Status.ERROR: None,
        Status.READY: "{name} has never been started. You can start it.",
        Status.STOPPED: "{name} is already stopped. You can start it.",
        Status.STOPPING: "{name} is already stopping; it confirms within one tick.",
    },
    "pause": {
        Status.RUNNING: None,
        Status.PAUSED: "{name} is already paused. You can resume or stop it.",
        Status.STARTING: "{name} is still starting; pause it once it is running.",
        Status.READY: "{name} is not running (ready). Only a running session can be paused.",
        Status.STOPPED: "{name} is stopped. Only a running session can be paused; you can start it.",
        Status.STOPPING: "{name} is stopping. Only a running session can be paused.",
        Status.ERROR: "{name} is in error. Only a running session can be paused; you can start it again.",
    },
    "resume": {
        Status.PAUSED: None,
        Status.RUNNING: "{name} is already running. Only a paused session can be resumed.",
        Status.STARTING: "{name} is starting, not paused. Only a paused session can be resumed.",
        Status.READY: "{name} is not paused (ready). You can start it.",
        Status.STOPPED: "{name} is stopped, not paused. You can start it.",
        Status.STOPPING: "{name} is stopping. Only a paused session can be resumed.",
        Status.ERROR: "{name} is in error, not paused. You can start it again.",
    },
}


def check_session(action: str, session) -> None:
    """Raise TransitionRefused unless `action` is allowed for `session` now."""
    name = f"Session {session.session_id}"
    if action == "start" and session.archived:
        raise TransitionRefused(f"{name} is archived; it keeps its history but cannot be started.")
    if action == "stop" and session.status == Status.STOPPED and session.desired_state != Desired.STOPPED:
        return  # being restarted by the reconciler: a stop cancels that
    # A pause or resume the loop has not confirmed yet: the opposite request cancels it,
    # the same request again is refused with what is happening.
    if session.status == Status.RUNNING and session.desired_state == Desired.PAUSED:
        if action == "resume":
            return
        if action == "pause":
            raise TransitionRefused(f"{name} is already pausing; it confirms within one tick.")
    if session.status == Status.PAUSED and session.desired_state == Desired.RUNNING:
        if action == "pause":
            return
        if action == "resume":
            raise TransitionRefused(f"{name} is already resuming; it confirms within one tick.")
    sentence = _SESSION_RULES[action].get(session.status, f"{name} cannot {action} while {session.status}.")
    if sentence is not None:
        raise TransitionRefused(sentence.format(name=name))


def session_can(action: str, session) -> bool:
    """For the page: is the button for `action` enabled?"""
    try:
        check_session(action, session)
    except TransitionRefused:
        return False
    return True

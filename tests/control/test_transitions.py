"""Every allowed and refused transition of agents and the system (control.services)."""

import pytest

from agents.models import Agent, LogEntry
from agents.states import Desired, Status
from control import services
from control.errors import NotFound, TransitionRefused

pytestmark = pytest.mark.django_db


def agent_in(make_agent, status: str, desired: str, **fields) -> Agent:
    return make_agent(status=status, desired_state=desired, run_id="r-old", **fields)


@pytest.mark.parametrize("status", [Status.STOPPED, Status.ERROR])
def test_start_is_allowed_from(make_agent, status):
    agent = agent_in(make_agent, status, Desired.STOPPED if status == Status.STOPPED else Desired.RUNNING)
    started = services.start_agent(agent.agent_id)
    assert (started.status, started.desired_state) == (Status.STARTING, Desired.RUNNING)
    assert started.run_id and started.run_id != "r-old"
    assert started.error_message == ""


@pytest.mark.parametrize(
    "status, sentence",
    [
        (Status.STARTING, "already starting"),
        (Status.RUNNING, "already running"),
        (Status.STOPPING, "still stopping"),
    ],
)
def test_start_is_refused_with_a_sentence_from(make_agent, status, sentence):
    agent = agent_in(make_agent, status, Desired.RUNNING if status != Status.STOPPING else Desired.STOPPED)
    with pytest.raises(TransitionRefused, match=sentence) as refused:
        services.start_agent(agent.agent_id)
    assert refused.value.status == 409 and refused.value.code == "invalid_transition"
    unchanged = Agent.objects.get(pk=agent.pk)
    assert (unchanged.status, unchanged.run_id) == (status, "r-old")


def test_start_of_a_disabled_agent_is_refused(make_agent):
    agent = agent_in(make_agent, Status.STOPPED, Desired.STOPPED, enabled=False)
    with pytest.raises(TransitionRefused, match="disabled"):
        services.start_agent(agent.agent_id)
    assert Agent.objects.get(pk=agent.pk).desired_state == Desired.STOPPED


@pytest.mark.parametrize(
    "status, desired, expected",
    [
        (Status.STARTING, Desired.RUNNING, Status.STOPPING),
        (Status.RUNNING, Desired.RUNNING, Status.STOPPING),
        (Status.ERROR, Desired.RUNNING, Status.STOPPED),
        # Wanted running but not running (a restart is pending): stop cancels it.
        (Status.STOPPED, Desired.RUNNING, Status.STOPPED),
    ],
)
def test_stop_is_allowed_from(make_agent, status, desired, expected):
    agent = agent_in(make_agent, status, desired)
    stopped = services.stop_agent(agent.agent_id)
    assert (stopped.status, stopped.desired_state) == (expected, Desired.STOPPED)
    assert stopped.run_id == "r-old"  # the live loop confirms the stop under its own run


@pytest.mark.parametrize(
    "status, sentence",
    [(Status.STOPPED, "already stopped"), (Status.STOPPING, "already stopping")],
)
def test_stop_is_refused_with_a_sentence_from(make_agent, status, sentence):
    agent = agent_in(make_agent, status, Desired.STOPPED)
    with pytest.raises(TransitionRefused, match=sentence):
        services.stop_agent(agent.agent_id)
    assert Agent.objects.get(pk=agent.pk).status == status


def test_every_change_writes_an_audit_entry_naming_the_user(make_agent, operator):
    agent = agent_in(make_agent, Status.STOPPED, Desired.STOPPED)
    services.start_agent(agent.agent_id, user=operator)
    entry = LogEntry.objects.get(source="control", agent=agent)
    assert entry.user == operator
    assert entry.message == f"operator started agent {agent.agent_id}"


def test_refused_transition_writes_no_audit_entry(make_agent):
    agent = agent_in(make_agent, Status.RUNNING, Desired.RUNNING)
    with pytest.raises(TransitionRefused):
        services.start_agent(agent.agent_id)
    assert not LogEntry.objects.filter(source="control").exists()


def test_unknown_agent_is_not_found():
    with pytest.raises(NotFound):
        services.start_agent("nope")
    with pytest.raises(NotFound):
        services.stop_agent("nope")


def test_system_start_starts_enabled_agents_upstream_first(make_agent):
    decision = make_agent("decide", role="decision")
    feed = make_agent("feed", role="data_feed")
    make_agent("off", enabled=False)
    decision.inputs_from.add(feed)
    result = services.start_system()
    assert result.changed == ["feed", "decide"]
    assert Agent.objects.get(pk="off").desired_state == Desired.STOPPED


def test_system_start_skips_running_agents_and_says_why(make_agent):
    make_agent("feed")
    agent_in(make_agent, Status.RUNNING, Desired.RUNNING, agent_id="busy")
    result = services.start_system()
    assert result.changed == ["feed"]
    assert result.skipped == [{"id": "busy", "reason": "Agent busy is already running. You can stop it."}]


def test_system_start_is_refused_when_everything_runs(make_agent):
    agent_in(make_agent, Status.RUNNING, Desired.RUNNING)
    with pytest.raises(TransitionRefused, match="already running"):
        services.start_system()


def test_system_start_is_refused_without_enabled_agents(make_agent):
    make_agent(enabled=False)
    with pytest.raises(TransitionRefused, match="no enabled agent"):
        services.start_system()


def test_system_stop_stops_downstream_first(make_agent):
    feed = agent_in(make_agent, Status.RUNNING, Desired.RUNNING, agent_id="feed")
    decision = agent_in(make_agent, Status.RUNNING, Desired.RUNNING, agent_id="decide", role="decision")
    decision.inputs_from.add(feed)
    result = services.stop_system()
    assert result.changed == ["decide", "feed"]
    assert set(Agent.objects.values_list("desired_state", flat=True)) == {Desired.STOPPED}


def test_system_stop_is_refused_when_nothing_runs(make_agent):
    make_agent()
    with pytest.raises(TransitionRefused, match="already stopped"):
        services.stop_system()


def _session(status: str, desired: str, archived: bool = False):
    from types import SimpleNamespace

    return SimpleNamespace(session_id="s1", status=status, desired_state=desired, archived=archived)


@pytest.mark.parametrize(
    ("action", "status", "desired", "allowed"),
    [
        ("pause", "running", "running", True),
        ("pause", "paused", "paused", False),
        ("pause", "ready", "stopped", False),
        ("pause", "stopped", "stopped", False),
        ("resume", "running", "running", False),
        ("resume", "paused", "paused", True),
        ("start", "ready", "stopped", True),
        ("start", "stopped", "stopped", True),
        ("start", "running", "running", False),
        ("start", "paused", "paused", False),
        ("stop", "ready", "stopped", False),
        ("stop", "paused", "paused", True),
        ("stop", "stopped", "running", True),  # cancels a pending restart
        # Not yet confirmed by the loop: the opposite request cancels, the same is refused.
        ("resume", "running", "paused", True),
        ("pause", "running", "paused", False),
        ("pause", "paused", "running", True),
        ("resume", "paused", "running", False),
    ],
)
def test_session_rules(action, status, desired, allowed):
    from control.transitions import session_can

    assert session_can(action, _session(status, desired)) is allowed


def test_an_archived_session_cannot_start():
    from control.errors import TransitionRefused
    from control.transitions import check_session

    with pytest.raises(TransitionRefused, match="archived"):
        check_session("start", _session("stopped", "stopped", archived=True))


# --- "paused" survives every start that is not a resume ---------------------------------


@pytest.fixture
def sessions_launched(monkeypatch, redis_client):
    """services.launch_session replaced by a recorder: (session_id, run_id, desired)."""
    launched: list[tuple] = []
    monkeypatch.setattr(services, "launch_session", lambda *args: launched.append(args))
    return launched


def paused_session(make_agent, status: str, session_id: str = "held"):
    from sessions.models import TradingSession

    make_agent("decide", role="decision")
    make_agent("execute", role="execution")
    return TradingSession.objects.create(
        session_id=session_id,
        name=session_id,
        status=status,
        desired_state=Desired.PAUSED,
        run_id="r-old",
        starting_cash=1000,
        decision_agent_id="decide",
        execution_agent_id="execute",
    )


@pytest.mark.parametrize("status", [Status.ERROR, Status.STOPPED])
def test_a_start_of_a_paused_session_keeps_it_paused(
    make_agent, sessions_launched, status, django_capture_on_commit_callbacks
):
    """A paused session that failed, or whose worker shut down: starting it again (a
    person, Start system, start_all) brings its loop back paused; only resume trades."""
    paused_session(make_agent, status)
    with django_capture_on_commit_callbacks(execute=True):
        started = services.start_session("held")
    assert (started.status, started.desired_state) == (Status.STARTING, Desired.PAUSED)
    assert sessions_launched == [("held", started.run_id, Desired.PAUSED)]
    assert "paused: it trades once resumed" in LogEntry.objects.filter(session_id="held").last().message


def test_system_start_keeps_a_paused_session_paused(
    make_agent, sessions_launched, django_capture_on_commit_callbacks
):
    paused_session(make_agent, Status.ERROR)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.start_system()
    assert "held" in result.changed
    from sessions.models import TradingSession

    assert TradingSession.objects.get(pk="held").desired_state == Desired.PAUSED
    assert [args[2] for args in sessions_launched] == [Desired.PAUSED]

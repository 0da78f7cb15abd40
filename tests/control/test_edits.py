"""Edits of an agent or a session through control.services (the API's and the admin's one
path): validated, only the changed fields written, audited, mirrored to the flags."""

from decimal import Decimal

import pytest

from agents.models import Agent, LogEntry
from agents.runtime import keys
from agents.states import Desired, Status
from control import services
from control.errors import InvalidInput
from sessions.models import TradingSession

pytestmark = pytest.mark.django_db


def test_an_agent_cannot_be_made_its_own_input(make_agent):
    agent = make_agent("feed")
    with pytest.raises(InvalidInput) as refused:
        services.update_agent("feed", {"inputs_from": ["feed"]})
    assert refused.value.errors == [
        {"field": "inputs_from", "reason": "Agent feed cannot be among its own inputs."}
    ]
    assert not agent.inputs_from.exists()
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize(
    ("edges", "consumer", "producer", "chain"),
    [
        ({"b": ["a"]}, "a", "b", "b ← a"),  # two agents feeding each other
        ({"b": ["a"], "c": ["b"]}, "a", "c", "c ← b ← a"),  # a longer way round
        ({"b": ["a"], "c": ["b"], "d": ["c", "x"]}, "b", "d", "d ← c ← b"),  # from the middle
    ],
)
def test_an_edge_that_closes_a_cycle_is_refused_with_the_way_round(
    make_agent, edges, consumer, producer, chain
):
    agents = {rid: make_agent(rid) for rid in "abcdx"}
    for rid, inputs in edges.items():
        agents[rid].inputs_from.set([agents[p] for p in inputs])
    version = Agent.objects.get(pk=consumer).config_version
    with pytest.raises(InvalidInput) as refused:
        services.update_agent(consumer, {"inputs_from": [producer]})
    assert refused.value.errors[0]["reason"] == (
        f"Agent {consumer} cannot take input from {producer}: {producer} already depends on "
        f"{consumer} ({chain}), so the edge would make a cycle."
    )
    assert sorted(agents[consumer].inputs_from.values_list("agent_id", flat=True)) == sorted(
        edges.get(consumer, [])
    )
    assert Agent.objects.get(pk=consumer).config_version == version


def test_an_edge_that_makes_no_cycle_is_stored(make_agent):
    for rid in "abc":
        make_agent(rid)
    Agent.objects.get(pk="b").inputs_from.set(["a"])
    services.update_agent("c", {"inputs_from": ["a", "b"]})  # a diamond is not a cycle
    assert sorted(Agent.objects.get(pk="c").inputs_from.values_list("agent_id", flat=True)) == ["a", "b"]


def test_an_unknown_input_or_field_is_refused_and_changes_nothing(make_agent):
    make_agent("feed")
    with pytest.raises(InvalidInput, match="There is no agent with id 'ghost'"):
        services.update_agent("feed", {"inputs_from": ["ghost"], "name": "New"})
    with pytest.raises(InvalidInput, match="status: This field cannot be changed here"):
        services.update_agent("feed", {"status": Status.RUNNING})
    assert Agent.objects.get(pk="feed").name == "Feed"


def test_an_agent_edit_writes_only_what_changed_audits_and_mirrors(
    make_agent, operator, redis_client, django_capture_on_commit_callbacks
):
    agent = make_agent("feed")
    Agent.objects.filter(pk="feed").update(desired_state=Desired.RUNNING, status=Status.RUNNING, run_id="r1")
    with django_capture_on_commit_callbacks(execute=True):
        done = services.update_agent("feed", {"symbols": ["ETH-USD"], "name": "Feed"}, user=operator)
    assert done.changed == ["symbols"]
    assert done.row.config_version == agent.config_version + 1
    assert redis_client.hgetall(keys.flags("agent", "feed")) == {
        "desired": Desired.RUNNING,
        "run_id": "r1",
        "config_rev": str(agent.config_version + 1),
    }
    entry = LogEntry.objects.get()
    assert (entry.user, entry.message) == (operator, "operator changed symbols of agent feed")
    # The same again changes nothing, and says nothing.
    assert services.update_agent("feed", {"symbols": ["ETH-USD"]}).changed == []
    assert LogEntry.objects.count() == 1


def test_a_session_edit_is_audited_and_says_when_a_restart_is_needed(make_agent, operator):
    make_agent("decider", kind="decision", role="decision")
    make_agent("first", kind="decision", role="decision")
    make_agent("broker", kind="execution", role="execution")
    session = TradingSession.objects.create(
        session_id="alpha",
        name="Alpha",
        starting_cash=Decimal(1000),
        symbols=["BTC-USD"],
        decision_agent_id="first",
        execution_agent_id="broker",
    )
    TradingSession.objects.filter(pk="alpha").update(status=Status.RUNNING, desired_state=Desired.RUNNING)
    applied = services.update_session("alpha", {"max_orders_per_minute": 3}, user=operator)
    assert (applied.changed, applied.note) == (["max_orders_per_minute"], "")
    waits = services.update_session("alpha", {"decision_agent": "decider", "name": "Alpha"}, user=operator)
    assert waits.changed == ["decision_agent"]
    assert waits.note == (
        "Session alpha is running: the change to decision_agent applies when it is stopped and started again."
    )
    assert [e.message for e in LogEntry.objects.order_by("id")] == [
        "operator changed max_orders_per_minute of session alpha",
        "operator changed decision_agent of session alpha",
    ]
    with pytest.raises(InvalidInput, match="max_orders_per_minute"):
        services.update_session("alpha", {"max_orders_per_minute": 0})
    with pytest.raises(InvalidInput, match="cash: This field cannot be changed here"):
        services.update_session("alpha", {"cash": 5})
    saved = TradingSession.objects.get(pk="alpha")
    assert (saved.max_orders_per_minute, saved.cash) == (3, session.cash)

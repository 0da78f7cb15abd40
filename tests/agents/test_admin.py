"""The agent admin: config validated per kind, observed state never overwritten, actions."""

import json

import pytest

from agents.models import Agent, LogEntry
from agents.runtime import keys
from agents.states import Desired, Status
from control import services
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def form_data(agent: Agent, **overrides) -> dict:
    data = {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "kind": agent.kind,
        "role": agent.role,
        "enabled": "on",
        "symbols": '["BTC-USD"]',
        "config": '{"source": "simulated", "tick_seconds": 1}',
        "position_x": "",
        "position_y": "",
    }
    data.update(overrides)
    return data


def test_a_wrong_config_is_refused_with_the_field_and_the_reason(admin_client, make_agent):
    agent = make_agent()
    response = admin_client.post(
        f"/admin/agents/agent/{agent.pk}/change/", form_data(agent, config='{"annual_volatility": -1}')
    )
    assert response.status_code == 200  # the form again, with the error
    assert "annual_volatility: Input should be greater than 0" in response.content.decode()
    assert Agent.objects.get(pk=agent.pk).config == agent.config


def test_saving_the_form_does_not_overwrite_what_the_loop_wrote(admin_client, make_agent):
    agent = make_agent()
    # The loop writes while the form is open.
    Agent.objects.filter(pk=agent.pk).update(
        status=Status.RUNNING, desired_state=Desired.RUNNING, run_id="r1"
    )
    response = admin_client.post(f"/admin/agents/agent/{agent.pk}/change/", form_data(agent, name="Renamed"))
    assert response.status_code == 302
    saved = Agent.objects.get(pk=agent.pk)
    assert (saved.name, saved.status, saved.run_id) == ("Renamed", Status.RUNNING, "r1")


def test_a_config_change_bumps_the_version_the_loop_watches(admin_client, make_agent):
    agent = make_agent()
    admin_client.post(
        f"/admin/agents/agent/{agent.pk}/change/",
        form_data(agent, config='{"source": "simulated", "tick_seconds": 2}'),
    )
    saved = Agent.objects.get(pk=agent.pk)
    assert saved.config["tick_seconds"] == 2 and saved.config_version == agent.config_version + 1


def test_start_and_stop_actions_go_through_the_services(admin_client, make_agent):
    agent = make_agent()
    admin_client.post("/admin/agents/agent/", {"action": "start_agents", "_selected_action": [agent.pk]})
    started = Agent.objects.get(pk=agent.pk)
    assert (started.desired_state, started.status) == (Desired.RUNNING, Status.STARTING)
    admin_client.post("/admin/agents/agent/", {"action": "stop_agents", "_selected_action": [agent.pk]})
    assert Agent.objects.get(pk=agent.pk).desired_state == Desired.STOPPED


# --- every edit through control.services: audited, announced, graph rules ------------


def test_an_admin_edit_is_audited_with_the_user_and_shown_in_the_activity_feed(
    admin_client, admin_user, make_agent
):
    agent = make_agent()
    response = admin_client.post(
        f"/admin/agents/agent/{agent.pk}/change/",
        form_data(agent, symbols='["ETH-USD"]', name="Renamed", config=json.dumps(agent.config)),
    )
    assert response.status_code == 302
    entry = LogEntry.objects.filter(agent_id=agent.pk, source="control").get()
    assert entry.user == admin_user
    assert entry.message == f"{admin_user.username} changed name, symbols of agent {agent.pk}"
    assert entry.message in admin_client.get("/ui/feed").content.decode()


def test_an_admin_edit_of_symbols_or_inputs_moves_the_version_and_the_flags(
    admin_client, make_agent, redis_client, django_capture_on_commit_callbacks
):
    """What a running loop watches (agents.runtime.loop): config_rev in its flags."""
    feed, other = make_agent("feed"), make_agent("other")
    Agent.objects.filter(pk=feed.pk).update(desired_state=Desired.RUNNING, status=Status.RUNNING, run_id="r1")
    version = feed.config_version
    posted = {"config": json.dumps(feed.config)}  # each post sends the whole form
    for change, expected in (
        ({"symbols": '["ETH-USD"]'}, version + 1),
        ({"inputs_from": [other.pk]}, version + 2),
        ({"name": "Just a name"}, version + 2),  # nothing for the loop to rebuild
    ):
        posted.update(change)
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(f"/admin/agents/agent/{feed.pk}/change/", form_data(feed, **posted))
        assert response.status_code == 302, response.content.decode()[:2000]
        assert Agent.objects.get(pk=feed.pk).config_version == expected
        flags = redis_client.hgetall(keys.flags("agent", feed.pk))
        assert flags == {"desired": Desired.RUNNING, "run_id": "r1", "config_rev": str(expected)}
    assert list(feed.inputs_from.values_list("agent_id", flat=True)) == [other.pk]


def test_an_agent_cannot_be_its_own_input_in_the_admin(admin_client, make_agent):
    agent = make_agent()
    response = admin_client.post(
        f"/admin/agents/agent/{agent.pk}/change/", form_data(agent, inputs_from=[agent.pk])
    )
    assert response.status_code == 200
    assert f"Agent {agent.pk} cannot be among its own inputs." in response.content.decode()
    assert not agent.inputs_from.exists()
    assert not LogEntry.objects.filter(source="control").exists()


def test_an_edge_that_closes_a_cycle_is_refused_in_the_admin(admin_client, make_agent):
    a, b, c = make_agent("a"), make_agent("b"), make_agent("c")
    b.inputs_from.set([a])  # a -> b -> c
    c.inputs_from.set([b])
    response = admin_client.post(f"/admin/agents/agent/{a.pk}/change/", form_data(a, inputs_from=[c.pk]))
    assert response.status_code == 200
    assert (
        "Agent a cannot take input from c: c already depends on a (c ← b ← a), "
        "so the edge would make a cycle." in response.content.decode()
    )
    assert not a.inputs_from.exists()


def test_a_new_agent_in_the_admin_is_audited(admin_client, admin_user):
    draft = Agent(agent_id="fresh", name="Fresh", kind="market_data", role="data_feed")
    response = admin_client.post("/admin/agents/agent/add/", form_data(draft))
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = LogEntry.objects.get(agent_id="fresh", source="control")
    assert entry.user == admin_user and "created agent fresh" in entry.message


def test_an_admin_edit_reaches_a_running_loop_in_a_real_worker(
    celery_worker, admin_client, make_agent, redis_client
):
    """Symbols and inputs changed in the admin: the running loops reload and use them,
    in the same run (no restart)."""
    fast = {"source": "simulated", "tick_seconds": 0.1}
    feed = make_agent("feed", symbols=["BTC-USD"], config=fast)
    tech = make_agent("tech", kind="technical", role="specialized_technical", config={"tick_seconds": 0.1})
    for agent in (feed, tech):
        services.start_agent(agent.agent_id)
    wait_for(lambda: Agent.objects.filter(status=Status.RUNNING).count() == 2, what="both loops running")
    runs = dict(Agent.objects.values_list("agent_id", "run_id"))

    def bar_symbols() -> set[str]:
        entries = redis_client.xrevrange(keys.stream("agent", "feed"), count=5)
        return {json.loads(fields["data"]).get("symbol") for _id, fields in entries}

    wait_for(lambda: bar_symbols() == {"BTC-USD"}, what="the feed to publish")
    edits = {
        feed: {"symbols": '["ETH-USD"]', "config": json.dumps(fast)},
        tech: {"symbols": '["ETH-USD"]', "config": '{"tick_seconds": 0.1}', "inputs_from": [feed.pk]},
    }
    for agent, change in edits.items():
        response = admin_client.post(f"/admin/agents/agent/{agent.pk}/change/", form_data(agent, **change))
        assert response.status_code == 302, response.content.decode()[:2000]
    wait_for(lambda: bar_symbols() == {"ETH-USD"}, what="the running feed to publish its new symbol")
    wait_for(
        lambda: int(redis_client.hget(keys.metrics("agent", "tech"), "in.feed") or 0) > 0,
        what="the running technical agent to read its new input",
    )
    assert dict(Agent.objects.values_list("agent_id", "run_id")) == runs


def test_the_agent_id_cannot_be_changed_in_the_admin(admin_client, make_agent):
    """The id is the key sessions and edges point at: read-only once the agent exists (a
    rename answered 500, FOREIGN KEY constraint failed)."""
    agent = make_agent()
    page = admin_client.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode()
    assert 'name="agent_id"' not in page
    response = admin_client.post(
        f"/admin/agents/agent/{agent.pk}/change/", form_data(agent, agent_id="renamed", name="Renamed")
    )
    assert response.status_code == 302
    assert list(Agent.objects.values_list("agent_id", "name")) == [(agent.pk, "Renamed")]
    assert 'name="agent_id"' in admin_client.get("/admin/agents/agent/add/").content.decode()

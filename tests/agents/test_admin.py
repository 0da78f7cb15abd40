"""The agent admin: config validated per kind, observed state never overwritten, actions."""

import pytest

from agents.models import Agent
from agents.states import Desired, Status

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

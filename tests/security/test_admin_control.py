"""The admin follows the API's rule: changing an agent or a session needs the `control`
permission, whatever model permissions a staff user holds (control.auth.may_control).
A staff user without it sees the admin pages read-only; every change, delete, add and
action is refused and changes nothing."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from agents.models import Agent
from sessions.models import TradingSession
from tests.security.conftest import desired_states

pytestmark = pytest.mark.django_db

MODEL_PERMISSIONS = [
    f"{action}_{model}"
    for action in ("view", "add", "change", "delete")
    for model in ("agent", "tradingsession")
]


def staff(django_user_model, name: str, *, control: bool):
    user = django_user_model.objects.create_user(name, password=f"pw-{name}", is_staff=True)
    codenames = [*MODEL_PERMISSIONS, *(["control"] if control else [])]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_without_control(django_user_model) -> Client:
    return staff(django_user_model, "clerk", control=False)


@pytest.fixture
def staff_with_control(django_user_model) -> Client:
    return staff(django_user_model, "chief", control=True)


def agent_form(agent: Agent, **changes) -> dict:
    data = {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "kind": agent.kind,
        "role": agent.role,
        "enabled": "on" if agent.enabled else "",
        "symbols": json.dumps(agent.symbols),
        "config": json.dumps(agent.config),
        "position_x": "",
        "position_y": "",
        "_save": "Save",
    }
    data.update(changes)
    return data


AGENT_URL = "/admin/agents/agent/feed/change/"


def test_the_change_page_is_read_only_without_control(graph, staff_without_control):
    response = staff_without_control.get(AGENT_URL)
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    assert 'name="config"' not in response.content.decode()


def test_changing_a_running_agents_config_is_refused_without_control(graph, staff_without_control):
    feed = graph["feed"]
    feed.desired_state = "running"
    feed.save()
    before = Agent.objects.get(pk="feed").config, Agent.objects.get(pk="feed").config_version
    changed = {**feed.config, "tick_seconds": 5}
    response = staff_without_control.post(AGENT_URL, agent_form(feed, config=json.dumps(changed)))
    assert response.status_code == 403
    after = Agent.objects.get(pk="feed")
    assert (after.config, after.config_version) == before


def test_the_same_change_works_with_control(graph, staff_with_control):
    feed = graph["feed"]
    changed = {**feed.config, "tick_seconds": 5}
    response = staff_with_control.post(AGENT_URL, agent_form(feed, config=json.dumps(changed)))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Agent.objects.get(pk="feed").config["tick_seconds"] == 5


@pytest.mark.parametrize(
    "url",
    [
        "/admin/agents/agent/feed/delete/",
        "/admin/trading_sessions/tradingsession/{session}/delete/",
        "/admin/agents/agent/add/",
        "/admin/trading_sessions/tradingsession/add/",
    ],
)
def test_delete_and_add_are_refused_without_control(graph, staff_without_control, url):
    url = url.format(session=graph["session"].session_id)
    assert staff_without_control.get(url).status_code == 403
    assert staff_without_control.post(url, {"post": "yes"}).status_code == 403
    assert Agent.objects.filter(pk="feed").exists()
    assert TradingSession.objects.filter(pk=graph["session"].pk).exists()


def test_a_sessions_change_is_refused_without_control(graph, staff_without_control):
    session = graph["session"]
    url = f"/admin/trading_sessions/tradingsession/{session.session_id}/change/"
    page = staff_without_control.get(url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    response = staff_without_control.post(url, {"name": "Renamed", "_save": "Save"})
    assert response.status_code == 403
    assert TradingSession.objects.get(pk=session.pk).name == "Runner"


@pytest.mark.parametrize("action", ["start_agents", "stop_agents", "delete_selected"])
def test_list_actions_are_refused_without_control(graph, staff_without_control, action):
    before = desired_states()
    listing = staff_without_control.get("/admin/agents/agent/")
    assert listing.status_code == 200
    assert f'value="{action}"' not in listing.content.decode()
    staff_without_control.post(
        "/admin/agents/agent/", {"action": action, "_selected_action": ["feed"], "post": "yes"}
    )
    assert desired_states() == before
    assert Agent.objects.filter(pk="feed").exists()


def test_list_actions_are_offered_with_control(graph, staff_with_control):
    listing = staff_with_control.get("/admin/agents/agent/").content.decode()
    assert 'value="start_agents"' in listing and 'value="stop_agents"' in listing


def test_a_token_cannot_be_moved_to_another_account(graph, operator, django_user_model):
    from control.models import ApiToken

    token, _ = ApiToken.issue(operator)
    admin = django_user_model.objects.create_superuser("root", password="pw-root")
    client = Client()
    client.force_login(admin)
    url = f"/admin/control/apitoken/{token.pk}/change/"
    assert 'name="user"' not in client.get(url).content.decode()
    client.post(url, {"user": admin.pk, "_save": "Save"})
    assert ApiToken.objects.get(pk=token.pk).user_id == operator.pk

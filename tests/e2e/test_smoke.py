"""The browser, the live stack and the login form work together (the ground e2e tests stand on)."""

import re

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from agents.states import Status
from control import services
from control.demo import DEMO_AGENTS, seed_agents
from tests.conftest import wait_for
from tests.e2e.conftest import server_env
from tests.e2e.stack import DaphneServer, ServerError

LOGIN_URL = re.compile(r"/login/(\?next=/)?$")


def test_an_anonymous_visit_is_sent_to_the_login_form(page, live_stack):
    page.goto("/")

    expect(page).to_have_url(f"{live_stack.url}/login/?next=/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)


def test_an_operator_logs_in_through_the_form_sees_the_agents_and_logs_out(logged_in_page, live_stack):
    page = logged_in_page
    seed_agents()  # committed: the server is another process

    page.reload()
    expect(page).to_have_url(f"{live_stack.url}/")
    expect(page.locator("nav")).to_contain_text("operator")
    expect(page.get_by_role("heading", name="Agents")).to_be_visible()
    cards = page.locator(".agent-card")
    expect(cards).to_have_count(len(DEMO_AGENTS))
    for spec in DEMO_AGENTS:
        card = page.locator(f"#agent-{spec['agent_id']}")
        expect(card).to_contain_text(spec["name"])
        expect(card.locator(".status-badge")).to_have_text("stopped")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(LOGIN_URL)
    page.goto("/")
    expect(page).to_have_url(f"{live_stack.url}/login/?next=/")


def test_agents_started_on_the_stack_show_running_in_the_browser(logged_in_page, live_stack):
    """The live stack's worker runs the loops the control plane starts."""
    seed_agents()
    services.start_system()
    wait_for(
        lambda: Agent.objects.filter(status=Status.RUNNING).count() == len(DEMO_AGENTS),
        timeout=30,
        what="every demo agent to run on the stack's worker",
    )

    logged_in_page.reload()
    statuses = logged_in_page.locator(".agent-card .status-badge")
    expect(statuses).to_have_text(["running"] * len(DEMO_AGENTS))
    expect(logged_in_page.locator("#system-panel [data-stat=agents]")).to_have_text(
        f"{len(DEMO_AGENTS)}/{len(DEMO_AGENTS)}"
    )


@pytest.mark.django_db(transaction=True)
def test_a_server_that_cannot_start_fails_with_its_output(tmp_path):
    env = {**server_env(), "DJANGO_SETTINGS_MODULE": "tests.e2e.no_such_settings"}
    server = DaphneServer(env, tmp_path / "daphne.log")

    missing = "No module named 'tests.e2e.no_such_settings'"
    with pytest.raises(ServerError, match=f"(?s)exited with code.*{re.escape(missing)}"):
        server.start(timeout=30)
    assert server.proc is not None and server.proc.poll() is not None

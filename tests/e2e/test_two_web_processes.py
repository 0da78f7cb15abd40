"""Several web processes behind one address: a socket on each gets every push.

Two daphne processes on the same database and Redis (two ports stand for two processes
behind one load balancer), a page open on each. Each process runs its own live hub: it
hears announced changes on Redis pub/sub and reads the database itself, so nothing has to
pass between the processes for both pages to follow a change.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from agents.runtime import lifecycle
from agents.states import Status
from control.demo import seed_agents
from tests.e2e.conftest import server_env
from tests.e2e.stack import DaphneServer

LIVE = 10_000  # ms
AGENT = "market_data_sim"


@pytest.fixture
def second_server(live_stack, tmp_path):
    """A second daphne on the same database, Redis keys and folders as live_stack's."""
    server = DaphneServer(server_env(), tmp_path / "daphne-2.log").start()
    try:
        yield server
    finally:
        server.stop()
        print(f"--- second daphne output ({server.log_path}) ---\n{server.output()[-6000:]}")


def test_a_change_reaches_a_socket_on_each_web_process(live_stack, second_server, logged_in_page):
    seed_agents()
    assert second_server.port != live_stack.server.port
    first = logged_in_page
    first.goto("/")
    # The same browser, so the same login (one database holds the session for both).
    second = first.context.new_page()
    second.goto(f"{second_server.url}/")
    pages = (first, second)
    for page in pages:
        expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)

    # An announced state change (what a loop or a person's action publishes).
    Agent.objects.filter(pk=AGENT).update(status=Status.ERROR, error_message="feed lost")
    lifecycle.announce("agent", AGENT)
    for page in pages:
        expect(page.locator(f"#agent-{AGENT} .status-badge")).to_have_text("error", timeout=LIVE)

    # A change nobody announces (found by each process's own periodic read).
    Agent.objects.filter(pk=AGENT).update(name="Market, renamed")
    for page in pages:
        expect(page.locator(f"#agent-{AGENT} h4")).to_have_text("Market, renamed", timeout=LIVE)

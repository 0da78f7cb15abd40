"""What a loop goes through besides its status, in Chromium (issue 10, items 2 and 20): a
loop that stopped ticking is shown "stale: no heartbeat for N s" on its card and row, the
system panel says so instead of offering Start system; a loop waiting out a database
outage is shown "waiting for the database since ...", until it answers again."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from agents.runtime import keys
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from sessions.models import TradingSession

LIVE = 10_000  # ms: a pushed change shows within a sweep


@pytest.fixture
def loops(make_agent, live_stack):
    """Rows wanted running whose loops are not in this test's worker: their Redis
    heartbeats and live metrics are written here, as their loops would."""
    make_agent("ln_frozen", desired_state=Desired.RUNNING, status=Status.RUNNING)
    TradingSession.objects.create(
        session_id="ln_waiting",
        name="LN waiting",
        symbols=["BTC-USD"],
        starting_cash="10000",
        desired_state=Desired.RUNNING,
        status=Status.RUNNING,
    )
    client = get_redis()
    client.set(keys.heartbeat("agent", "ln_frozen"), str(time.time() - 120))
    client.set(keys.heartbeat("session", "ln_waiting"), str(time.time()))
    client.hset(
        keys.metrics("session", "ln_waiting"),
        mapping={"waiting_for": "database", "waiting_since": str(time.time() - 30)},
    )


def test_a_stale_loop_and_a_loop_waiting_for_the_database_are_shown_as_such(loops, logged_in_page):
    page = logged_in_page
    card = page.locator("#agent-ln_frozen")
    expect(card).to_contain_text("running")
    expect(card).to_contain_text(re.compile(r"stale: no heartbeat for \d+ s"))
    panel = page.locator("#system-panel")
    expect(panel).to_contain_text("Stale heartbeat")
    expect(panel.locator('[data-action="system-start"]')).to_have_count(0)
    row = page.locator("#session-ln_waiting")
    expect(row).to_contain_text("running")
    expect(row).to_contain_text(re.compile(r"waiting for the database since \d+ s ago"))

    # The database answers again (the loop clears its wait): the note goes with the next push.
    client = get_redis()
    client.hset(keys.metrics("session", "ln_waiting"), mapping={"waiting_for": "", "waiting_since": "0"})
    TradingSession.objects.filter(pk="ln_waiting").update(name="LN back")  # a change the hub pushes
    expect(row).to_contain_text("LN back", timeout=LIVE)
    expect(row).not_to_contain_text("waiting for", timeout=LIVE)

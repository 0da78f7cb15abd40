"""Live pushes in real Chromium: they keep the keyboard focus where the person put it,
leave alone what did not change, and follow the activity feed's filters."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from agents.states import Desired
from control import services
from control.demo import seed_agents, seed_sessions
from sessions.models import TradingSession
from tests.conftest import wait_for
from tests.e2e.test_panel import running_everywhere

LIVE = 10_000  # ms

# Counts the parts the socket pushed, by dom id, before htmx swaps them in.
COUNT_PUSHES = """
window.__pushes = {};
document.addEventListener("htmx:wsBeforeMessage", function (e) {
  var m = /^\\s*<\\w+ id="([^"]+)"/.exec(e.detail.message);
  if (m) window.__pushes[m[1]] = (window.__pushes[m[1]] || 0) + 1;
});
"""


@pytest.fixture
def demo(live_stack):
    seed_agents()
    seed_sessions()


@pytest.fixture
def live_page(demo, logged_in_page):
    """The main page of a running demo, counting pushes (window.__pushes)."""
    services.start_system()
    running_everywhere()
    page = logged_in_page
    page.add_init_script(script=COUNT_PUSHES)
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    return page


def pushes(page, dom_id: str) -> int:
    return page.evaluate("id => window.__pushes[id] || 0", dom_id)


def remember_focus(page) -> None:
    page.evaluate("() => { window.__focused = document.activeElement; }")


def focus_kept(page) -> bool:
    return page.evaluate("() => document.activeElement === window.__focused && window.__focused.isConnected")


def test_the_focused_stop_button_of_a_card_keeps_the_focus_through_pushes(live_page):
    page = live_page
    card = page.locator("#agent-market_data_sim")
    stop = card.get_by_role("button", name="Stop agent")
    stop.focus()
    remember_focus(page)
    first = pushes(page, "agent-market_data_sim")
    # Visible changes (a new name each time), each pushed and shown while the button has
    # the focus; the prices on the card change every second besides.
    for i in range(3):
        Agent.objects.filter(pk="market_data_sim").update(name=f"Market, renamed {i}")
        expect(card.locator("h4")).to_have_text(f"Market, renamed {i}", timeout=LIVE)
    assert pushes(page, "agent-market_data_sim") >= first + 3
    assert focus_kept(page), page.evaluate("() => document.activeElement.outerHTML.slice(0, 200)")
    page.keyboard.press("Enter")
    wait_for(
        lambda: Agent.objects.get(pk="market_data_sim").desired_state == Desired.STOPPED,
        what="Enter on the focused Stop button to stop the agent",
    )
    expect(card.locator(".status-badge")).to_have_text("stopped", timeout=LIVE)


def test_the_focused_pause_button_of_a_session_row_keeps_the_focus_through_pushes(live_page):
    page = live_page
    row = page.locator("#session-btc-strategy-test")
    row.get_by_role("button", name="Pause session").focus()
    remember_focus(page)
    first = pushes(page, "session-btc-strategy-test")
    for i in range(3):
        TradingSession.objects.filter(pk="btc-strategy-test").update(name=f"BTC, renamed {i}")
        expect(row.locator("th a")).to_have_text(f"BTC, renamed {i}", timeout=LIVE)
    assert pushes(page, "session-btc-strategy-test") >= first + 3
    assert focus_kept(page), page.evaluate("() => document.activeElement.outerHTML.slice(0, 200)")
    page.keyboard.press("Enter")
    wait_for(
        lambda: TradingSession.objects.get(pk="btc-strategy-test").desired_state == Desired.PAUSED,
        what="Enter on the focused Pause button to pause the session",
    )
    expect(row.locator(".status-badge")).to_have_text("paused", timeout=LIVE)

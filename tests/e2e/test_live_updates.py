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


def test_after_stopping_an_agent_with_the_keyboard_its_start_button_has_the_focus(live_page):
    """Stop becomes Start (another button): the focus goes to it, not to <body>, and a
    second Enter undoes the first."""
    page = live_page
    card = page.locator("#agent-market_data_sim")
    card.get_by_role("button", name="Stop agent").focus()
    page.keyboard.press("Enter")
    wait_for(
        lambda: Agent.objects.get(pk="market_data_sim").desired_state == Desired.STOPPED,
        what="Enter on the focused Stop button to stop the agent",
    )
    start = card.get_by_role("button", name="Start agent")
    expect(start).to_be_enabled(timeout=LIVE)
    expect(start).to_be_focused(timeout=LIVE)
    assert page.evaluate("() => document.activeElement.dataset.action") == "start"
    page.keyboard.press("Enter")
    wait_for(
        lambda: Agent.objects.get(pk="market_data_sim").desired_state == Desired.RUNNING,
        what="a second Enter, on the Start button, to start the agent again",
    )
    expect(card.get_by_role("button", name="Stop agent")).to_be_focused(timeout=LIVE)


def test_after_pausing_a_session_with_the_keyboard_its_resume_button_has_the_focus(live_page):
    page = live_page
    row = page.locator("#session-btc-strategy-test")
    row.get_by_role("button", name="Pause session").focus()
    page.keyboard.press("Enter")
    wait_for(
        lambda: TradingSession.objects.get(pk="btc-strategy-test").desired_state == Desired.PAUSED,
        what="Enter on the focused Pause button to pause the session",
    )
    resume = row.get_by_role("button", name="Resume session")
    expect(resume).to_be_focused(timeout=LIVE)
    page.keyboard.press("Enter")
    wait_for(
        lambda: TradingSession.objects.get(pk="btc-strategy-test").desired_state == Desired.RUNNING,
        what="a second Enter, on the Resume button, to resume the session",
    )
    expect(row.get_by_role("button", name="Pause session")).to_be_focused(timeout=LIVE)


def test_after_stopping_a_session_with_the_keyboard_its_start_button_has_the_focus(live_page):
    page = live_page
    row = page.locator("#session-btc-strategy-test")
    row.get_by_role("button", name="Stop session").focus()
    page.keyboard.press("Enter")
    start = row.get_by_role("button", name="Start session")
    expect(start).to_be_focused(timeout=LIVE)
    page.keyboard.press("Enter")
    wait_for(
        lambda: TradingSession.objects.get(pk="btc-strategy-test").desired_state == Desired.RUNNING,
        what="a second Enter, on the Start button, to start the session again",
    )
    expect(row.get_by_role("button", name="Stop session")).to_be_focused(timeout=LIVE)


def test_without_the_live_socket_the_answer_of_the_action_hands_the_focus_on(demo, logged_in_page):
    """With no socket the action's own answer is swapped in: the same rule applies to it."""
    services.start_system()
    running_everywhere()
    page = logged_in_page
    page.route_web_socket("**/ws/control/", lambda ws: ws.close())  # never reaches the server
    page.goto("/")
    row = page.locator("#session-btc-strategy-test")
    row.get_by_role("button", name="Pause session").focus()
    page.keyboard.press("Enter")
    expect(row.get_by_role("button", name="Resume session")).to_be_focused(timeout=LIVE)
    page.keyboard.press("Enter")
    wait_for(
        lambda: TradingSession.objects.get(pk="btc-strategy-test").desired_state == Desired.RUNNING,
        what="a second Enter, on the Resume button, to resume the session",
    )


def test_a_click_elsewhere_while_an_action_runs_is_not_undone_by_its_answer(live_page):
    """The focus goes back only when the swap took it: a person who moved on is left alone."""
    page = live_page
    card = page.locator("#agent-market_data_sim")
    card.get_by_role("button", name="Stop agent").focus()
    page.keyboard.press("Enter")
    page.locator("h1").first.click()  # away from any control: the focus goes to <body>
    expect(card.get_by_role("button", name="Start agent")).to_be_visible(timeout=LIVE)
    # Pushes of the card after that (visible changes) do not take the focus back.
    for i in range(2):
        Agent.objects.filter(pk="market_data_sim").update(name=f"Market, renamed {i}")
        expect(card.locator("h4")).to_have_text(f"Market, renamed {i}", timeout=LIVE)
    assert page.evaluate("() => document.activeElement === document.body")


# Records changes to a node's subtree, except the relative times the page ticks itself.
WATCH = """id => {
  var node = document.getElementById(id);
  node.__watched = true;
  window.__mutations = window.__mutations || {};
  window.__mutations[id] = [];
  new MutationObserver(function (records) {
    records.forEach(function (r) {
      var el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (el && el.closest("time[data-ago]")) return;
      window.__mutations[id].push(r.type + " " + (el ? el.tagName : "?") + " " + (r.attributeName || ""));
    });
  }).observe(node, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def test_a_row_whose_content_did_not_change_is_not_re_rendered_while_another_changes(demo, logged_in_page):
    # No trades (thresholds out of reach): the ETH session's row shows the same numbers
    # while its loop steps and its heartbeat moves every second. (Cards: every running
    # card here shows prices or log lines that do change; tests/control/test_live.py
    # checks a card's heartbeat, counters and status time do not push it.)
    Agent.objects.filter(pk="decision_main").update(
        config={"tick_seconds": 1.0, "buy_threshold": 0.99, "sell_threshold": -0.99}
    )
    services.start_system()
    running_everywhere()
    page = logged_in_page
    page.add_init_script(script=COUNT_PUSHES)
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    quiet = "session-eth-sentiment-analysis"
    page.evaluate(WATCH, quiet)
    first = pushes(page, quiet)
    beat = TradingSession.objects.get(pk="eth-sentiment-analysis").last_heartbeat
    row = page.locator("#session-btc-strategy-test")
    for i in range(3):
        TradingSession.objects.filter(pk="btc-strategy-test").update(name=f"BTC, renamed {i}")
        expect(row.locator("th a")).to_have_text(f"BTC, renamed {i}", timeout=LIVE)
    wait_for(
        lambda: TradingSession.objects.get(pk="eth-sentiment-analysis").last_heartbeat != beat,
        what="the quiet session's heartbeat to move",
    )
    expect(row.locator("th a")).to_have_text("BTC, renamed 2")
    assert pushes(page, quiet) == first
    assert page.evaluate("id => document.getElementById(id).__watched === true", quiet)
    assert page.evaluate("id => window.__mutations[id]", quiet) == []


def test_a_button_held_down_through_pushes_still_clicks_when_released(live_page):
    page = live_page
    card = page.locator("#agent-market_data_sim")
    box = card.get_by_role("button", name="Stop agent").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    for i in range(2):
        Agent.objects.filter(pk="market_data_sim").update(name=f"Market, renamed {i}")
        expect(card.locator("h4")).to_have_text(f"Market, renamed {i}", timeout=LIVE)
    page.mouse.up()  # a click only if press and release were on the same button
    wait_for(
        lambda: Agent.objects.get(pk="market_data_sim").desired_state == Desired.STOPPED,
        what="the released button to stop the agent",
    )


def test_a_text_selection_in_a_session_row_survives_pushes(live_page):
    # (Cards are draggable for an operator, and Chromium selects no text in those.)
    page = live_page
    row = page.locator("#session-btc-strategy-test")
    symbols = "#session-btc-strategy-test th .small"
    page.evaluate(
        """selector => {
          var range = document.createRange();
          range.selectNodeContents(document.querySelector(selector));
          window.getSelection().removeAllRanges();
          window.getSelection().addRange(range);
        }""",
        symbols,
    )
    assert page.evaluate("() => window.getSelection().toString()") == "BTC-USD"
    first = pushes(page, "session-btc-strategy-test")
    for i in range(3):
        TradingSession.objects.filter(pk="btc-strategy-test").update(name=f"BTC, renamed {i}")
        expect(row.locator("th a")).to_have_text(f"BTC, renamed {i}", timeout=LIVE)
    assert pushes(page, "session-btc-strategy-test") >= first + 3
    assert page.evaluate("() => window.getSelection().toString()") == "BTC-USD"

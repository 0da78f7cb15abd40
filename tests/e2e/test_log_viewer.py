"""The log viewer in a real browser: history, live lines, filters, clear messages.

Driven through its standalone page /system/agents/<id>/logs/view (the same modal and
script the main page includes). Lines are written from this process with
agents.runtime.logs.agent_logger(): the server and the worker share this run's LOG_DIR.
Agent ids are unique per test because LOG_DIR lives as long as the test session.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from agents.runtime.logs import agent_logger, log_path
from agents.states import Status
from control import services
from tests.conftest import wait_for

LIVE_ARRIVAL_MS = 10_000

# Records every WebSocket the page opens (window.__logSockets), to see them close.
TRACK_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__logSockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__logSockets.push(this); }
  };
})();
"""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def console_errors(page):
    """Console errors ("<text> @ <url>") and uncaught exceptions of the page.

    The browser's own request for /favicon.ico (the project serves none) is left out.
    """
    errors: list[str] = []

    def on_console(message) -> None:
        url = (message.location or {}).get("url", "")
        if message.type == "error" and not url.endswith("/favicon.ico"):
            errors.append(f"{message.text} @ {url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    return errors


def failed_loads_except(errors: list[str], *paths: str) -> list[str]:
    """`errors` without the failed loads (HTTP errors) of these paths, expected ones."""
    return [e for e in errors if not ("Failed to load resource" in e and e.endswith(paths))]


def viewer(page):
    return page.locator("#log-viewer")


def lines_box(page):
    return page.locator("#log-viewer [data-lv='lines']")


def open_viewer(page, agent_id: str) -> None:
    page.goto(f"/system/agents/{agent_id}/logs/view")
    # Bootstrap focuses the dialog once it is fully shown (its fade is over).
    expect(viewer(page)).to_be_focused()


def turn_live_on(page) -> None:
    page.get_by_label("Live").check()
    expect(viewer(page)).to_have_attribute("data-live", "open")


def test_history_of_a_running_agent_then_a_new_line_arrives_live(
    console_errors, logged_in_page, make_agent, live_stack
):
    page = logged_in_page
    agent_id = unique("feed")
    make_agent(agent_id)
    services.start_agent(agent_id)
    wait_for(
        lambda: Agent.objects.get(pk=agent_id).status == Status.RUNNING,
        timeout=30,
        what="the agent to run on the stack's worker",
    )
    path = log_path(agent_id)
    wait_for(lambda: path.exists() and path.stat().st_size > 0, timeout=30, what="the agent's first log line")

    open_viewer(page, agent_id)
    expect(page.locator("#log-viewer-title")).to_contain_text(agent_id)
    first = lines_box(page).locator(".lv-line").first
    expect(first).to_contain_text(f"agents.agent.{agent_id}")
    expect(page.get_by_role("link", name="Download")).to_have_attribute(
        "href", f"/system/agents/{agent_id}/logs?download=1"
    )

    page.evaluate("window.__notReloaded = true")
    turn_live_on(page)
    marker = f"live marker {uuid.uuid4().hex}"
    agent_logger(agent_id).warning("%s <b>not bold</b>", marker)

    arrived = lines_box(page).locator(".lv-line", has_text=marker)
    expect(arrived).to_have_count(1, timeout=LIVE_ARRIVAL_MS)
    expect(arrived).to_have_class(re.compile(r"\blv-WARNING\b"))
    # Inserted as text: the markup in the message is shown, not rendered.
    expect(arrived).to_contain_text("<b>not bold</b>")
    expect(lines_box(page).locator("b")).to_have_count(0)
    assert page.evaluate("window.__notReloaded") is True
    assert console_errors == []


def test_search_and_minimum_level_requery_the_endpoint(console_errors, logged_in_page, make_agent):
    page = logged_in_page
    agent_id = unique("quiet")
    make_agent(agent_id)
    log = agent_logger(agent_id)
    log.info("alpha one")
    log.warning("beta two")
    log.info("alpha three")
    log.error("alpha four failed")

    open_viewer(page, agent_id)
    box = lines_box(page)
    expect(box.locator(".lv-line")).to_have_count(4)
    expect(box.locator(".lv-ERROR")).to_contain_text("alpha four failed")

    page.get_by_label("Search").fill("ALPHA")
    expect(box.locator(".lv-line")).to_have_count(3)
    for text in box.locator(".lv-line").all_inner_texts():
        assert "alpha" in text

    page.get_by_label("Minimum level").select_option("WARNING")
    expect(box.locator(".lv-line")).to_have_text([re.compile("alpha four failed$")])

    page.get_by_label("Search").fill("nothing like this")
    expect(box).to_contain_text("No log lines match these filters.")

    page.get_by_label("Search").fill("")
    expect(box.locator(".lv-line")).to_have_text([re.compile("beta two$"), re.compile("alpha four failed$")])

    page.get_by_label("Lines to show").select_option("500")
    page.get_by_role("button", name="Refresh").click()
    expect(box.locator(".lv-line")).to_have_count(2)
    assert console_errors == []


def test_live_lines_follow_the_minimum_level(console_errors, logged_in_page, make_agent):
    page = logged_in_page
    page.add_init_script(TRACK_SOCKETS)
    agent_id = unique("levels")
    make_agent(agent_id)
    agent_logger(agent_id).info("history")
    open_viewer(page, agent_id)
    turn_live_on(page)

    # A filter change reopens the socket with the filter (the server filters live lines).
    page.get_by_label("Minimum level").select_option("WARNING")
    expect(viewer(page)).to_have_attribute("data-live", "open")
    assert page.evaluate("window.__logSockets.length") == 2
    expect(lines_box(page)).to_have_text("No log lines match these filters.")
    agent_logger(agent_id).info("quiet info")
    agent_logger(agent_id).warning("loud warning")
    # Written before the warning: had it passed, it would be there first.
    expect(lines_box(page).locator(".lv-line")).to_have_text([re.compile("loud warning$")])
    assert console_errors == []


def test_an_agent_without_a_log_says_so_and_live_waits_for_its_first_line(
    console_errors, logged_in_page, make_agent
):
    page = logged_in_page
    agent_id = unique("silent")
    make_agent(agent_id)

    open_viewer(page, agent_id)
    expect(viewer(page).get_by_role("status").filter(has_text="has not written a log yet")).to_have_text(
        f"Agent {agent_id} has not written a log yet."
    )
    expect(lines_box(page)).to_have_text("No log lines yet.")

    turn_live_on(page)
    agent_logger(agent_id).info("hello, first line")
    expect(lines_box(page).locator(".lv-line")).to_have_count(1, timeout=LIVE_ARRIVAL_MS)
    expect(lines_box(page)).to_contain_text("hello, first line")
    expect(lines_box(page)).not_to_contain_text("No log lines yet.")
    # The 404 of the first history fetch is the only console noise allowed here.
    assert failed_loads_except(console_errors, f"/system/agents/{agent_id}/logs?lines=100") == []


def test_an_unknown_agent_shows_the_endpoints_sentence(console_errors, logged_in_page):
    page = logged_in_page
    page.goto("/system/agents/no_such_agent/logs/view")

    expect(viewer(page).get_by_role("alert")).to_have_text("There is no agent with id 'no_such_agent'.")
    expect(page.get_by_label("Live")).to_be_disabled()
    expect(page.get_by_role("link", name="Download")).to_have_attribute("aria-disabled", "true")
    # The page itself answers 404 and the endpoint too; nothing else may go wrong.
    expected = ("/system/agents/no_such_agent/logs/view", "/system/agents/no_such_agent/logs?lines=100")
    assert failed_loads_except(console_errors, *expected) == []


def test_closing_the_viewer_closes_the_socket_and_a_dropped_socket_reconnects(
    console_errors, logged_in_page, make_agent
):
    page = logged_in_page
    page.add_init_script(TRACK_SOCKETS)
    agent_id = unique("tail")
    make_agent(agent_id)
    agent_logger(agent_id).info("history line")

    open_viewer(page, agent_id)
    turn_live_on(page)
    # The connection drops (not by the viewer): it reconnects by itself, with backoff.
    page.evaluate("window.__logSockets.at(-1).close()")
    expect(viewer(page)).to_have_attribute("data-live", "reconnecting")
    expect(viewer(page)).to_have_attribute("data-live", "open", timeout=LIVE_ARRIVAL_MS)
    assert page.evaluate("window.__logSockets.length") == 2
    agent_logger(agent_id).warning("after the reconnect")
    expect(lines_box(page)).to_contain_text("after the reconnect", timeout=LIVE_ARRIVAL_MS)

    page.keyboard.press("Escape")
    expect(viewer(page)).to_be_hidden()
    expect(viewer(page)).to_have_attribute("data-live", "off")
    page.wait_for_function("window.__logSockets.every(s => s.readyState === WebSocket.CLOSED)")
    # Focus goes back to what opened it.
    expect(page.get_by_role("button", name="View logs")).to_be_focused()

    # Re-opened from the page's button (delegated click), the live tail resumes.
    page.get_by_role("button", name="View logs").click()
    expect(viewer(page)).to_have_attribute("data-live", "open")
    assert console_errors == []


def test_auto_scroll_stops_when_scrolled_up_and_resumes_at_the_bottom(logged_in_page, make_agent):
    page = logged_in_page
    agent_id = unique("chatty")
    make_agent(agent_id)
    log = agent_logger(agent_id)
    for i in range(300):
        log.info("line %d", i)

    open_viewer(page, agent_id)
    expect(lines_box(page).locator(".lv-line")).to_have_count(100)
    autoscroll = page.get_by_label("Auto-scroll")
    expect(autoscroll).to_be_checked()
    distance_to_bottom = (
        "(b => b.scrollHeight - b.scrollTop - b.clientHeight)(document.querySelector('.lv-lines'))"
    )
    assert page.evaluate(distance_to_bottom) <= 8

    lines_box(page).hover()
    page.mouse.wheel(0, -400)
    expect(autoscroll).not_to_be_checked()
    page.mouse.wheel(0, 100_000)
    expect(autoscroll).to_be_checked()


def test_usable_on_a_375px_screen_and_from_the_keyboard(logged_in_page, make_agent):
    page = logged_in_page
    page.set_viewport_size({"width": 375, "height": 740})
    agent_id = unique("phone")
    make_agent(agent_id)
    agent_logger(agent_id).info("a line long enough to need wrapping on a phone " * 4)
    agent_logger(agent_id).info("a short one")

    open_viewer(page, agent_id)
    expect(lines_box(page).locator(".lv-line")).to_have_count(2)
    for label in ("Lines to show", "Minimum level", "Search", "Live", "Auto-scroll"):
        expect(page.get_by_label(label)).to_be_visible()
    expect(page.get_by_role("button", name="Refresh")).to_be_visible()
    expect(page.get_by_role("link", name="Download")).to_be_visible()
    overflow = page.evaluate(
        "(() => { const c = document.querySelector('#log-viewer .modal-content');"
        " return [c.scrollWidth, window.innerWidth]; })()"
    )
    assert overflow[0] <= overflow[1], overflow

    # Keyboard: from the lines select, Tab reaches the other controls in order.
    page.get_by_label("Lines to show").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Minimum level")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Search")).to_be_focused()
    page.keyboard.type("wrapping")
    page.keyboard.press("Enter")
    expect(lines_box(page).locator(".lv-line")).to_have_count(1)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Refresh")).to_be_focused()

"""A dropped socket in the browser (issue 5, item 7): states change while the page cannot
reach the server; once it reconnects, every card and row in the DOM matches a fresh
render from the database (text and controls), and the system panel the database's status.

The socket is cut through a Playwright route: the live one is closed abnormally (as a
network drop would) and reconnects are refused until the changes are in.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from agents.states import Desired, Status
from control import presenters
from control.live.rendering import render_part
from control.web import dashboard_context as panel
from sessions.models import TradingSession

LIVE = 10_000  # ms
DEADLINE = 10.0  # s

# What a person sees of an element: its text, and each control with whether it is enabled.
SEEN = """(el) => ({
  text: el.textContent.replace(/\\s+/g, " ").trim(),
  controls: [...el.querySelectorAll("[data-action]")]
    .map(b => b.dataset.action + (b.disabled ? " (disabled)" : "")),
})"""
SEEN_IN_HTML = f"""(html) => {{
  const t = document.createElement("template");
  t.innerHTML = html;
  return ({SEEN})(t.content.firstElementChild);
}}"""


@pytest.fixture
def rows(make_agent) -> list[str]:
    make_agent("ft_a", desired_state=Desired.RUNNING, status=Status.RUNNING)
    make_agent("ft_b")
    make_agent("ft_c", desired_state=Desired.RUNNING, status=Status.RUNNING)
    for session_id, state in (("ft_s1", Status.RUNNING), ("ft_s2", Status.STOPPED)):
        TradingSession.objects.create(
            session_id=session_id,
            name=session_id.upper(),
            symbols=["BTC-USD"],
            starting_cash="10000",
            desired_state=Desired.RUNNING if state == Status.RUNNING else Desired.STOPPED,
            status=state,
        )
    return ["agent-ft_a", "agent-ft_b", "agent-ft_c", "session-ft_s1", "session-ft_s2"]


def change_states() -> None:
    Agent.objects.filter(pk="ft_a").update(desired_state=Desired.STOPPED, status=Status.STOPPED)
    Agent.objects.filter(pk="ft_b").update(desired_state=Desired.RUNNING, status=Status.RUNNING)
    Agent.objects.filter(pk="ft_c").update(status=Status.ERROR, error_message="failed while you were away")
    TradingSession.objects.filter(pk="ft_s1").update(desired_state=Desired.PAUSED, status=Status.PAUSED)
    TradingSession.objects.filter(pk="ft_s2").update(desired_state=Desired.RUNNING, status=Status.RUNNING)


def rendered_from_db() -> dict[str, str]:
    out = {f"agent-{c.agent_id}": render_part("agent-card", {"card": c}, True) for c in panel.agent_cards()}
    for row in panel.session_rows():
        out[f"session-{row.session_id}"] = render_part("session-row", {"row": row}, True)
    return out


def mismatches(page, dom_ids: list[str]) -> dict[str, tuple]:
    truth = rendered_from_db()
    out = {}
    for dom_id in dom_ids:
        shown = page.locator(f"#{dom_id}").evaluate(SEEN)
        wanted = page.evaluate(SEEN_IN_HTML, truth[dom_id])
        if shown != wanted:
            out[dom_id] = (shown, wanted)
    return out


def test_after_a_drop_the_page_matches_the_database(rows, logged_in_page):
    page = logged_in_page
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sockets, refused = [], []
    down = False

    def route(ws) -> None:
        if down:
            refused.append(time.monotonic())
            ws.close(code=1012, reason="still down")
            return
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket("**/ws/control/", route)
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    assert mismatches(page, rows) == {}

    down = True
    sockets[-1].close(code=1012, reason="network drop")
    expect(page.locator("#live-indicator")).to_contain_text("Reconnecting", timeout=LIVE)
    change_states()
    changed_at = time.monotonic()
    # A reconnect refused after the changes: they were made while the page was cut off.
    poll(page, lambda: refused and refused[-1] > changed_at, "a reconnect to be refused")
    assert mismatches(page, rows), "the changes must show on the page"

    down = False
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    poll(page, lambda: not mismatches(page, rows), "the page to match", lambda: mismatches(page, rows))
    expect(page.locator("#system-panel .status-badge").first).to_have_text(
        presenters.system_status()["status"]
    )
    expect(page.locator("#system-panel")).to_contain_text(
        "Agent ft_c is in error: failed while you were away"
    )
    assert errors == []


def poll(page, predicate, what: str, detail=lambda: "") -> None:
    """Wait for `predicate` with a deadline, letting Playwright deliver its events meanwhile
    (its callbacks run only inside Playwright calls)."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}: {detail()}")
        page.wait_for_timeout(20)

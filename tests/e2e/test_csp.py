"""The Content-Security-Policy in Chromium: every page works under it and breaks no rule.

Each page is loaded with a listener for `securitypolicyviolation` events (installed before
any script of the page runs) and one for console errors (Chromium also reports refusals
there); then what the page does is exercised: the live socket, htmx swaps and polls,
Bootstrap's modal, the charts, the log viewer's live tail. No violation may be reported.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from agents.runtime.logs import agent_logger
from control.demo import seed_agents, seed_sessions
from tests.e2e.test_session_page import traded_session  # noqa: F401 - a fixture

LIVE = 10_000  # ms

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${where})`);
});
"""


@pytest.fixture
def violations(logged_in_page):
    """CSP violations and console errors of the page, as text."""
    page = logged_in_page
    seen: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", lambda m: seen.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: seen.append(f"page error: {exc}"))

    def collect() -> list[str]:
        return seen + page.evaluate("window.__csp || []")

    return collect


def assert_policy_sent(response) -> None:
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "'unsafe-eval'" not in policy, policy
    assert "frame-ancestors 'none'" in policy, policy


def test_the_panel_works_under_the_policy(live_stack, logged_in_page, violations):
    seed_agents()
    seed_sessions()
    page = logged_in_page
    response = page.goto("/")
    assert_policy_sent(response)
    # The websocket connected (connect-src), htmx and Bootstrap ran (script-src).
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    page.locator("#theme-toggle").click()
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
    # An htmx request and swap: the activity filter re-queries the feed.
    with page.expect_response(re.compile(r"/ui/feed")):
        page.locator("#feed-filters select").first.select_option(index=1)
    assert violations() == []


def test_the_session_page_draws_charts_and_polls_under_the_policy(
    live_stack,
    logged_in_page,
    violations,
    traded_session,  # noqa: F811
):
    page = logged_in_page
    response = page.goto(f"/sessions/{traded_session.pk}/")
    assert_policy_sent(response)
    # lightweight-charts drew the candles; htmx's every-2s poll runs without eval.
    expect(page.locator('[data-chart="candles"]')).to_have_attribute("data-candles", re.compile(r"^[1-9]"))
    with page.expect_request(re.compile(rf"/sessions/{traded_session.pk}/.+"), timeout=LIVE):
        pass
    assert violations() == []


def test_the_log_viewer_tails_live_under_the_policy(live_stack, logged_in_page, violations, make_agent):
    page = logged_in_page
    agent_id = f"csp_{uuid.uuid4().hex[:8]}"
    make_agent(agent_id)
    agent_logger(agent_id).info("history line")
    response = page.goto(f"/system/agents/{agent_id}/logs/view")
    assert_policy_sent(response)
    viewer = page.locator("#log-viewer")
    expect(viewer).to_be_focused()  # Bootstrap's modal is fully shown
    page.get_by_label("Live").check()
    expect(viewer).to_have_attribute("data-live", "open", timeout=LIVE)
    marker = f"live {uuid.uuid4().hex}"
    agent_logger(agent_id).warning(marker)
    expect(viewer.locator(".lv-line", has_text=marker)).to_have_count(1, timeout=LIVE)
    assert violations() == []


@pytest.mark.parametrize("path", ["/api/docs", "/admin/"])
def test_the_api_docs_and_the_admin_break_no_rule(live_stack, logged_in_page, violations, path):
    page = logged_in_page
    response = page.goto(path)
    assert response.status == 200
    assert_policy_sent(response)
    page.wait_for_load_state("networkidle")
    assert violations() == []

"""The main page in real Chromium against the real stack (daphne, a Celery worker, Redis):
what a person does with it, and that the page follows without reloads."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agents.models import Agent
from agents.states import Status
from control import services
from control.demo import DEMO_AGENTS, DEMO_SESSIONS, seed_agents, seed_sessions
from sessions.models import TradingSession
from tests.conftest import wait_for

LIVE = 10_000  # ms: a pushed change shows within a sweep; generous for a loaded CI machine


@pytest.fixture
def demo(live_stack):
    seed_agents()
    seed_sessions()


@pytest.fixture
def errors(logged_in_page):
    """Console errors of the page; each test asserts there were none."""
    seen: list[str] = []
    logged_in_page.on("console", lambda m: seen.append(m.text) if m.type == "error" else None)
    logged_in_page.on("pageerror", lambda exc: seen.append(str(exc)))
    return seen


def running_everywhere() -> None:
    wait_for(
        lambda: (
            Agent.objects.filter(status=Status.RUNNING).count() == len(DEMO_AGENTS)
            and TradingSession.objects.filter(status=Status.RUNNING).count() == len(DEMO_SESSIONS)
        ),
        timeout=30,
        what="the demo running",
    )


def test_start_the_system_and_watch_every_card_turn_running(demo, logged_in_page, errors):
    page = logged_in_page
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    expect(page.locator(".agent-card .status-badge")).to_have_text(["stopped"] * len(DEMO_AGENTS))

    page.get_by_role("button", name="Start system").click()
    expect(page.locator("#toasts")).to_contain_text("Starting the system")
    # No reload: the cards and rows follow the loops as they confirm.
    expect(page.locator(".agent-card .status-badge")).to_have_text(
        ["running"] * len(DEMO_AGENTS), timeout=LIVE
    )
    expect(page.locator("#session-rows .status-badge")).to_have_text(
        ["running"] * len(DEMO_SESSIONS), timeout=LIVE
    )
    expect(page.get_by_role("button", name="Stop system")).to_be_enabled()
    expect(page.locator("#system-panel [data-stat=agents]")).to_have_text(
        f"{len(DEMO_AGENTS)}/{len(DEMO_AGENTS)}"
    )
    # Edges carrying messages are drawn animated.
    expect(page.locator("#flow-edges path.live").first).to_be_attached(timeout=LIVE)
    # The page tells what the API tells.
    api = page.request.get("/api/system/status").json()
    expect(page.locator("#system-panel h1")).to_contain_text(api["status"])
    agents = api["agents"]
    agent_stat = page.locator("#system-panel [data-stat=agents]")
    expect(agent_stat).to_have_text(f"{agents['running']}/{agents['total']}")
    sessions = api["sessions"]
    active = sessions["running"] + sessions["paused"]
    expect(page.locator("#system-panel [data-stat=sessions]")).to_have_text(f"{active}/{sessions['total']}")
    assert errors == []


def test_stop_one_agent_from_its_card(demo, logged_in_page, errors):
    services.start_system()
    running_everywhere()
    page = logged_in_page
    page.goto("/")
    card = page.locator("#agent-sentiment_news")
    expect(card.locator(".status-badge")).to_have_text("running")

    card.get_by_role("button", name="Stop agent").click()
    expect(card.locator(".status-badge")).to_have_text("stopped", timeout=LIVE)
    expect(card.get_by_role("button", name="Start agent")).to_be_enabled()
    expect(page.locator("#system-panel h1")).to_contain_text("partial", timeout=LIVE)
    assert Agent.objects.get(pk="sentiment_news").desired_state == "stopped"
    assert errors == []


def test_pause_and_resume_a_session_and_the_buttons_follow(demo, logged_in_page, errors):
    services.start_system()
    running_everywhere()
    page = logged_in_page
    page.goto("/")
    row = page.locator("#session-btc-strategy-test")
    expect(row.locator(".status-badge")).to_have_text("running")

    row.get_by_role("button", name="Pause session").click()
    expect(row.locator(".status-badge")).to_have_text("paused", timeout=LIVE)
    expect(row.get_by_role("button", name="Resume session")).to_be_enabled()
    expect(row.get_by_role("button", name="Pause session")).to_have_count(0)
    expect(page.get_by_role("button", name="Resume all")).to_be_enabled(timeout=LIVE)

    row.get_by_role("button", name="Resume session").click()
    expect(row.locator(".status-badge")).to_have_text("running", timeout=LIVE)
    expect(row.get_by_role("button", name="Pause session")).to_be_enabled()
    assert TradingSession.objects.get(pk="btc-strategy-test").desired_state == "running"
    assert errors == []


def test_a_new_session_with_a_bad_value_shows_the_field_error(demo, logged_in_page, errors):
    page = logged_in_page
    page.goto("/")
    page.get_by_role("button", name="New session").click()
    form = page.locator("#session-form")
    form.get_by_label("Name").fill("Too poor")
    form.get_by_label("Symbols").fill("BTC-USD")
    form.get_by_label("Decision agent").select_option("decision_main")
    form.get_by_label("Starting cash").fill("-5")
    form.get_by_role("button", name="Create session").click()

    cash = page.locator("#session-form #id_starting_cash")
    expect(cash).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(page.locator("#id_starting_cash-error")).to_contain_text("greater than or equal to 0.01")
    expect(page.locator("#toasts")).to_contain_text("not created")
    assert not TradingSession.objects.filter(name="Too poor").exists()

    page.locator("#session-form #id_starting_cash").fill("2500")
    page.locator("#session-form").get_by_role("button", name="Create session").click()
    expect(page.locator("#session-too-poor")).to_contain_text("Too poor", timeout=LIVE)
    expect(page.locator("#session-too-poor .status-badge")).to_have_text("ready")
    # The browser logs the 422 itself ("Failed to load resource"); nothing else may fail.
    assert [e for e in errors if "status of 422" not in e] == []


def test_the_theme_toggle_is_remembered_across_a_reload(demo, logged_in_page, errors):
    page = logged_in_page
    page.goto("/")
    html = page.locator("html")
    expect(html).to_have_attribute("data-bs-theme", "light")  # the browser prefers light
    page.get_by_role("button", name="Switch between light and dark theme").click()
    expect(html).to_have_attribute("data-bs-theme", "dark")
    page.reload()
    expect(html).to_have_attribute("data-bs-theme", "dark")
    assert errors == []


def test_the_page_is_usable_375_pixels_wide(demo, logged_in_page, errors):
    page = logged_in_page
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto("/")
    expect(page.get_by_role("button", name="Start system")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    assert errors == []


def test_a_dropped_socket_is_shown_then_reconnected_and_what_changed_meanwhile_is_shown(
    demo, logged_in_page, errors
):
    """The page's socket goes through a route the test controls, so it can cut it."""
    page = logged_in_page
    sockets = []

    def through(ws) -> None:
        ws.connect_to_server()  # a transparent proxy: messages flow both ways
        sockets.append(ws)

    page.route_web_socket("**/ws/control/", through)
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    expect(page.locator("#agent-sentiment_news .status-badge")).to_have_text("stopped")

    sockets[-1].close(code=1012, reason="service restart")  # the connection drops
    expect(page.locator("#live-indicator")).to_contain_text("Reconnecting", timeout=LIVE)
    # Meanwhile an agent is stopped elsewhere... (here: marked in error by hand)
    Agent.objects.filter(pk="sentiment_news").update(status=Status.ERROR, error_message="while you were away")
    # ...and once the socket is back the page shows it, without a reload.
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    expect(page.locator("#agent-sentiment_news .status-badge")).to_have_text("error", timeout=LIVE)
    expect(page.locator("#agent-sentiment_news")).to_contain_text("while you were away")
    assert len(sockets) >= 2
    assert errors == []


def test_a_socket_closed_cleanly_by_the_server_reloads_the_page(demo, logged_in_page, errors):
    """The ws extension does not retry a clean close (e.g. the server shutting down); the
    page must not sit there stale: it reloads itself."""
    page = logged_in_page
    sockets = []

    def through(ws) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket("**/ws/control/", through)
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    with page.expect_navigation(timeout=LIVE):
        sockets[-1].close(code=1001, reason="going away")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    assert len(sockets) >= 2
    assert errors == []

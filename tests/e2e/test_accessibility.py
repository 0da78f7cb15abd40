"""Accessibility in Chromium: axe-core finds no serious or critical violation on any page,
light or dark, at desktop and phone width; what a table hides on a phone stays reachable;
cards can be reordered with the keyboard alone."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from agents.models import Agent, LogEntry
from agents.states import Desired, Status
from control.demo import seed_agents, seed_sessions
from sessions import broker
from sessions.models import TradingSession
from tests.conftest import wait_for
from tests.e2e.axe import serious_violations
from tests.e2e.conftest import OPERATOR_PASSWORD, log_in
from tests.e2e.stack import VIEWPORT

PHONE = {"width": 390, "height": 844}
THEMES = ("light", "dark")


@pytest.fixture
def furnished(live_stack):
    """The demo graph with a session that has traded, and activity in the feed."""
    seed_agents()
    seed_sessions()
    session = TradingSession.objects.order_by("session_id").first()
    # Fills need a running session; no loop runs here, so nothing else changes the numbers.
    TradingSession.objects.filter(pk=session.pk).update(
        status=Status.RUNNING, desired_state=Desired.RUNNING, run_id="r1"
    )
    now = time.time()
    for side, qty, mark, ago in (("buy", "0.01", "60000", 90), ("sell", "0.004", "60150", 30)):
        symbol = session.symbols[0]
        order = broker.place_order(session.pk, symbol, side, Decimal(qty))
        outcome = broker.fill_market_order(order.pk, Decimal(mark), ts=datetime.fromtimestamp(now - ago, UTC))
        assert outcome.filled, outcome.reason
    # Every look a card or row can have: running, starting, error, paused (no loop runs).
    looks = {
        "market_data_sim": {"status": Status.RUNNING, "desired_state": Desired.RUNNING},
        "technical_sim": {"status": Status.STARTING, "desired_state": Desired.RUNNING},
        "sentiment_news": {"status": Status.ERROR, "error_message": "ValueError: feed unreachable"},
    }
    for agent_id, fields in looks.items():
        Agent.objects.filter(pk=agent_id).update(**fields)
    TradingSession.objects.exclude(pk=session.pk).update(status=Status.PAUSED, desired_state=Desired.PAUSED)
    agent = Agent.objects.order_by("agent_id").first()
    LogEntry.objects.create(agent=agent, source="control", level=40, message="feed unreachable")
    return session


def open_page(browser, live_stack, operator, theme: str, viewport=VIEWPORT):
    context = browser.new_context(base_url=live_stack.url, viewport=viewport, color_scheme=theme)
    context.set_default_timeout(10_000)
    page = context.new_page()
    log_in(page, operator.username, OPERATOR_PASSWORD)
    page.wait_for_url(f"{live_stack.url}/")
    expect(page.locator("html")).to_have_attribute("data-bs-theme", theme)
    return context, page


def settled(page) -> None:
    """The live socket is up and the first pushes have landed."""
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=10_000)


@pytest.mark.parametrize("theme", THEMES)
def test_every_page_has_no_serious_accessibility_violation(browser, live_stack, operator, furnished, theme):
    context, page = open_page(browser, live_stack, operator, theme)
    try:
        found: dict[str, list[str]] = {}
        page.goto("/")
        settled(page)
        found["/"] = serious_violations(page)
        page.goto(f"/sessions/{furnished.pk}/")
        expect(page.locator('[data-chart="equity"] canvas').first).to_be_attached()
        found["session"] = serious_violations(page)
        agent = Agent.objects.order_by("agent_id").first()
        page.goto(f"/system/agents/{agent.pk}/logs/view")
        found["logs"] = serious_violations(page)
        page.goto("/no-such-page/")
        found["404"] = serious_violations(page)
        context.clear_cookies()
        page.goto("/login/")
        found["login"] = serious_violations(page)
        report = [f"{where}: {line}" for where, lines in found.items() for line in lines]
        assert report == [], "\n".join(report)
    finally:
        context.close()


@pytest.mark.parametrize("theme", THEMES)
def test_the_phone_layout_has_no_serious_accessibility_violation(
    browser, live_stack, operator, furnished, theme
):
    context, page = open_page(browser, live_stack, operator, theme, viewport=PHONE)
    try:
        page.goto("/")
        settled(page)
        report = serious_violations(page)
        page.goto(f"/sessions/{furnished.pk}/")
        report += serious_violations(page)
        assert report == [], "\n".join(report)
    finally:
        context.close()


def inside_the_screen(locator, width: int) -> bool:
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_at_phone_width_sessions_and_fills_show_every_column_without_a_sideways_scroll(
    browser, live_stack, operator, furnished
):
    context, page = open_page(browser, live_stack, operator, "light", viewport=PHONE)
    try:
        page.goto("/")
        settled(page)
        row = page.locator(f"#session-{furnished.pk}")
        for label in ("Equity", "P&L", "Trades"):
            cell = row.locator(f'td[data-label="{label}"]')
            expect(cell).to_be_visible()
            wait_for(
                lambda c=cell: inside_the_screen(c, PHONE["width"]), timeout=5, what=f"{label} on screen"
            )
        for name, button in (
            ("Pause", row.get_by_role("button", name=re.compile("^Pause"))),
            ("Details", row.get_by_role("link", name=re.compile("^Details"))),
        ):
            expect(button).to_be_visible()
            wait_for(
                lambda b=button: inside_the_screen(b, PHONE["width"]), timeout=5, what=f"{name} on screen"
            )
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        boxes = "[...document.querySelectorAll('.table-responsive')]"
        assert page.evaluate(f"{boxes}.filter(b => b.scrollWidth > b.clientWidth).length") == 0

        page.goto(f"/sessions/{furnished.pk}/")
        fill = page.locator("#fills-table tr.fill-row").first
        for label in ("Price", "Fee", "Realized P&L"):
            cell = fill.locator(f'td[data-label="{label}"]')
            expect(cell).to_be_visible()
            wait_for(
                lambda c=cell: inside_the_screen(c, PHONE["width"]), timeout=5, what=f"{label} on screen"
            )
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()


def test_a_card_is_moved_within_its_column_with_the_keyboard_alone(browser, live_stack, operator, furnished):
    context, page = open_page(browser, live_stack, operator, "light")
    try:
        page.goto("/")
        settled(page)
        technical = Agent.objects.get(pk="technical_sim")
        target = f"Move {technical.name} down"
        for _ in range(120):  # Tab through the page as a keyboard user does
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.getAttribute('aria-label')") == target:
                break
        else:
            pytest.fail(f"Tab never reached {target!r}")

        page.keyboard.press("Enter")

        column = page.locator("#agent-technical_sim").locator("xpath=..")
        expect(column.locator(".agent-card")).to_have_count(2)
        expect(column.locator(".agent-card").nth(1)).to_have_id("agent-technical_sim")
        expect(page.locator("#move-status")).to_contain_text("moved to place 2 of 2")
        wait_for(
            lambda: (
                list(
                    Agent.objects.filter(pk__in=["sentiment_news", "technical_sim"])
                    .order_by("position_y")
                    .values_list("agent_id", flat=True)
                )
                == ["sentiment_news", "technical_sim"]
            ),
            what="the new order saved",
        )
        # Still on the same button: pressing again says it is already last.
        assert page.evaluate("document.activeElement.getAttribute('aria-label')") == target
        page.keyboard.press("Enter")
        expect(page.locator("#move-status")).to_contain_text("already last")
    finally:
        context.close()

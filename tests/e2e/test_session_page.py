"""The session details page in Chromium against the live stack (daphne + worker).

The ledger is made in this process through the real broker, and bars are XADDed to the
market input's stream under this run's Redis prefix: the server (another process) reads
the same committed rows and keys. No loop runs, so nothing else changes the numbers.
"""

import json
import re
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from agents.runtime import keys
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from sessions import broker
from sessions.models import TradingSession

D = Decimal
BAR_SECONDS = 120  # a bar a second for the last two minutes: 12-13 candles of 10 s


@pytest.fixture
def traded_session(make_agent):
    feed = make_agent("feed", symbols=["BTC-USD"])
    execution = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.set([feed])
    decision = make_agent("decider", kind="decision", role="decision", symbols=["BTC-USD"], config={})
    session = TradingSession.objects.create(
        session_id="e2e-alpha",
        name="E2E <i>Alpha</i>",
        symbols=["BTC-USD"],
        decision_agent=decision,
        execution_agent=execution,
        starting_cash=D("10000"),
        status=Status.RUNNING,
        desired_state=Desired.RUNNING,
        run_id="r1",
        started_at=datetime.now(UTC),
    )
    now = time.time()
    client = get_redis()
    price = 60000.0
    for i in range(BAR_SECONDS):
        ts = datetime.fromtimestamp(now - BAR_SECONDS + i, UTC).isoformat()
        close = price + (i % 7) * 10 - 30
        high, low = max(price, close) + 15, min(price, close) - 15
        message = {
            "type": "bar", "ts": ts, "symbol": "BTC-USD", "open": price, "high": high, "low": low,
            "close": close, "volume": 1.0, "price": close, "source": "simulated",
        }  # fmt: skip
        client.xadd(keys.stream("agent", "feed"), {"data": json.dumps(message)})
        price = close
    trade(session.pk, "buy", "0.015", "60000", now - 60)
    trade(session.pk, "sell", "0.005", "60100", now - 20)
    for seconds_ago in (50, 30, 10):
        broker.mark_to_market(
            session.pk, {"BTC-USD": D("60050")}, ts=datetime.fromtimestamp(now - seconds_ago, UTC)
        )
    session.last_bar_at = now - 1  # no loop runs: no newer candle will come
    return session


def trade(session_id, side, qty, mark, at):
    order = broker.place_order(session_id, "BTC-USD", side, D(qty))
    outcome = broker.fill_market_order(order.pk, D(mark), ts=datetime.fromtimestamp(at, UTC))
    assert outcome.filled, outcome.reason


def console_errors(page) -> list[str]:
    """Console errors and uncaught exceptions from now on. Chromium's own guess at
    /favicon.ico (it asks for it whatever the page links) is not the page's error."""
    errors: list[str] = []

    def on_console(message) -> None:
        url = (message.location or {}).get("url", "")
        if message.type == "error" and not url.endswith("/favicon.ico"):
            errors.append(f"{message.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    return errors


def test_the_details_page_draws_its_charts_and_follows_new_fills(logged_in_page, live_stack, traded_session):
    page = logged_in_page
    errors = console_errors(page)

    page.goto(f"/sessions/{traded_session.pk}/")

    expect(page.get_by_role("heading", name="E2E <i>Alpha</i>")).to_be_visible()
    expect(page.locator("#session-status .status-badge")).to_have_text("running")
    expect(page.locator("#simulated-badge")).to_be_visible()
    charts = page.locator("[data-chart]")
    expect(charts).to_have_count(2)  # one symbol + the equity curve
    for i in range(2):
        expect(charts.nth(i).locator("canvas").first).to_be_attached()
    candles = page.locator('[data-chart="candles"][data-symbol="BTC-USD"]')
    expect(candles).to_have_attribute("data-candles", re.compile(r"^1[0-9]$"))
    expect(candles).to_have_attribute("data-markers", "2")
    expect(page.locator('[data-chart="equity"]')).to_have_attribute("data-points", "3")
    expect(page.locator("#fills-table tr.fill-row")).to_have_count(2)
    expect(page.locator("#metric-trades")).to_have_text("2")

    # A new fill shows up without a reload: table, metrics and chart markers (made at the
    # newest bar's time, as no loop publishes newer ones here).
    trade(traded_session.pk, "sell", "0.005", "60200", traded_session.last_bar_at)
    expect(page.locator("#fills-table tr.fill-row")).to_have_count(3)
    expect(page.locator("#metric-trades")).to_have_text("3")
    expect(candles).to_have_attribute("data-markers", "3")

    # The theme flips without breaking the charts.
    page.locator("#theme-toggle").click()
    expect(page.locator("html")).to_have_attribute("data-bs-theme", re.compile("dark|light"))
    expect(page.locator("#fills-table tr.fill-row")).to_have_count(3)

    assert errors == [], errors


def test_the_details_page_is_readable_at_375_px(logged_in_page, live_stack, traded_session):
    page = logged_in_page
    errors = console_errors(page)
    page.set_viewport_size({"width": 375, "height": 812})

    page.goto(f"/sessions/{traded_session.pk}/")

    candles = page.locator('[data-chart="candles"]')
    equity = page.locator('[data-chart="equity"]')
    expect(candles).to_have_attribute("data-candles", re.compile(r"^[1-9]"))
    # The page does not scroll sideways; the tables scroll inside their own boxes.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # The charts stack, each as wide as the screen allows.
    top, bottom = candles.bounding_box(), equity.bounding_box()
    assert bottom["y"] >= top["y"] + top["height"]
    assert top["width"] <= 375 and top["width"] > 300
    assert errors == [], errors


def test_an_unknown_session_shows_the_not_found_page(logged_in_page, live_stack):
    response = logged_in_page.goto("/sessions/no-such-session/")

    assert response.status == 404
    expect(logged_in_page.get_by_role("heading", name="Session not found")).to_be_visible()
    logged_in_page.get_by_role("link", name="Back to the panel").click()
    expect(logged_in_page).to_have_url(f"{live_stack.url}/")

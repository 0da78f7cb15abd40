"""Where prices come from, in Chromium against the live stack: an accelerated simulation
is labelled "Simulated, 60x" on its agent card, in the session page's "Prices" fact and
in the caption of the session's charts (which chart.json keeps up to date), and a fill
is marked on the market-time candle it was priced at.

No loop runs: the card and the fact come from the agents' configs, the chart caption
from bars XADDed to the feed's stream under this run's Redis prefix.
"""

import json
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

LABEL = "Simulated, 60x"


@pytest.fixture
def accelerated_session(make_agent):
    feed = make_agent("feed", config={"source": "simulated", "tick_seconds": 1.0, "speed": 60})
    execution = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.set([feed])
    decision = make_agent("decider", kind="decision", role="decision", config={})
    decision.inputs_from.set([feed])
    session = TradingSession.objects.create(
        session_id="e2e-fast",
        name="Fast market",
        symbols=["BTC-USD"],
        decision_agent=decision,
        execution_agent=execution,
        starting_cash=Decimal("10000"),
        status=Status.RUNNING,  # the broker fills a running session's orders (no loop runs)
        desired_state=Desired.RUNNING,
        run_id="r1",
    )
    # Market time runs ahead of the clock: a minute a bar, from now on.
    start, client = time.time(), get_redis()
    for i in range(30):
        message = {
            "type": "bar", "ts": datetime.fromtimestamp(start + 60 * i, UTC).isoformat(), "symbol": "BTC-USD",
            "open": 60000, "high": 60010, "low": 59990, "close": 60000 + i, "volume": 1.0, "price": 60000 + i,
            "interval_seconds": 60.0, "source": "simulated", "speed": 60.0,
        }  # fmt: skip
        client.xadd(keys.stream("agent", "feed"), {"data": json.dumps(message)})
    # Made after every bar arrived: it stands on the newest candle, half an hour ahead.
    order = broker.place_order(session.pk, "BTC-USD", "buy", Decimal("0.01"))
    assert broker.fill_market_order(order.pk, Decimal("60029"), ts=datetime.now(UTC)).filled
    return session


def test_an_accelerated_market_is_labelled_on_its_card_the_session_page_and_the_chart(
    logged_in_page, accelerated_session
):
    page = logged_in_page

    card = page.locator("#agent-feed")
    expect(card.locator("dt", has_text="Prices")).to_be_visible()
    expect(card.locator("dd", has_text=LABEL)).to_be_visible()

    page.goto(f"/sessions/{accelerated_session.pk}/")
    expect(page.locator("#session-prices")).to_have_text(LABEL)
    candles = page.locator('[data-chart="candles"][data-symbol="BTC-USD"]')
    # Thirty one-minute bars on market time: 30 candles of 1 min (not squeezed into 30 s).
    page.goto(f"/sessions/{accelerated_session.pk}/?interval=60")
    expect(candles).to_have_attribute("data-candles", "30")
    expect(candles).to_have_attribute("data-markers", "1")
    # ... on the newest candle, half an hour of market time ahead of the clock.
    body = page.request.get(f"/sessions/{accelerated_session.pk}/chart.json?interval=60").json()
    times = [c["time"] for c in body["candles"]["BTC-USD"]]
    assert [m["time"] for m in body["markers"]["BTC-USD"]] == [times[-1]]
    expect(page.locator("#chart-prices")).to_have_text(LABEL)
    expect(page.locator("#charts-title")).to_contain_text("market time")

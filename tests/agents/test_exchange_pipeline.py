"""Done-when of issue 12's exchange prices: a graph on `exchange` prices trades in a paper
session against the local recording (tests/exchange_server.py), in real Celery workers.

market_data (exchange: binance, 1s candles, through the base URL) -> technical ->
decision -> a paper session whose execution agent fills at the exchange's prices. The
worker is this test's own, started with FETCH_ALLOWED_HOSTS=127.0.0.1 (workers copy
os.environ), as an operator allows a private gateway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agents.models import Agent
from agents.runtime import keys
from agents.states import Status
from control import services
from sessions.models import Fill
from tests.conftest import wait_for
from tests.exchange_server import ExchangeServer

SYMBOLS = ["BTC-USD", "ETH-USD"]


@pytest.fixture
def server(monkeypatch, settings) -> Iterator[ExchangeServer]:
    monkeypatch.setenv("FETCH_ALLOWED_HOSTS", "127.0.0.1")
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    with ExchangeServer() as running:
        yield running


def stream(client: Any, agent_id: str) -> list[dict[str, Any]]:
    return [json.loads(f["data"]) for _id, f in client.xrange(keys.stream("agent", agent_id))]


def test_a_graph_on_exchange_prices_trades_in_a_paper_session(
    server, spawn_worker, make_agent, redis_client
) -> None:
    spawn_worker()
    feed = make_agent("ex_feed", symbols=SYMBOLS, config={"source": "simulated"})
    # Saved through the service, as the API and the admin do: checked against the
    # exchange's market list (the local recording's).
    services.update_agent_config(
        feed.agent_id,
        {
            "source": "exchange",
            "exchange": "binance",
            "timeframe": "1s",
            "backfill_bars": 60,
            "base_url": server.base_url,
            "symbol_map": {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"},
            "tick_seconds": 0.2,
        },
    )
    technical = make_agent(
        "ex_tech", kind="technical", role="specialized_technical", symbols=SYMBOLS,
        config={"tick_seconds": 0.2},
    )  # fmt: skip
    technical.inputs_from.add(feed)
    decision = make_agent(
        "ex_decision", kind="decision", role="decision", symbols=SYMBOLS,
        config={"tick_seconds": 0.2, "cooldown_seconds": 0, "buy_threshold": 0.05, "sell_threshold": -0.05},
    )  # fmt: skip
    decision.inputs_from.add(technical)
    execution = make_agent(
        "ex_exec", kind="execution", role="execution", symbols=SYMBOLS, config={"tick_seconds": 0.2}
    )
    execution.inputs_from.add(feed)
    services.create_session(
        {
            "session_id": "ex_session",
            "name": "On exchange prices",
            "symbols": SYMBOLS,
            "decision_agent": decision.agent_id,
            "execution_agent": execution.agent_id,
            "starting_cash": "10000",
            "max_orders_per_minute": 600,
        }
    )
    for agent_id in ("ex_feed", "ex_tech", "ex_decision", "ex_exec"):
        services.start_agent(agent_id)
    services.start_session("ex_session")
    wait_for(
        lambda: Agent.objects.filter(pk__startswith="ex_", status=Status.RUNNING).count() == 4,
        timeout=30,
        what="the four agents running",
    )

    fill = wait_for(lambda: Fill.objects.filter(session_id="ex_session").first(), timeout=60, what="a fill")
    bars = [m for m in stream(redis_client, "ex_feed") if m["type"] == "bar"]
    assert bars and all(b["source"] == "exchange" and b["exchange"] == "binance" for b in bars)
    # The backfill came first: the technical agent was warm before the first live bar.
    assert len(bars) >= 2 * 60
    # Filled against the exchange's price of that symbol (the mark; the price adds slippage).
    closes = {b["close"] for b in bars if b["symbol"] == fill.symbol}
    assert float(fill.mark_price) in closes
    signals = [m for m in stream(redis_client, "ex_tech") if m["type"] == "signal"]
    assert signals and all(s["source"] == "exchange" for s in signals)
    assert "/api/v3/klines" in " ".join(server.requests)  # the backfill
    # Live candles over the exchange's websocket (stream "auto"), in the worker.
    assert sorted(set(server.ws_subscriptions)) == ["btcusdt@kline_1s", "ethusdt@kline_1s"]

    services.stop_session("ex_session")
    for agent_id in ("ex_feed", "ex_tech", "ex_decision", "ex_exec"):
        services.stop_agent(agent_id)
    # Stopping the feed closes its websocket in the worker.
    wait_for(lambda: not server.ws_connections, timeout=20, what="the websocket closed on stop")

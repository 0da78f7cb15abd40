"""The market_data kind's `exchange` source against a local Binance stand-in (tests/exchange_server.py).

Nothing here reaches the internet: ccxt is pointed at the local server through the
config's base_url, and 127.0.0.1 is allowed by FETCH_ALLOWED_HOSTS as an operator would
allow a private gateway. Timeframe 1s (which Binance offers), so candles close every second.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import ccxt
import pytest

from agents.kinds import ConfigError, exchange_feed, exchange_markets, validate_config
from agents.kinds import exchange_client as client_module
from agents.kinds.exchange_client import exchange_label, make_exchange, rebase
from agents.kinds.exchange_markets import exchange_symbol, listed_symbols
from agents.kinds.market_data import MarketData
from agents.kinds.market_time import bar_end_ts
from agents.models import Agent
from agents.runtime import keys
from agents.runtime.redis import get_redis
from tests.agents.test_loop import run_loop  # noqa: F401 (a fixture, used by name)
from tests.agents.test_market_data import FakeContext
from tests.conftest import wait_for
from tests.exchange_server import ExchangeServer

SYMBOL_MAP = {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"}


@pytest.fixture
def server(settings: Any) -> Iterator[ExchangeServer]:
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    with ExchangeServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _no_cached_markets() -> Iterator[None]:
    """Each test loads the market list afresh (the cache is keyed by base URL, whose port
    changes, but a test of the cache itself must start empty)."""
    yield
    client = get_redis()
    for key in client.scan_iter(match=keys.exchange_markets("*", "*"), count=1000):
        client.delete(key)
    exchange_markets._failures.clear()


def config(server: ExchangeServer, **extra: Any) -> dict[str, Any]:
    return {
        "source": "exchange",
        "exchange": "binance",
        "timeframe": "1s",
        "backfill_bars": 5,
        "base_url": server.base_url,
        "symbol_map": SYMBOL_MAP,
        # The REST polling path; the websocket has its own tests (test_exchange_stream).
        "stream": "poll",
        **extra,
    }


def make(server: ExchangeServer, history: list[dict[str, Any]] | None = None, **extra: Any):
    ctx = FakeContext(history=history)
    return MarketData(ctx, validate_config("market_data", config(server, **extra))), ctx


def step_until_published(kind: MarketData, ctx: FakeContext, more_than: int, timeout: float = 10.0):
    """Step (the kind returns at once until its next poll is due) until it has published more."""
    results = []

    def stepped() -> bool:
        results.append(kind.step())
        return len(ctx.published) > more_than

    wait_for(stepped, timeout=timeout, interval=0.05, what=f"more than {more_than} bars")
    return results[-1]


# --- bars ----------------------------------------------------------------------------------


def test_backfill_comes_first_then_each_closed_candle_once_with_the_exchange_timestamps(server) -> None:
    kind, ctx = make(server)
    result = kind.step()
    assert result.counters["bars"] == 10  # 5 bars of history for each of the 2 symbols
    bars = ctx.published
    assert {b["symbol"] for b in bars} == {"BTC-USD", "ETH-USD"}
    for bar in bars:
        assert bar["type"] == "bar" and bar["source"] == "exchange" and bar["exchange"] == "binance"
        assert bar["market"] == SYMBOL_MAP[bar["symbol"]] and bar["timeframe"] == "1s"
        assert bar["open_ms"] % 1000 == 0 and bar["price"] == bar["close"]
        # Like every bar: ts is its open (the exchange's stamp), interval_seconds its length,
        # so its end, when the close was the price, is what downstream ages start from.
        assert datetime.fromisoformat(bar["ts"]).timestamp() * 1000 == bar["open_ms"]
        assert bar["interval_seconds"] == 1.0
        assert bar_end_ts(bar) == datetime.fromtimestamp((bar["open_ms"] + 1000) / 1000, UTC).isoformat()
        # Closed candles only: none still forming when it was published.
        assert bar["open_ms"] + 1000 <= time.time() * 1000
    # Interleaved by time, so a restart finds every symbol among the newest messages.
    assert [b["open_ms"] for b in bars] == sorted(b["open_ms"] for b in bars)
    step_until_published(kind, ctx, len(bars))
    step_until_published(kind, ctx, len(ctx.published))
    per_symbol = {s: [b["open_ms"] for b in ctx.published if b["symbol"] == s] for s in SYMBOL_MAP}
    for opens in per_symbol.values():
        assert opens == sorted(set(opens)), "each candle once, in order"
        assert all(b - a == 1000 for a, b in zip(opens, opens[1:], strict=False)), "no candle skipped"


def test_a_restart_resumes_after_its_own_last_candle_without_a_second_backfill(server) -> None:
    kind, ctx = make(server)
    kind.step()
    first = list(ctx.published)
    # The restarted agent reads its own newest messages (newest first).
    again, ctx2 = make(server, history=list(reversed(first)))
    step_until_published(again, ctx2, 0)
    last = {s: max(b["open_ms"] for b in first if b["symbol"] == s) for s in SYMBOL_MAP}
    for bar in ctx2.published:
        assert bar["open_ms"] > last[bar["symbol"]], "nothing published twice"
    assert len(ctx2.published) < 10, "no second backfill"


def test_a_gap_is_counted_and_never_filled_in(server) -> None:
    kind, ctx = make(server)
    kind.step()
    newest = max(b["open_ms"] for b in ctx.published)
    # The next two candles never come from the exchange.
    server.missing = {newest + 1000, newest + 2000}
    gaps = 0

    def past_the_gap() -> bool:
        nonlocal gaps
        gaps += kind.step().counters.get("gaps", 0)
        return any(b["open_ms"] > newest + 2000 for b in ctx.published)

    wait_for(past_the_gap, timeout=10, interval=0.05, what="a candle after the gap")
    assert gaps == 4  # two candles for each of two symbols
    assert not [b for b in ctx.published if b["open_ms"] in server.missing]


def test_every_bar_says_where_its_price_comes_from() -> None:
    assert exchange_label("binance") == "Binance"
    assert exchange_label("kraken") == "Kraken"
    assert exchange_label("nosuch") == "nosuch"


# --- faults ----------------------------------------------------------------------------------

FAULTS = {
    "429": "rate limited",
    "500": "exchange not available",
    "malformed": "malformed answer",
    "down": "unreachable",
    "slow": "timed out",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_degrades_the_feed_visibly_and_it_recovers_by_itself(server, fault, monkeypatch) -> None:
    monkeypatch.setattr(client_module, "TIMEOUT_MS", 300)
    server.slow_seconds = 1.0
    kind, ctx = make(server)
    healthy = kind.step()
    assert healthy.gauges["degraded"] == "" and healthy.gauges["last_price_at"] > 0
    published = len(ctx.published)
    server.fault = fault

    degraded = wait_for(
        lambda: (r := kind.step()).gauges.get("degraded") and r, timeout=10, interval=0.05, what="degraded"
    )
    assert degraded.summary.startswith(f"degraded: {FAULTS[fault]}")
    assert degraded.gauges["degraded"].startswith(FAULTS[fault])
    assert degraded.gauges["degraded_since"] > 0
    # The age of its last price stays readable: the time of the newest candle it published.
    assert degraded.gauges["last_price_at"] == healthy.gauges["last_price_at"]
    # Backoff: the next attempt waits, the step returns at once meanwhile.
    feed = kind._feed
    assert feed is not None and feed.next_poll - time.time() >= 0.5
    requests = len(server.requests)
    assert kind.step().gauges["degraded"] and len(server.requests) == requests

    server.fault = None
    recovered = wait_for(
        lambda: (r := kind.step()).counters.get("bars") and r, timeout=15, interval=0.05, what="recovery"
    )
    assert recovered.gauges["degraded"] == "" and recovered.gauges["degraded_since"] == 0
    opens = [b["open_ms"] for b in ctx.published if b["symbol"] == "BTC-USD"]
    assert opens == sorted(set(opens)) and len(ctx.published) > published


def test_an_exchange_nobody_answers_at_is_unreachable_not_a_crash(server, settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    kind, _ctx = make(server, base_url=f"http://127.0.0.1:{port}")
    result = kind.step()
    assert result.summary.startswith("degraded: unreachable")
    assert result.gauges["last_price_at"] == 0  # no price yet


def test_a_host_the_policy_refuses_is_never_contacted(server, settings) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        settings.FETCH_ALLOWED_HOSTS = []
        validate_config("market_data", config(server))


# --- the mapping and the base URL ----------------------------------------------------------


def test_our_symbols_map_to_the_same_pair_unless_mapped_explicitly() -> None:
    assert exchange_symbol("BTC-USD", {}) == "BTC/USD"  # never BTC/USDT by guess
    assert exchange_symbol("BTC-USD", {"BTC-USD": "BTC/USDT"}) == "BTC/USDT"


def test_the_base_url_replaces_every_api_origin_and_keeps_the_paths() -> None:
    api = {"public": "https://api.binance.com/api/v3", "nested": {"x": "https://fapi.binance.com/fapi/v1"}}
    assert rebase(api, "http://gw.local:8080/binance/") == {
        "public": "http://gw.local:8080/binance/api/v3",
        "nested": {"x": "http://gw.local:8080/binance/fapi/v1"},
    }
    assert make_exchange("binance").urls["api"]["public"].startswith("https://api.binance.com")


# --- configs refused when saved ------------------------------------------------------------


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        validate_config("market_data", data)
    return dict(caught.value.errors)


def test_an_unknown_exchange_id_is_refused_naming_some_that_exist() -> None:
    errors = errors_of({"source": "exchange", "exchange": "binanse"})
    assert "ccxt knows no exchange 'binanse'" in errors["exchange"]
    assert "binance" in errors["exchange"]
    assert errors_of({"source": "exchange"})["exchange"] == "required when source is 'exchange'"


def test_a_timeframe_the_exchange_does_not_offer_is_refused() -> None:
    errors = errors_of({"source": "exchange", "exchange": "binance", "timeframe": "7m"})
    assert errors["timeframe"].startswith("Binance offers no '7m' bars; it offers 1s, 1m")


def test_a_mapping_not_in_ccxt_notation_is_refused() -> None:
    errors = errors_of({"source": "exchange", "exchange": "binance", "symbol_map": {"BTC-USD": "BTCUSDT"}})
    assert "'BTCUSDT' (for BTC-USD) is not a market in ccxt's notation" in errors["symbol_map"]


def check(server: ExchangeServer, symbols: list[str], **extra: Any) -> list[tuple[str, str]]:
    parsed = validate_config("market_data", config(server, **extra))
    return MarketData.check_agent(parsed, symbols)


def test_a_symbol_the_exchange_does_not_list_is_refused_naming_what_it_lists(server) -> None:
    assert check(server, ["BTC-USD", "ETH-USD"]) == []
    [(field, sentence)] = check(server, ["BTC-USD"], symbol_map={})
    assert field == "symbols"
    assert sentence.startswith(
        "Binance has no market BTC/USD for BTC-USD (it lists BTC/USDT, BTC/USDC, BTC/EUR"
    )
    assert 'e.g. {"BTC-USD": "BTC/USDT"}' in sentence
    [(field, sentence)] = check(server, ["BTC-USD", "SOL-USD"], symbol_map={"BTC-USD": "BTC/USDT"})
    assert sentence.startswith("Binance has no market SOL/USD for SOL-USD (it lists SOL/USDT")
    [(field, sentence)] = check(server, ["BTC-USD"], symbol_map={"BTC-USD": "BTC/DAI"})
    assert field == "symbol_map.BTC-USD" and "no market BTC/DAI" in sentence
    [(_, sentence)] = check(server, ["DOGE-USD"], symbol_map={})
    assert sentence.endswith("(it lists no DOGE market)")
    [(_, sentence)] = check(server, ["ETHH-USDT"], symbol_map={})
    assert sentence.endswith("(it lists no ETHH market; close matches: ETH)")


def test_the_market_list_is_cached_so_saving_again_asks_nothing(server) -> None:
    listed_symbols("binance", server.base_url)
    asked = len(server.requests)
    assert "BTC/USDT" in listed_symbols("binance", server.base_url)
    assert len(server.requests) == asked


def test_with_the_exchange_out_of_reach_saving_is_refused_with_a_sentence(server) -> None:
    server.fault = "down"
    [(field, sentence)] = check(server, ["BTC-USD"], symbol_map={"BTC-USD": "BTC/USDT"})
    assert field == "exchange"
    assert sentence.startswith("cannot check the symbols: the market list of Binance could not be loaded")
    assert "try again when the exchange answers" in sentence


@pytest.mark.django_db
def test_the_edit_service_refuses_an_unlisted_symbol_and_changes_nothing(server, make_agent) -> None:
    from control import services
    from control.errors import InvalidInput

    agent = make_agent("feed_x", symbols=["BTC-USD"])
    before = dict(agent.config)
    with pytest.raises(InvalidInput) as caught:
        services.update_agent(agent.agent_id, {"config": config(server, symbol_map={})})
    assert "Binance has no market BTC/USD for BTC-USD" in str(caught.value)
    agent.refresh_from_db()
    assert agent.config == before
    # Mapped to a listed market, it is saved; changing the symbols is checked the same way.
    services.update_agent(agent.agent_id, {"config": config(server, symbol_map={"BTC-USD": "BTC/USDT"})})
    with pytest.raises(InvalidInput, match="no market SOL/USD for SOL-USD"):
        services.update_agent(agent.agent_id, {"symbols": ["BTC-USD", "SOL-USD"]})


def test_a_poll_that_runs_out_of_time_goes_on_at_the_next_step(server, monkeypatch) -> None:
    monkeypatch.setattr(exchange_feed, "POLL_BUDGET_SECONDS", 0.0)  # one market per step
    kind, ctx = make(server)
    kind.step()
    assert {b["symbol"] for b in ctx.published} == {"BTC-USD"}
    kind.step()  # due at once, not at the next candle
    assert {b["symbol"] for b in ctx.published} == {"BTC-USD", "ETH-USD"}
    assert len(ctx.published) == 10


# --- in a loop: the card shows it, a new config clears it ------------------------------------


def test_the_card_shows_the_degraded_state_and_a_new_config_clears_it(
    server,
    run_loop: Any,  # noqa: F811 (the imported fixture)
    make_agent,
    operator_client,
) -> None:
    from control import presenters, services

    server.fault = "500"
    make_agent("feed_deg", symbols=["BTC-USD"], config={**config(server), "tick_seconds": 0.1})
    run_loop("feed_deg")
    degraded = wait_for(
        lambda: (d := presenters.agent_dicts([Agent.objects.get(pk="feed_deg")])[0])["degraded"] and d,
        what="the degraded note",
    )
    assert degraded["degraded"].startswith("exchange not available") and degraded["degraded_since"]
    assert degraded["status"] == "running"
    page = operator_client.get("/").content.decode()
    assert 'data-loop-note="degraded"' in page and "degraded: exchange not available" in page
    assert "last price none yet" in page

    services.update_agent_config("feed_deg", {"source": "simulated", "tick_seconds": 0.1})
    wait_for(
        lambda: presenters.agent_dicts([Agent.objects.get(pk="feed_deg")])[0]["degraded"] is None,
        what="the note cleared by the new config",
    )


@pytest.mark.django_db
def test_the_admin_refuses_a_new_agent_on_an_unlisted_symbol(server, client, admin_user) -> None:
    client.force_login(admin_user)
    form = {
        "agent_id": "feed_new",
        "name": "Feed new",
        "kind": "market_data",
        "role": "data_feed",
        "enabled": "on",
        "symbols": '["BTC-USD"]',
        "config": json.dumps(config(server, symbol_map={})),
        "position_x": "",
        "position_y": "",
    }
    response = client.post("/admin/agents/agent/add/", form)
    assert response.status_code == 200  # the form again, with the error
    assert "Binance has no market BTC/USD for BTC-USD" in response.content.decode()
    assert not Agent.objects.filter(pk="feed_new").exists()
    form["config"] = json.dumps(config(server, symbol_map={"BTC-USD": "BTC/USDT"}))
    assert client.post("/admin/agents/agent/add/", form).status_code == 302
    assert Agent.objects.filter(pk="feed_new").exists()


def test_without_backfill_the_first_bar_is_the_first_candle_to_close_after_the_start(server) -> None:
    kind, ctx = make(server, backfill_bars=0)
    started_ms = time.time() * 1000
    assert kind.step().counters["bars"] == 0
    step_until_published(kind, ctx, 0)
    assert all(b["open_ms"] >= started_ms - 1000 for b in ctx.published)
    assert len(ctx.published) <= 4


def test_a_market_the_exchange_no_longer_has_degrades_the_feed_but_not_the_others(server) -> None:
    kind, ctx = make(server, symbol_map={**SYMBOL_MAP, "ETH-USD": "ETH/BTC"})  # no candles served
    result = kind.step()
    assert {b["symbol"] for b in ctx.published} == {"BTC-USD"}
    assert result.gauges["degraded"] == 'market not listed: binance {"code":-1121,"msg":"Invalid symbol."}'


@pytest.mark.django_db
def test_a_save_with_the_exchange_out_of_reach_asks_it_once_and_is_refused(server, make_agent) -> None:
    from control import services
    from control.errors import InvalidInput

    agent = make_agent("feed_off", symbols=["BTC-USD"])
    server.fault = "down"
    with pytest.raises(InvalidInput, match="cannot check the symbols: the market list of Binance"):
        services.update_agent(agent.agent_id, {"config": config(server, symbol_map={"BTC-USD": "BTC/USDT"})})
    # Checked before the row is locked and again inside: the exchange was asked once.
    assert sum("exchangeInfo" in path for path in server.requests) == 1
    agent.refresh_from_db()
    assert agent.config["source"] == "simulated"


def test_a_candle_the_exchange_is_late_with_is_asked_for_again_soon_not_a_timeframe_later(settings) -> None:
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    now = [1_796_220_030.5]  # half-way through a minute, on a clock the test moves
    with ExchangeServer(clock=lambda: now[0]) as server:
        feed = exchange_feed.ExchangeFeed(
            make_exchange("binance", server.base_url),
            "1m",
            {"BTC-USD": "BTC/USDT"},
            5,
            {},
            logging.getLogger("tests.exchange"),
            clock=lambda: now[0],
        )
        newest_closed = (int(now[0] * 1000) // 60_000 - 1) * 60_000
        server.missing = {newest_closed}  # not in the exchange's answers yet
        poll = feed.poll()
        feed.schedule()
        assert [c.open_ms for c in poll.candles][-1] == newest_closed - 60_000 and poll.gaps == 0
        assert feed.next_poll - now[0] == exchange_feed.LATE_RETRY_SECONDS  # not 30 s later
        server.missing = set()
        now[0] += exchange_feed.LATE_RETRY_SECONDS
        poll = feed.poll()
        feed.schedule()
        assert [c.open_ms for c in poll.candles] == [newest_closed]
        # Up to date: the next poll is when the next candle has closed (and settled).
        assert feed.next_poll == (newest_closed + 2 * 60_000) / 1000 + exchange_feed.SETTLE_SECONDS


@pytest.mark.django_db
def test_the_api_answers_422_naming_what_the_exchange_lists(server, make_agent, operator_client) -> None:
    make_agent("feed_api", symbols=["BTC-USD"])
    response = operator_client.post(
        "/api/agents/feed_api/config",
        data=json.dumps(config(server, symbol_map={})),
        content_type="application/json",
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_config"
    [error] = body["errors"]
    assert error["field"] == "symbols" and "it lists BTC/USDT" in error["reason"]
    assert Agent.objects.get(pk="feed_api").config["source"] == "simulated"


def test_no_network_reads_as_unreachable_for_the_exchange_own_hosts_only(server, monkeypatch) -> None:
    from agents.net import fetch as fetch_module

    def no_dns(host: str, port: int) -> list:
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(fetch_module, "system_resolver", no_dns)
    unresolved = r"api\.binance\.com does not resolve \(no network or no DNS\?\)"
    with pytest.raises(ccxt.NetworkError, match=unresolved):
        make_exchange("binance").load_markets()
    # An operator's URL: the policy's one sentence, whatever the cause.
    with pytest.raises(ccxt.PermissionDenied, match="refused by policy"):
        make_exchange("binance", "https://gateway.invalid").load_markets()

"""Hostile input to the real-markets surfaces (issue 12): the exchange source's config, the
answers an exchange (or something posing as one at a base URL) gives, and the simulated
market's speed. Each is refused with a sentence and changes nothing, or is stored sanely;
never a 500, a traceback, or an agent that stops.

Nothing here reaches the internet: exchanges are small servers on 127.0.0.1 (allowed by
FETCH_ALLOWED_HOSTS, as an operator would allow a gateway), and the saved checks that
would download a market list read a fixed one instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import ccxt
import pytest

from agents.kinds import exchange_markets, validate_config
from agents.kinds.exchange_client import make_exchange
from agents.kinds.exchange_feed import ExchangeFeed
from agents.models import Agent
from agents.runtime import keys
from agents.runtime.redis import get_redis
from control import services
from control.services import InvalidInput

LOG = logging.getLogger("tests.market_inputs")


@pytest.fixture(autouse=True)
def _no_cached_markets() -> Iterator[None]:
    yield
    client = get_redis()
    for key in client.scan_iter(match=keys.exchange_markets("*", "*"), count=1000):
        client.delete(key)
    exchange_markets._failures.clear()


@pytest.fixture
def answering(settings: Any) -> Iterator[Callable[[bytes], str]]:
    """A server on 127.0.0.1 that answers every GET with HTTP 200 and the body given; the
    base URL to point ccxt at."""
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- answers of an unexpected shape ---

# JSON that ccxt's parsers do not expect, each of which raised TypeError, AttributeError
# or KeyError from inside ccxt (exchange id, body).
ODD_MARKET_LISTS = [
    ("binance", b"[1]"),
    ("kraken", b'{"result": {"X": 1}}'),
    ("poloniex", b'{"result": "x"}'),
    ("poloniex", b"[]"),
]


@pytest.mark.parametrize(("exchange_id", "body"), ODD_MARKET_LISTS)
def test_a_market_list_of_an_odd_shape_is_a_malformed_answer(answering, exchange_id: str, body: bytes):
    exchange = make_exchange(exchange_id, answering(body))
    with pytest.raises(ccxt.BadResponse, match="could not be read"):
        exchange.load_markets()


@pytest.mark.django_db
def test_saving_against_an_odd_market_list_is_refused_with_a_sentence(answering, make_agent) -> None:
    agent = make_agent("feed", symbols=["BTC-USD"])
    before = dict(agent.config)
    config = {"source": "exchange", "exchange": "binance", "base_url": answering(b"[1]"), "timeframe": "1m"}
    with pytest.raises(InvalidInput, match="malformed answer"):
        services.update_agent_config("feed", config)
    assert Agent.objects.get(pk="feed").config == before


def test_the_feed_goes_degraded_on_an_odd_answer_and_keeps_stepping(answering) -> None:
    exchange = make_exchange("binance", answering(b"[1]"))
    feed = ExchangeFeed(exchange, "1m", {"BTC-USD": "BTC/USDT"}, 5, {}, LOG)
    poll = feed.poll()  # raised AttributeError out of the step: the agent stopped in ERROR
    assert poll.candles == []
    assert feed.failure is not None and feed.failure.startswith("malformed answer")


def test_candles_of_an_odd_shape_are_a_malformed_answer(answering, monkeypatch) -> None:
    exchange = make_exchange("binance", answering(b'{"klines": 1}'))
    market = {"id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "spot": True}
    exchange.set_markets([{**market, "type": "spot"}])
    monkeypatch.setattr(exchange, "parse_ohlcvs", lambda *a, **k: {}["boom"])  # any parser fault
    with pytest.raises(ccxt.BadResponse):
        exchange.fetch_ohlcv("BTC/USDT", "1m")


# --- symbol maps ---

LISTED = ["BTC/USD", "BTC/USDT", "ETH/USD", "ETH/USDT"]


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The saved check reads this market list: no download (and a test that a map is
    refused must not need the exchange)."""
    import agents.kinds.market_data as market_data

    monkeypatch.setattr(market_data, "listed_symbols", lambda exchange_id, base_url=None: LISTED)
    return LISTED


def save_map(symbol_map: Any, symbols: list[str]) -> None:
    config = {"source": "exchange", "exchange": "binance", "timeframe": "1m", "symbol_map": symbol_map}
    services.update_agent_config("feed", config)


# Keys that name none of the agent's symbols (BTC-USD, ETH-USD): a typo, spaces, lower
# case, an empty key, a symbol the agent does not trade. Each was stored and ignored, so
# BTC-USD traded on BTC/USD while its author meant BTC/USDT.
STRAY_KEYS = ["BTC-UDS", " BTC-USD", "btc-usd", "", "XRP-USD", "B" * 500, "ＢＴＣ-USD"]


@pytest.mark.django_db
@pytest.mark.parametrize("key", STRAY_KEYS)
def test_a_map_key_that_is_none_of_the_symbols_is_refused(make_agent, listed, key: str) -> None:
    agent = make_agent("feed", symbols=["BTC-USD", "ETH-USD"])
    before = dict(agent.config)
    with pytest.raises(InvalidInput) as caught:
        save_map({key: "BTC/USDT"}, agent.symbols)
    assert "is not one of this agent's symbols (BTC-USD, ETH-USD)" in str(caught.value)
    assert len(str(caught.value)) < 400  # a long key is not repeated in full
    assert Agent.objects.get(pk="feed").config == before


# Two of ours on one market: explicitly, or one mapped onto the market another means
# unmapped (ETH-USD -> BTC/USD while BTC-USD is BTC/USD).
SHARED = [
    {"BTC-USD": "BTC/USDT", "ETH-USD": "BTC/USDT"},
    {"ETH-USD": "BTC/USD"},
]


@pytest.mark.django_db
@pytest.mark.parametrize("symbol_map", SHARED)
def test_two_symbols_on_one_market_are_refused(make_agent, listed, symbol_map: dict[str, str]) -> None:
    agent = make_agent("feed", symbols=["BTC-USD", "ETH-USD"])
    before = dict(agent.config)
    with pytest.raises(InvalidInput, match="BTC-USD and ETH-USD would all trade BTC/USDT?"):
        save_map(symbol_map, agent.symbols)
    assert Agent.objects.get(pk="feed").config == before


@pytest.mark.django_db
def test_a_good_map_is_stored(make_agent, listed) -> None:
    make_agent("feed", symbols=["BTC-USD", "ETH-USD"])
    save_map({"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"}, ["BTC-USD", "ETH-USD"])
    assert Agent.objects.get(pk="feed").config["symbol_map"] == {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"}


# --- the simulated market's speed ---


def test_an_accelerated_market_that_reaches_the_year_9999_stops_publishing_and_says_why() -> None:
    """At the top speed a simulation runs out of datetime's years in about a month of wall
    time; each step raised ValueError then (the agent stopped in ERROR) and so did every
    restart, which resumes from the last bar."""
    from agents.kinds.market_data import MarketData
    from tests.agents.test_market_data import FakeContext, SteppedClock

    last = {"type": "bar", "symbol": "BTC-USD", "close": 65000.0, "source": "simulated", "speed": 100000}
    last |= {"ts": "9999-12-30T00:00:00+00:00", "interval_seconds": 60.0}
    ctx = FakeContext(symbols=["BTC-USD"], history=[last])
    config = validate_config("market_data", {"source": "simulated", "speed": 100000, "seed": 1})
    kind = MarketData(ctx, config, now=SteppedClock(config.tick_seconds))
    for _ in range(3):  # the restart's first step, and every one after it
        result = kind.step()
        assert not result.did_work and "run out of time" in result.summary
    assert ctx.published == []


def test_market_time_never_hands_out_a_bar_past_the_year_9999() -> None:
    from agents.kinds.market_time import LAST_MARKET_TIME, MarketClock, MarketTimeOver

    wall = iter(float(t) for t in range(1_767_225_600, 1_767_225_700))
    clock = MarketClock(60.0, speed=100_000, resume_end=LAST_MARKET_TIME - 7 * 86400, now=lambda: next(wall))
    with pytest.raises(MarketTimeOver):
        for _ in range(10):
            clock.next_span().open_iso()  # each one it hands out can be written


# --- timeframes ---


# A month's or a year's bars are of no one length (the feed counts in fixed lengths), and
# ccxt's table of Backpack lists "15", which its own parse_timeframe cannot read (the
# agent's first step failed, stopping it in ERROR).
@pytest.mark.parametrize(
    ("exchange_id", "timeframe"), [("binance", "1M"), ("backpack", "15"), ("backpack", "1M")]
)
def test_a_timeframe_the_feed_cannot_follow_is_refused(exchange_id: str, timeframe: str) -> None:
    from agents.kinds import ConfigError

    with pytest.raises(ConfigError) as caught:
        validate_config(
            "market_data", {"source": "exchange", "exchange": exchange_id, "timeframe": timeframe}
        )
    [(field, reason)] = caught.value.errors
    assert field == "timeframe" and f"offers no {timeframe!r} bars; it offers " in reason
    assert "1m" in reason and "1M" not in reason.split("it offers ")[1]


def test_an_exchange_without_candles_is_refused_with_a_sentence() -> None:
    from agents.kinds import ConfigError

    with pytest.raises(ConfigError) as caught:
        validate_config("market_data", {"source": "exchange", "exchange": "coincheck", "timeframe": "1m"})
    assert (
        dict(caught.value.errors)["timeframe"]
        == "Coincheck offers no candles through ccxt; choose another exchange"
    )


def test_a_backfill_longer_than_the_epoch_starts_at_1970(answering) -> None:
    exchange = make_exchange("binance", answering(b"[]"))
    market = {"id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "spot": True}
    exchange.set_markets([{**market, "type": "spot"}])
    asked: list[Any] = []
    exchange.fetch_ohlcv = lambda market, timeframe, since=None, limit=None: asked.append(since) or []
    feed = ExchangeFeed(exchange, "4w", {"BTC-USD": "BTC/USDT"}, 1000, {}, LOG)
    feed.markets_loaded = True
    feed.poll()
    assert asked == [0]  # not 1000 x 4 weeks back: 1950


# --- base URLs ---


@pytest.mark.parametrize("url", ["http://example.com:0/", "https://example.com:0", "http://[2001:db8::1]:0/"])
def test_port_0_is_refused_not_read_as_the_default_port(url: str) -> None:
    """A URL naming port 0 was saved and fetched on port 80/443: the policy's own check
    for port 0 never ran (0 is falsy). Text only: nothing is resolved or connected."""
    from agents.net.url_policy import UrlRefused, parse

    with pytest.raises(UrlRefused, match="the port must be a number from 1 to 65535"):
        parse(url, allowed=frozenset())


@pytest.mark.parametrize(
    "url",
    [
        "https://gw.example/binance?token=x",
        "https://gw.example/#frag",
        "https://gw.example/?",
        "https://gw.example#",
    ],
)
def test_a_base_url_with_a_query_or_fragment_is_refused(url: str) -> None:
    """rebase keeps a base URL's origin and path only: a query (a gateway's token) or a
    fragment was saved and then dropped from every request. Text only, no lookup."""
    from agents.kinds import ConfigError

    with pytest.raises(ConfigError) as caught:
        validate_config("market_data", {"source": "exchange", "exchange": "binance", "base_url": url})
    assert "no query (?...) or fragment (#...)" in dict(caught.value.errors)["base_url"]
    ok = validate_config(
        "market_data", {"source": "exchange", "exchange": "binance", "base_url": "https://gw.example/b/"}
    )
    assert ok.base_url == "https://gw.example/b/"


# --- error text from an exchange or a feed, on the cards ---

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_an_exchange_error_with_markup_is_shown_as_text_on_the_card() -> None:
    from django.template.loader import render_to_string

    note = {"degraded": f"malformed answer: binance {HOSTILE}", "degraded_since": None, "last_price_at": None}
    html = render_to_string("control/index.html#loop-note", {"note": note})
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.django_db
def test_a_feed_error_with_markup_is_shown_as_text_on_the_card(make_agent, redis_client) -> None:
    from django.template.loader import render_to_string

    from agents.runtime.agent_loop import AgentLoop
    from control.web import dashboard_context as page

    make_agent("news", kind="sentiment", role="specialized_sentiment", config={})
    since = "2024-05-01T12:00:00+00:00"
    problem = {"url": f"https://feeds.example/{HOSTILE}", "error": HOSTILE, "since": since}
    AgentLoop("news", "run-1")._report_status({"feed_errors": [problem]})
    (card,) = page.agent_cards()
    html = render_to_string("control/index.html#agent-card", {"card": card, "can_control": True})
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- stale prices ---


@pytest.mark.parametrize("timeframe", ["15", "1Y", "0m", "x"])
def test_a_feed_timeframe_ccxt_cannot_read_falls_back_to_the_tick(timeframe: str) -> None:
    """A stored config older than the timeframe check (Backpack's "15") made ccxt raise
    NotSupported, which is no ValueError, out of the session's price-age limit."""
    from sessions.freshness import feed_interval_seconds

    config = {"source": "exchange", "exchange": "backpack", "timeframe": timeframe, "tick_seconds": 2.0}
    assert feed_interval_seconds(config) == 2.0


# --- candles ---


@pytest.mark.parametrize("price", [1e300, 1e7, 1.7e308])
def test_a_candle_priced_past_what_the_ledger_keeps_is_a_bad_row(price: float) -> None:
    """As a CSV row is (csv_replay) and the simulator's walk is capped: an exchange (or a
    gateway at a base URL) answering 1e300 went on to the technical agent and the sessions."""
    from agents.kinds.exchange_feed import to_candle

    assert to_candle("BTC-USD", "BTC/USDT", [60_000, 1.0, price, 1.0, 1.0, 1.0]) is None
    assert to_candle("BTC-USD", "BTC/USDT", [60_000, 1.0, 9_999_999.0, 1.0, 1.0, 1.0]) is not None


# --- a session's price-age limit ---


@pytest.mark.django_db
@pytest.mark.parametrize("value", [[], {}, "", ()])
def test_an_empty_value_that_is_not_null_is_refused_as_a_price_age(graph, value: Any) -> None:
    """Django's full_clean skips a blank field holding "", [] or {}: they reached the
    database and the edit service raised TypeError instead of answering."""
    from sessions.models import TradingSession

    with pytest.raises(InvalidInput, match="max_price_age_seconds: Give a whole number of seconds from 1"):
        services.update_session("runner", {"max_price_age_seconds": value})
    assert TradingSession.objects.get(pk="runner").max_price_age_seconds is None
    services.update_session("runner", {"max_price_age_seconds": 90})
    services.update_session("runner", {"max_price_age_seconds": None})  # automatic again
    assert TradingSession.objects.get(pk="runner").max_price_age_seconds is None


# The same class on every edit: a blank number or relation holding "", [], {} or ().
WRONG_EMPTY = [[], {}, "", ()]


SESSION_FIELDS = ["max_position_weight", "max_orders_per_minute", "fee_bps", "decision_agent"]


@pytest.mark.django_db
@pytest.mark.parametrize("field", SESSION_FIELDS)
@pytest.mark.parametrize("value", WRONG_EMPTY)
def test_the_session_edit_refuses_an_empty_value_of_the_wrong_type(graph, field: str, value: Any) -> None:
    from sessions.models import TradingSession

    before = TradingSession.objects.filter(pk="runner").values()[0]
    with pytest.raises(InvalidInput):
        services.update_session("runner", {field: value})
    assert TradingSession.objects.filter(pk="runner").values()[0] == before


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["position_x", "position_y", "kind"])
@pytest.mark.parametrize("value", WRONG_EMPTY)
def test_the_agent_edit_refuses_an_empty_value_of_the_wrong_type(graph, field: str, value: Any) -> None:
    before = Agent.objects.filter(pk="feed").values()[0]
    with pytest.raises(InvalidInput):
        services.update_agent("feed", {field: value})
    assert Agent.objects.filter(pk="feed").values()[0] == before


def test_a_market_in_the_wrong_letter_case_is_named_as_listed(listed) -> None:
    """ccxt's symbols are case-sensitive: 'btc/usdt' got "it lists no btc market"."""
    [(field, sentence)] = exchange_markets.symbol_problems(
        ["BTC-USD"], {"BTC-USD": "btc/usdt"}, LISTED, "Binance"
    )
    assert field == "symbol_map.BTC-USD"
    assert sentence == "Binance has no market btc/usdt for BTC-USD (it lists BTC/USDT: write it so)"


def test_failed_market_lists_are_not_remembered_forever(settings) -> None:
    """Each base URL saved while unreachable left a key in the process for good."""
    import socket
    import time

    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    with socket.socket() as probe:  # a port nobody listens on: refused at once, locally
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exchange_markets._failures["old"] = (time.monotonic() - 3600, "long ago")
    with pytest.raises(exchange_markets.MarketsUnavailable):
        exchange_markets.listed_symbols("binance", f"http://127.0.0.1:{port}")
    assert "old" not in exchange_markets._failures and len(exchange_markets._failures) == 1

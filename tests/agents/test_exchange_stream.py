"""The exchange source's websocket (ccxt.pro watch_ohlcv) against the local Binance stand-in.

The server (tests/exchange_server.py) speaks Binance's kline stream on the same port as
its REST API, so the config's base_url points both at it. Timeframe 1s: candles close
every second, and a silent websocket is noticed after 2 timeframes plus the slack (made
short here).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.kinds import exchange_feed, exchange_stream, validate_config
from agents.kinds.exchange_client import make_exchange, rebase
from agents.kinds.exchange_feed import ExchangeFeed
from agents.kinds.market_data import MarketData
from agents.models import Agent
from agents.net import aio_session, url_policy
from agents.net.aio_session import PolicyRefused, PolicyResolver, policy_session
from tests.agents.test_loop import run_loop  # noqa: F401 (a fixture, used by name)
from tests.agents.test_market_data import FakeContext
from tests.conftest import wait_for
from tests.exchange_server import ExchangeServer

SYMBOL_MAP = {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"}


@pytest.fixture
def server(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExchangeServer]:
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    monkeypatch.setattr(exchange_stream, "SILENCE_SLACK_SECONDS", 1.0)
    with ExchangeServer() as running:
        yield running


@pytest.fixture
def kinds() -> Iterator[list[MarketData]]:
    """Kinds made by a test, closed after it (their websockets), as the loop's teardown does."""
    made: list[MarketData] = []
    yield made
    for kind in made:
        kind.close()


def make(server: ExchangeServer, kinds: list[MarketData], **extra: Any) -> tuple[MarketData, FakeContext]:
    config = {
        "source": "exchange",
        "exchange": "binance",
        "timeframe": "1s",
        "backfill_bars": 5,
        "base_url": server.base_url,
        "symbol_map": SYMBOL_MAP,
        **extra,
    }
    ctx = FakeContext()
    kind = MarketData(ctx, validate_config("market_data", config))
    kinds.append(kind)
    return kind, ctx


def klines_after(server: ExchangeServer, start: int) -> int:
    return sum("/klines" in path for path in server.requests[start:])


def stepping(kind: MarketData, condition: Any) -> Any:
    """A predicate for wait_for that steps the kind first (a loop steps it at its tick)."""

    def check() -> Any:
        result = kind.step()
        return condition(result)

    return check


def assert_each_candle_once(ctx: FakeContext) -> None:
    for symbol in SYMBOL_MAP:
        opens = [b["open_ms"] for b in ctx.published if b["symbol"] == symbol]
        assert opens == sorted(set(opens)), "each candle once, in order"
        assert all(b - a == 1000 for a, b in zip(opens, opens[1:], strict=False)), "none skipped"
        assert all(t + 1000 <= time.time() * 1000 for t in opens), "closed candles only"


# --- streaming --------------------------------------------------------------------------------


def test_candles_come_by_websocket_after_a_rest_backfill_each_closed_once(server, kinds) -> None:
    kind, ctx = make(server, kinds)
    kind.step()
    assert len(ctx.published) == 10  # the backfill, over REST
    feed = kind._feed
    assert feed is not None and feed.stream is not None
    wait_for(lambda: len(server.ws_subscriptions) >= 2, timeout=5, what="websocket subscriptions")
    assert sorted(server.ws_subscriptions) == ["btcusdt@kline_1s", "ethusdt@kline_1s"]
    # (A candle that closed before the subscription was answered comes from REST.)
    wait_for(stepping(kind, lambda r: feed.streamed >= 1), timeout=10, interval=0.05, what="streaming")
    requests = len(server.requests)
    wait_for(stepping(kind, lambda r: feed.streamed >= 9), timeout=15, interval=0.05, what="streamed")
    assert klines_after(server, requests) == 0, "no REST klines while the stream holds the candles"
    last = kind.step()
    assert last.gauges["degraded"] == ""
    assert_each_candle_once(ctx)
    # The same prices REST would have given (the server's fixtures, by open time).
    for bar in ctx.published[10:]:
        status, rows = server._klines(
            {"symbol": bar["market"].replace("/", ""), "interval": "1s", "startTime": str(bar["open_ms"])}
        )
        assert rows[0][0] == bar["open_ms"] and float(rows[0][4]) == bar["close"]


def test_poll_keeps_to_rest(server, kinds) -> None:
    kind, ctx = make(server, kinds, stream="poll")
    kind.step()
    wait_for(stepping(kind, lambda r: len(ctx.published) >= 14), timeout=10, interval=0.05, what="bars")
    assert kind._stream is None and server.ws_accepted == 0
    assert_each_candle_once(ctx)


def test_stopping_the_agent_closes_its_websocket(server, kinds) -> None:
    kind, _ctx = make(server, kinds)
    kind.step()
    wait_for(lambda: server.ws_connections, timeout=5, what="a websocket connection")
    stream = kind._stream
    assert stream is not None
    kind.close()
    assert stream.closed
    wait_for(lambda: not server.ws_connections, timeout=5, what="the connection closed")
    # (A subscription ccxt was still rate limiting ends by itself within its throttle's time.)
    wait_for(
        lambda: asyncio.run_coroutine_threadsafe(_tasks(), exchange_stream.event_loop()).result(5) == [],
        timeout=5,
        what="no task of the stream left in the event loop",
    )


async def _tasks() -> list[str]:
    current = asyncio.current_task()
    return [repr(t) for t in asyncio.all_tasks() if t is not current]


def test_in_a_loop_the_card_shows_the_fallback_and_a_config_change_closes_the_websocket(
    server,
    run_loop: Any,  # noqa: F811 (the imported fixture)
    make_agent,
    operator_client,
) -> None:
    from control import presenters, services

    config = {
        "source": "exchange",
        "exchange": "binance",
        "timeframe": "1s",
        "backfill_bars": 5,
        "base_url": server.base_url,
        "symbol_map": {"BTC-USD": "BTC/USDT"},
        "tick_seconds": 0.1,
    }
    make_agent("feed_ws", symbols=["BTC-USD"], config=config)
    run_loop("feed_ws")
    wait_for(lambda: server.ws_connections, what="the loop's websocket")
    server.ws_fault = "silent"
    degraded = wait_for(
        lambda: (d := presenters.agent_dicts([Agent.objects.get(pk="feed_ws")])[0])["degraded"] and d,
        what="the fallback note",
    )
    assert degraded["degraded"].startswith("websocket silent") and degraded["status"] == "running"
    page = operator_client.get("/").content.decode()
    assert "degraded: websocket silent" in page and "polling instead" in page

    services.update_agent_config("feed_ws", {"source": "simulated", "tick_seconds": 0.1})
    wait_for(lambda: not server.ws_connections, what="the websocket closed by the reload")
    wait_for(
        lambda: presenters.agent_dicts([Agent.objects.get(pk="feed_ws")])[0]["degraded"] is None,
        what="the note cleared by the new config",
    )


# --- faults -------------------------------------------------------------------------------------

WS_FAULTS = {
    "refuse": "websocket unreachable",  # the upgrade answered 403
    "drop": "websocket ",  # unreachable, or silent, as the cut lands
    "garbage": "websocket silent",  # ccxt reads no candle in it
    "silent": "websocket silent",
}


@pytest.mark.parametrize("fault", list(WS_FAULTS))
def test_a_websocket_fault_falls_back_to_polling_with_a_note_and_recovers(server, kinds, fault) -> None:
    kind, ctx = make(server, kinds)
    kind.step()
    feed = kind._feed
    assert feed is not None
    wait_for(stepping(kind, lambda r: feed.streamed >= 2), timeout=10, interval=0.05, what="streaming")
    server.ws_fault = fault
    if fault in ("refuse", "drop"):
        for connection in list(server.ws_connections):
            connection.cut()  # the running connection goes; the next ones meet the fault

    degraded = wait_for(
        stepping(kind, lambda r: r.gauges.get("degraded") and r), timeout=15, interval=0.05, what="the note"
    )
    assert degraded.gauges["degraded"].startswith(WS_FAULTS[fault])
    assert degraded.gauges["degraded"].endswith("polling instead")
    assert degraded.gauges["degraded_since"] > 0
    # Prices keep coming, by REST.
    requests, published = len(server.requests), len(ctx.published)
    wait_for(
        stepping(kind, lambda r: len(ctx.published) >= published + 4),
        timeout=15,
        interval=0.05,
        what="polled",
    )
    assert klines_after(server, requests) > 0

    server.ws_fault = None
    streamed = feed.streamed
    recovered = wait_for(
        stepping(kind, lambda r: feed.streamed >= streamed + 4 and r.gauges["degraded"] == "" and r),
        timeout=20,
        interval=0.05,
        what="back on the websocket",
    )
    assert recovered.gauges["degraded_since"] == 0
    assert_each_candle_once(ctx)


def test_candles_lost_in_a_reconnect_come_from_rest_and_nothing_is_invented(server, kinds) -> None:
    kind, ctx = make(server, kinds)
    kind.step()
    feed = kind._feed
    assert feed is not None
    wait_for(stepping(kind, lambda r: feed.streamed >= 2), timeout=10, interval=0.05, what="streaming")
    server.ws_fault = "drop"
    for connection in list(server.ws_connections):
        connection.cut()
    wait_for(lambda: server.ws_accepted >= 2, timeout=10, what="a reconnect attempt")
    server.ws_fault = None
    streamed = feed.streamed
    wait_for(
        stepping(kind, lambda r: feed.streamed >= streamed + 4), timeout=20, interval=0.05, what="stream"
    )
    assert_each_candle_once(ctx)  # consecutive: the candles of the outage came from REST


def test_the_stream_vouches_only_for_final_consecutive_candles_it_saw() -> None:
    rows = {t: [t, 1.0, 1.0, 1.0, 1.0, 1.0] for t in (1000, 2000, 4000, 5000)}
    # 1000 and 2000 final (newer ones came), then a hole: the feed asks REST from 3000.
    assert [r[0] for r in exchange_stream.final_run(rows, 1000, 1000, 5500)] == [1000, 2000]
    assert exchange_stream.final_run(rows, 3000, 1000, 5500) is None  # never saw it
    assert exchange_stream.final_run(rows, 500, 1000, 5500) is None  # from before the stream
    # The newest is final only once its close is SETTLE_SECONDS past.
    assert [r[0] for r in exchange_stream.final_run(rows, 4000, 1000, 6000 + 1999)] == [4000]
    assert [r[0] for r in exchange_stream.final_run(rows, 4000, 1000, 6000 + 2000)] == [4000, 5000]


def test_a_candle_the_stream_holds_but_not_final_yet_is_asked_again_within_a_second() -> None:
    """(Binance pushes a 1m candle every 2 s: at the poll after its close the next one may
    not have come yet.) No REST request is made for it, and the feed looks again soon."""
    now = [1_000_020.5]  # half a second after a 1m candle's close

    class Stream:
        def candles_from(self, market: str, since: int) -> list[Any] | None:
            return []  # held, not final yet

    exchange = make_exchange("binance")
    exchange.load_markets = lambda *a, **k: {}  # type: ignore[method-assign]
    exchange.fetch_ohlcv = None  # type: ignore[assignment]  (never called)
    log = logging.getLogger("tests.exchange_stream")
    last_open = {"BTC-USD": 999_900_000}  # the candle opening at 999_960 s closed 0.5 s ago
    feed = ExchangeFeed(exchange, "1m", {"BTC-USD": "BTC/USDT"}, 0, last_open, log, lambda: now[0])
    feed.stream = Stream()
    poll = feed.poll()
    assert poll.candles == [] and feed.failure is None and feed.stream_answered
    feed.schedule()
    assert feed.next_poll - now[0] <= exchange_feed.STREAM_LATE_RETRY_SECONDS


def test_unusable_candles_from_the_stream_are_fetched_over_rest_not_counted_as_gaps(server, kinds) -> None:
    kind, ctx = make(server, kinds)
    kind.step()
    feed = kind._feed
    assert feed is not None
    wait_for(stepping(kind, lambda r: feed.streamed >= 2), timeout=10, interval=0.05, what="streaming")
    server.ws_fault = "bad_prices"
    requests, published = len(server.requests), len(ctx.published)
    counters: dict[str, int] = {"gaps": 0, "bad_candles": 0}

    def more() -> bool:
        result = kind.step()
        for name in counters:
            counters[name] += result.counters.get(name, 0)
        return len(ctx.published) >= published + 6

    wait_for(more, timeout=15, interval=0.05, what="candles while the stream's are unusable")
    assert klines_after(server, requests) > 0, "fetched over REST"
    assert counters == {"gaps": 0, "bad_candles": 0}
    assert_each_candle_once(ctx)
    assert all(math.isfinite(b["close"]) for b in ctx.published)


# --- policy ---------------------------------------------------------------------------------------


def test_the_websocket_url_follows_the_base_url() -> None:
    api = {"ws": {"spot": "wss://stream.binance.com:9443/ws"}, "public": "https://api.binance.com/api/v3"}
    assert rebase(api, "http://127.0.0.1:8080") == {
        "ws": {"spot": "ws://127.0.0.1:8080/ws"},
        "public": "http://127.0.0.1:8080/api/v3",
    }
    assert rebase(api, "https://gw.example.net/binance")["ws"]["spot"] == "wss://gw.example.net/binance/ws"


def test_a_private_host_is_refused_before_any_connection(settings, monkeypatch) -> None:
    """A name resolving to a private address, and a private literal, are refused by the
    session before a socket is opened; a listed host is let through."""
    settings.FETCH_ALLOWED_HOSTS = []
    connects: list[Any] = []

    async def no_connect(*args: Any, **kwargs: Any) -> None:
        connects.append(args)
        raise AssertionError("a connection was attempted")

    def resolver(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("10.1.2.3")]

    async def attempt(url: str) -> BaseException | None:
        session = policy_session(resolver)
        monkeypatch.setattr(session.connector, "_wrap_create_connection", no_connect)
        try:
            async with session.ws_connect(url):
                return None
        except Exception as exc:
            return exc
        finally:
            await session.close()

    for url in (
        "ws://exchange.example.com/ws",
        "ws://127.0.0.1:9/ws",
        "ws://localhost:9/ws",
        "wss://[::1]/ws",
    ):
        error = asyncio.run(attempt(url))
        assert isinstance(error, PolicyRefused) or isinstance(error.__cause__, PolicyRefused), (url, error)
    assert connects == []


def test_a_redirect_to_a_forbidden_address_is_refused_before_following_it(settings) -> None:
    """An allowed host that redirects the websocket's handshake elsewhere: the new URL is
    checked before aiohttp connects to it (its address literal never reaches the resolver)."""
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:9/ws")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    async def attempt() -> BaseException | None:
        async with policy_session() as session:
            assert session.trust_env is False  # no proxy from the environment
            try:
                async with session.ws_connect(f"ws://127.0.0.1:{http.server_address[1]}/ws"):
                    return None
            except Exception as exc:
                return exc

    try:
        error = asyncio.run(attempt())
    finally:
        http.shutdown()
        http.server_close()
    assert isinstance(error, PolicyRefused), error
    assert "127.0.0.2 is not a public address" in error.reason


def test_a_handshake_that_never_comes_is_cut_at_the_time_limit(settings, monkeypatch) -> None:
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    monkeypatch.setattr(aio_session, "TIMEOUT_SECONDS", 0.5)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts the connection, never answers

        async def attempt() -> BaseException | None:
            async with policy_session() as session:
                try:
                    async with session.ws_connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/ws"):
                        return None
                except Exception as exc:
                    return exc

        started = time.monotonic()
        error = asyncio.run(attempt())
    assert isinstance(error, TimeoutError) and time.monotonic() - started < 3, error


def test_the_resolver_checks_every_address_and_honours_allowed_hosts(settings) -> None:
    settings.FETCH_ALLOWED_HOSTS = ["gateway.internal"]

    def mixed(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("192.168.0.7")]

    with pytest.raises(PolicyRefused):
        asyncio.run(PolicyResolver(mixed).resolve("cdn.example.net", 443))
    allowed = asyncio.run(PolicyResolver(mixed).resolve("gateway.internal", 443))
    assert [r["host"] for r in allowed] == ["93.184.216.34", "192.168.0.7"]

    def public(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("93.184.216.34")]

    [answer] = asyncio.run(PolicyResolver(public).resolve("stream.example.com", 9443))
    assert answer["host"] == "93.184.216.34" and answer["port"] == 9443


def test_a_refused_websocket_is_never_contacted_and_rest_goes_on(server, kinds, monkeypatch) -> None:
    """The websocket's URL is checked like every fetch: here the policy the websocket
    sees does not list 127.0.0.1 (REST's still does), so the stream is refused before it
    connects, the card says so, and prices come by REST."""
    monkeypatch.setattr(aio_session, "parse", lambda text, allowed=None: url_policy.parse(text, frozenset()))
    kind, ctx = make(server, kinds)
    kind.step()
    degraded = wait_for(
        stepping(kind, lambda r: r.gauges.get("degraded") and r), timeout=10, interval=0.05, what="the note"
    )
    assert degraded.gauges["degraded"].startswith("websocket refused")
    wait_for(stepping(kind, lambda r: len(ctx.published) >= 14), timeout=10, interval=0.05, what="polled")
    assert server.ws_accepted == 0 and not [p for p in server.requests if p.startswith("/ws")]


def test_streams_ohlcv_is_read_from_ccxt_pro() -> None:
    assert exchange_stream.streams_ohlcv("binance")
    assert not exchange_stream.streams_ohlcv("bitstamp")  # ccxt.pro has it, without watchOHLCV
    assert not exchange_stream.streams_ohlcv("bitflyer")  # not in ccxt.pro
    assert not exchange_stream.streams_ohlcv("nosuchexchange")

"""The live demo `seed_demo --live <exchange id>` (or DEMO_LIVE=<id>) adds beside the
simulated one: the same graph on an exchange's public prices through ccxt and a sentiment
agent reading real crypto news feeds, with two paper sessions on it.

Before anything is created the exchange must answer one light request, made through
agents.net.fetch like every request the product makes; offline, the command says so in
one sentence and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agents.models import Role
from agents.net.fetch import FetchError, FetchRefused, FetchStatus, FetchTooLarge
from agents.net.fetch import fetch as fetch_url
from agents.net.url_policy import display_url

# Well-known public crypto news feeds (RSS), polled every feed_poll_seconds.
DEFAULT_FEEDS = [
    "https://www.coindesk.com/arc/outboundfeeds/rss/",
    "https://cointelegraph.com/rss",
    "https://decrypt.co/feed",
]
# Our symbol -> the exchange's, written out, never guessed: exchanges without USD pairs
# quote these coins in USDT (a dollar stablecoin, close to but not exactly USD).
USDT_EXCHANGES = frozenset({"binance", "bybit", "okx", "kucoin", "gateio", "mexc", "htx"})
LIVE_SYMBOLS = ("BTC-USD", "ETH-USD")
TIMEFRAME = "1m"
BACKFILL_BARS = 100
PROBE_TIMEOUT_SECONDS = 5.0
PROBE_MAX_BYTES = 1_000_000


class LiveDemoError(Exception):
    """Why the live demo cannot be built: one sentence for the operator."""


def exchange_name(exchange_id: str) -> str:
    """ccxt's display name of the exchange ("Binance"); LiveDemoError if ccxt has no such id."""
    import ccxt  # heavy: only the live demo needs it here

    if exchange_id not in ccxt.exchanges:
        raise LiveDemoError(
            f"ccxt knows no exchange {exchange_id!r}; use its id, e.g. binance, kraken, coinbase "
            "or bitstamp (python -c 'import ccxt; print(ccxt.exchanges)' lists them all)."
        )
    return str(getattr(ccxt, exchange_id)().name or exchange_id)


def probe_url(exchange_id: str, base_url: str | None) -> str:
    """Where the light request goes: the base URL given, else the exchange's public API."""
    if base_url:
        return base_url
    import ccxt

    urls = getattr(ccxt, exchange_id)().urls.get("api")
    found = list(_http_urls(urls.get("public", urls) if isinstance(urls, dict) else urls))
    if not found:
        found = list(_http_urls(urls))
    if not found:
        raise LiveDemoError(f"ccxt lists no public API address for {exchange_id}; give --base-url.")
    return found[0]


def check_reachable(exchange_id: str, base_url: str | None = None) -> str:
    """The exchange's name if its API answers one request (any HTTP status: it is there);
    LiveDemoError with the reason otherwise (no network, refused, timed out)."""
    name = exchange_name(exchange_id)
    url = probe_url(exchange_id, base_url)
    try:
        fetch_url(url, max_bytes=PROBE_MAX_BYTES, timeout=PROBE_TIMEOUT_SECONDS)
    except (FetchStatus, FetchTooLarge):
        pass  # it answered
    except FetchError as exc:
        # Offline, the exchange's name does not resolve, which the policy reports like a
        # refusal (it never tells which): say what it most likely means here.
        why = (
            "its name did not resolve to an address this server may fetch: no network? "
            "a private gateway must be listed in FETCH_ALLOWED_HOSTS"
            if isinstance(exc, FetchRefused)
            else str(exc)
        )
        raise LiveDemoError(
            f"Cannot reach {name} at {display_url(url)} ({why}); the live demo needs network "
            "access to the exchange, so nothing was created."
        ) from None
    return name


def live_symbols(exchange_id: str, quote: str | None = None) -> dict[str, str]:
    """Our symbol -> the exchange's, e.g. {"BTC-USD": "BTC/USDT"} on Binance."""
    quote = quote or ("USDT" if exchange_id in USDT_EXCHANGES else "USD")
    return {symbol: f"{symbol.split('-')[0]}/{quote}" for symbol in LIVE_SYMBOLS}


def live_agents(
    exchange_id: str,
    name: str,
    *,
    feeds: list[str] | None = None,
    base_url: str | None = None,
    quote: str | None = None,
) -> list[dict[str, Any]]:
    """The live graph's agents, in control.demo.DEMO_AGENTS' shape."""
    symbols = list(LIVE_SYMBOLS)
    market: dict[str, Any] = {
        "source": "exchange",
        "exchange": exchange_id,
        "symbols": live_symbols(exchange_id, quote),
        "timeframe": TIMEFRAME,
        "backfill_bars": BACKFILL_BARS,
    }
    if base_url:
        market["base_url"] = base_url
    return [
        {
            "agent_id": "market_data_live",
            "name": f"Live: {name} (BTC, ETH)",
            "kind": "market_data",
            "role": Role.DATA_FEED,
            "symbols": symbols,
            "config": market,
            "inputs_from": [],
            "position": (0, 10),
        },
        {
            "agent_id": "technical_live",
            "name": f"Technical analysis (live {name})",
            "kind": "technical",
            "role": Role.SPECIALIZED_TECHNICAL,
            "symbols": symbols,
            "config": {"tick_seconds": 1.0},
            "inputs_from": ["market_data_live"],
            "position": (1, 10),
        },
        {
            "agent_id": "sentiment_live",
            "name": "News sentiment (crypto news feeds)",
            "kind": "sentiment",
            "role": Role.SPECIALIZED_SENTIMENT,
            "symbols": symbols,
            "config": {
                "sources": ["rss"],
                "feeds": [{"url": url} for url in (feeds or DEFAULT_FEEDS)],
                "feed_poll_seconds": 300,
                "tick_seconds": 1.0,
            },
            "inputs_from": [],
            "position": (1, 11),
        },
        {
            "agent_id": "decision_live",
            "name": f"Decision (live {name})",
            "kind": "decision",
            "role": Role.DECISION,
            "symbols": symbols,
            "config": {"tick_seconds": 1.0, "weights": {"technical_live": 1.0, "sentiment_live": 0.5}},
            "inputs_from": ["technical_live", "sentiment_live"],
            "position": (2, 10),
        },
        {
            "agent_id": "execution_live",
            "name": f"Paper broker (live {name})",
            "kind": "execution",
            "role": Role.EXECUTION,
            "symbols": symbols,
            "config": {"tick_seconds": 0.5},
            "inputs_from": ["market_data_live"],
            "position": (3, 10),
        },
    ]


def live_sessions(name: str) -> list[dict[str, Any]]:
    """The live graph's sessions, in control.demo.DEMO_SESSIONS' shape."""
    return [
        {
            "session_id": "btc-live",
            "name": f"BTC on live {name} prices",
            "symbols": ["BTC-USD"],
            "starting_cash": "10000",
            "flatten_on_stop": False,
            "decision_agent_id": "decision_live",
            "execution_agent_id": "execution_live",
        },
        {
            "session_id": "eth-live",
            "name": f"ETH on live {name} prices",
            "symbols": ["ETH-USD"],
            "starting_cash": "10000",
            "flatten_on_stop": False,
            "decision_agent_id": "decision_live",
            "execution_agent_id": "execution_live",
        },
    ]


def _http_urls(value: Any) -> Iterator[str]:
    """Every http(s) URL in ccxt's nested `urls["api"]`, in order."""
    if isinstance(value, str):
        if value.startswith(("https://", "http://")):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _http_urls(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _http_urls(item)

"""Switching the demo graph between the simulated market and an exchange's live prices.

`manage.py seed_demo --live binance` points the demo's market data agent at the
exchange (docs/exchange-prices.md) and its news sentiment agent at real RSS feeds
(`--feed URL` chooses them); `--simulated` points both back. The demo stays
simulated by default, so `make run` needs no network. Everything goes through
control.services (validated, checked against the exchange's market list, audited, a
running agent reloads at once), so with no network the switch is refused with a
sentence and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.kinds import ConfigError, validate_config
from agents.kinds.exchange_client import UnknownExchange, check_exchange_id, exchange_label
from agents.kinds.exchange_markets import MarketsUnavailable, listed_symbols
from agents.models import Agent
from control import services
from control.demo import DEMO_AGENTS
from control.errors import InvalidInput, NotFound

FEED_ID = "market_data_sim"  # the demo's market data agent (its id predates live prices)
NEWS_ID = "sentiment_news"  # the demo's news sentiment agent
SIMULATED = next(spec for spec in DEMO_AGENTS if spec["agent_id"] == FEED_ID)
SIMULATED_NEWS = next(spec for spec in DEMO_AGENTS if spec["agent_id"] == NEWS_ID)
# Well-known public crypto news feeds (RSS): real headlines beside real prices. Each is
# fetched under the URL policy, with ETag/Last-Modified, every feed_poll_seconds.
DEFAULT_NEWS_FEEDS = (
    "https://www.coindesk.com/arc/outboundfeeds/rss/",
    "https://cointelegraph.com/rss",
    "https://decrypt.co/feed",
)
NEWS_POLL_SECONDS = 300
# Quote currencies a demo symbol BASE-USD may trade as, in order of preference: the
# dollar itself, then the dollar stablecoins. The choice is printed and stored in the
# config's symbol_map, explicit from then on.
DOLLAR_QUOTES = ("USD", "USDT", "USDC")


@dataclass
class Switched:
    name: str
    symbol_map: dict[str, str]


def demo_feed() -> Agent:
    agent = Agent.objects.filter(pk=FEED_ID).first()
    if agent is None:
        raise NotFound(f"The demo's market data agent {FEED_ID!r} does not exist; run seed_demo first.")
    return agent


def switch_to_exchange(
    exchange_id: str,
    base_url: str | None = None,
    timeframe: str = "1m",
    mapped: dict[str, str] | None = None,
) -> Switched:
    """Point the demo feed at `exchange_id` (`mapped`: markets chosen by the person, which
    the check at save verifies); InvalidInput (a sentence) if it cannot be."""
    agent = demo_feed()
    # A market named for a symbol the demo does not trade (a typo: BTC-UDS) would be
    # ignored, and the symbol meant traded on a market picked by the rule below instead.
    stray = sorted(set(mapped or {}) - set(agent.symbols))
    if stray:
        raise InvalidInput(
            f"The demo was not switched: it has no symbol {', '.join(stray)} to map "
            f"(it trades {', '.join(agent.symbols)}).",
            code="invalid",
        )
    # The draft's own fields (exchange id, timeframe, the base URL under the URL policy)
    # are checked as text first: a base URL the save would refuse is never requested.
    draft = {"source": "exchange", "exchange": exchange_id, "timeframe": timeframe}
    try:
        validate_config("market_data", {**draft, **({"base_url": base_url} if base_url else {})})
    except ConfigError as exc:
        raise InvalidInput(f"The demo was not switched: {exc}", code="invalid") from None
    try:
        exchange_id = check_exchange_id(exchange_id)
        listed = set(listed_symbols(exchange_id, base_url))
    except UnknownExchange as exc:
        raise InvalidInput(f"The demo was not switched: {exc}.", code="invalid") from None
    except MarketsUnavailable as exc:
        raise InvalidInput(f"The demo was not switched: {exc}.", code="unavailable") from None
    label = exchange_label(exchange_id)
    symbol_map = {}
    for symbol in agent.symbols:
        if mapped and symbol in mapped:
            symbol_map[symbol] = mapped[symbol]
            continue
        base, _, quote = symbol.partition("-")
        quotes = DOLLAR_QUOTES if quote == "USD" else (quote,)
        market = next((f"{base}/{q}" for q in quotes if f"{base}/{q}" in listed), None)
        if market is None:
            raise InvalidInput(
                f"The demo was not switched: {label} lists none of "
                f"{', '.join(f'{base}/{q}' for q in quotes)} for {symbol}.",
                code="invalid",
            )
        symbol_map[symbol] = market
    config = {
        "source": "exchange",
        "exchange": exchange_id,
        "timeframe": timeframe,
        "backfill_bars": 100,
        "symbol_map": symbol_map,
        "tick_seconds": 1.0,
        **({"base_url": base_url} if base_url else {}),
    }
    name = f"Live market: {label} ({', '.join(s.split('-')[0] for s in agent.symbols)})"
    services.update_agent(agent.agent_id, {"config": config, "name": name})
    return Switched(name, symbol_map)


def switch_news_to_feeds(feeds: list[str] | None = None) -> list[str]:
    """Point the demo's sentiment agent at real RSS/Atom feeds (the defaults above unless
    `feeds` names others); returns the feeds. InvalidInput (a sentence) for a URL the
    kind refuses, and nothing changes."""
    urls = list(feeds or DEFAULT_NEWS_FEEDS)
    agent = Agent.objects.filter(pk=NEWS_ID).first()
    if agent is None:
        raise NotFound(f"The demo's sentiment agent {NEWS_ID!r} does not exist; run seed_demo first.")
    config = {
        "sources": ["rss"],
        "feeds": [{"url": url} for url in urls],
        "feed_poll_seconds": NEWS_POLL_SECONDS,
        "tick_seconds": 1.0,
    }
    services.update_agent(agent.agent_id, {"config": config, "name": "News sentiment (crypto news feeds)"})
    return urls


def check_news_feeds(feeds: list[str]) -> None:
    """Refuse a feed list before anything is switched (InvalidInput), so a bad --feed
    leaves the market data as it was too."""
    from agents.kinds import ConfigError, validate_config

    try:
        validate_config("sentiment", {"sources": ["rss"], "feeds": [{"url": url} for url in feeds]})
    except ConfigError as exc:
        raise InvalidInput(f"The demo was not switched: {exc}", code="invalid") from None


def switch_to_simulated() -> str:
    """Point the demo feed back at the simulated market, and its sentiment agent back at
    the simulated news; returns the feed's name."""
    agent = demo_feed()
    services.update_agent(agent.agent_id, {"config": SIMULATED["config"], "name": SIMULATED["name"]})
    if Agent.objects.filter(pk=NEWS_ID).exists():
        services.update_agent(NEWS_ID, {"config": SIMULATED_NEWS["config"], "name": SIMULATED_NEWS["name"]})
    return SIMULATED["name"]

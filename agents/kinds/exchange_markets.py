"""Which exchange market each of our symbols means, and whether the exchange lists it.

Our symbols are `BASE-QUOTE` (BTC-USD); ccxt's are `BASE/QUOTE` (BTC/USD). A symbol maps
to the same pair on the exchange unless the config maps it explicitly (`BTC-USD` ->
`BTC/USDT`): a dollar stablecoin is not the dollar, so USDT is never guessed for USD.

A config is checked against the exchange's spot market list when it is saved. The list
is cached in Redis for an hour (MARKETS_TTL_SECONDS), so saving costs one download an
hour per exchange, not one per save.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import time

import ccxt
import redis

from agents.kinds.exchange_client import describe_error, make_exchange
from agents.runtime import keys
from agents.runtime.redis import get_redis

log = logging.getLogger(__name__)

MARKETS_TTL_SECONDS = 3600
# A failed download is remembered this long in the process, so a save that checks twice
# (before and inside its transaction) waits for an unreachable exchange once.
FAILURE_MEMORY_SECONDS = 10.0
_failures: dict[str, tuple[float, str]] = {}
# How many alternatives a refusal names.
SUGGESTIONS = 5


class MarketsUnavailable(Exception):
    """The market list could not be had (no network, the exchange down); str() says why."""


def exchange_symbol(symbol: str, symbol_map: dict[str, str]) -> str:
    """The exchange's notation of our `symbol`: the config's mapping, else BASE-QUOTE as BASE/QUOTE."""
    if symbol in symbol_map:
        return symbol_map[symbol]
    if symbol.count("-") == 1:
        base, quote = symbol.split("-")
        return f"{base}/{quote}"
    return symbol


def listed_symbols(exchange_id: str, base_url: str | None = None) -> list[str]:
    """The exchange's active spot symbols (ccxt notation), from the cache or the exchange."""
    key = keys.exchange_markets(exchange_id, _origin(base_url))
    client = get_redis()
    try:
        cached = client.get(key)
    except redis.RedisError:
        cached = None
    if cached:
        return list(json.loads(cached))
    failed_at, reason = _failures.get(key, (float("-inf"), ""))
    if time.monotonic() - failed_at < FAILURE_MEMORY_SECONDS:
        raise MarketsUnavailable(reason)
    exchange = make_exchange(exchange_id, base_url)
    try:
        markets = exchange.load_markets()
    except ccxt.BaseError as exc:
        reason = (
            f"the market list of {exchange.name} could not be loaded ({describe_error(exc)}); "
            "try again when the exchange answers"
        )
        now = time.monotonic()
        # Forget the old ones: each new base URL saved adds a key, which would stay forever.
        for stale in [k for k, (at, _) in _failures.items() if now - at >= FAILURE_MEMORY_SECONDS]:
            del _failures[stale]
        _failures[key] = (now, reason)
        raise MarketsUnavailable(reason) from None
    _failures.pop(key, None)
    symbols = sorted(
        symbol
        for symbol, market in markets.items()
        if market.get("spot") and market.get("active") is not False
    )
    try:
        client.set(key, json.dumps(symbols), ex=MARKETS_TTL_SECONDS)
    except redis.RedisError:
        log.warning("the market list of %s was not cached (Redis away)", exchange_id)
    return symbols


def map_problems(symbols: list[str], symbol_map: dict[str, str], exchange_name: str) -> list[tuple[str, str]]:
    """(field, sentence) for each symbol_map entry that cannot mean what its author meant,
    found without the network: a key that is none of the agent's symbols (a typo such as
    "BTC-UDS", or " BTC-USD", would otherwise be ignored and BTC-USD silently traded on
    BTC/USD instead of the market mapped), and two of our symbols trading one market (the
    same prices under two names, each position blind to the other)."""
    problems = []
    ours = ", ".join(symbols) or "none"
    for key in symbol_map:
        if key not in symbols:
            shown = repr(key if len(key) <= 40 else key[:40] + "...")
            problems.append(
                (
                    f"symbol_map.{key[:40]}",
                    f"{shown} is not one of this agent's symbols ({ours}); map only those",
                )
            )
    by_market: dict[str, list[str]] = {}
    for symbol in symbols:
        by_market.setdefault(exchange_symbol(symbol, symbol_map), []).append(symbol)
    for market, sharing in by_market.items():
        if len(sharing) > 1:
            field = next((f"symbol_map.{s}" for s in sharing if s in symbol_map), "symbol_map")
            problems.append(
                (
                    field,
                    f"{' and '.join(sharing)} would all trade {market} on {exchange_name}; "
                    "map each symbol to a market of its own",
                )
            )
    return problems


def symbol_problems(
    symbols: list[str], symbol_map: dict[str, str], listed: list[str], exchange_name: str
) -> list[tuple[str, str]]:
    """(field, sentence) for each of our symbols whose exchange market is not listed."""
    available = set(listed)
    problems = []
    for symbol in symbols:
        wanted = exchange_symbol(symbol, symbol_map)
        if wanted in available:
            continue
        field = f"symbol_map.{symbol}" if symbol in symbol_map else "symbols"
        problems.append((field, _not_listed(symbol, wanted, listed, exchange_name)))
    return problems


def _not_listed(symbol: str, wanted: str, listed: list[str], exchange_name: str) -> str:
    """A sentence naming what the exchange has instead: the same base's pairs, or close spellings."""
    # The same market in other letter case (btc/usdt): ccxt's symbols are case-sensitive.
    folded = next((s for s in listed if s.casefold() == wanted.casefold()), None)
    if folded is not None:
        return f"{exchange_name} has no market {wanted} for {symbol} (it lists {folded}: write it so)"
    base = wanted.split("/")[0]
    same_base = [s for s in listed if s.split("/")[0] == base]
    if same_base:
        quotes = sorted({s.split("/")[1].split(":")[0] for s in same_base})
        shown = ", ".join(f"{base}/{q}" for q in _favourites(quotes))
        more = len(quotes) - SUGGESTIONS
        example = f'{{"{symbol}": "{base}/{_favourites(quotes)[0]}"}}'
        hint = f"it lists {shown}" + (f" and {more} more" if more > 0 else "")
        hint += f"; map {symbol} to one of them in symbol_map, e.g. {example}"
    else:
        # Close spellings of the base (ETHH, BTCC), not of the whole pair: pairs that share
        # a quote currency look alike without being alike.
        bases = sorted({s.split("/")[0] for s in listed})
        close = difflib.get_close_matches(base, bases, n=SUGGESTIONS, cutoff=0.6)
        hint = f"it lists no {base} market"
        if close:
            hint += f"; close matches: {', '.join(close)}"
    return f"{exchange_name} has no market {wanted} for {symbol} ({hint})"


def _favourites(quotes: list[str]) -> list[str]:
    """The quote currencies people look for first, then the rest alphabetically."""
    usual = ["USD", "USDT", "USDC", "EUR", "BTC"]
    ordered = [q for q in usual if q in quotes] + [q for q in quotes if q not in usual]
    return ordered[:SUGGESTIONS]


def _origin(base_url: str | None) -> str:
    # Hashed: a base URL may be long, and a key should not carry an operator's URL verbatim.
    if not base_url:
        return "default"
    return hashlib.sha256(base_url.encode()).hexdigest()[:16]

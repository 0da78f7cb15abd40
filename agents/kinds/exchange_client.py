"""A ccxt exchange for public market data, whose every HTTP request goes through agents.net.fetch.

ccxt knows each exchange's endpoints, symbols, timeframes and rate limit; this module
only changes how it talks to the network: ccxt's own `fetch` (the one method every
request goes through) is replaced by one that calls agents.net.fetch, so an exchange's
URL, and a base URL an operator types, follow the same policy as every other URL a
worker requests (public hosts, or those in FETCH_ALLOWED_HOSTS; size and time limits;
no proxy from the environment). Failures become ccxt's own exceptions (NetworkError,
RequestTimeout, RateLimitExceeded, ExchangeNotAvailable, BadResponse), so callers
handle one family of errors whatever went wrong.

Public data only: no API key is ever set, and any request other than a GET is refused.
"""

from __future__ import annotations

import difflib
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import ccxt

from agents.net.fetch import FetchError, FetchRefused, FetchStatus, FetchTimeout
from agents.net.fetch import fetch as fetch_url

# A market list is large (Binance's spot exchangeInfo is several megabytes).
MAX_RESPONSE_BYTES = 40_000_000
# ccxt's timeout is in milliseconds; the whole request, redirects included, must end
# well within a step (STEP_TIMEOUT_SECONDS, 10 s by default; see exchange_feed's budget).
TIMEOUT_MS = 5_000
# ccxt's parsers assume each exchange's documented shapes: JSON of another shape (a proxy
# or gateway at a base URL, a changed API) raises these from deep inside them. To a
# caller that is a malformed answer like any other, so it becomes ccxt's BadResponse:
# the feed goes degraded and retries instead of the step failing (which stops the agent),
# and saving a config answers with a sentence instead of a 500.
_PARSE_FAULTS = (TypeError, AttributeError, KeyError, IndexError, ValueError)


class UnknownExchange(ValueError):
    """An exchange id ccxt does not know; str() is a sentence naming some it does."""


def exchange_ids() -> list[str]:
    """Every exchange id ccxt supports."""
    return list(ccxt.exchanges)


@cache
def exchange_label(exchange_id: str) -> str:
    """The exchange's name as people write it ("Binance", "Kraken"), for labels such as
    "Live: Binance"; the id itself for an id ccxt does not know."""
    if exchange_id not in ccxt.exchanges:
        return exchange_id
    name = getattr(ccxt, exchange_id)().name  # built once per id (cached), no request made
    return str(name) if name else exchange_id


# Units of one fixed length. A month's or a year's bars are not (28 to 31 days), and the
# feed tells a closed candle, the next one due and a gap apart by a fixed length: it would
# publish a 31-day month a day before it closed and drop a March after a 28-day February.
_FIXED_UNITS = frozenset("smhdw")


@cache
def offered_timeframes(exchange_id: str) -> tuple[str, ...]:
    """The bar lengths the exchange offers and the feed can follow, in ccxt's notation (no
    request made): of a fixed length, and readable by ccxt's parse_timeframe (ccxt's own
    table lists some it cannot read, such as Backpack's "15")."""
    exchange = getattr(ccxt, exchange_id)()
    usable = []
    for timeframe in exchange.timeframes or {}:
        if not isinstance(timeframe, str) or timeframe[-1:] not in _FIXED_UNITS:
            continue
        try:
            seconds = exchange.parse_timeframe(timeframe)
        except (ccxt.BaseError, ValueError):
            continue
        if seconds > 0:
            usable.append(timeframe)
    return tuple(usable)


def check_exchange_id(exchange_id: str) -> str:
    """The id, trimmed and lower-case, if ccxt knows it; UnknownExchange otherwise."""
    wanted = exchange_id.strip().lower()
    if wanted in ccxt.exchanges:
        return wanted
    close = difflib.get_close_matches(wanted, ccxt.exchanges, n=5, cutoff=0.6)
    examples = ", ".join(close or ["binance", "kraken", "coinbase", "bitstamp", "bitfinex"])
    raise UnknownExchange(
        f"ccxt knows no exchange {exchange_id!r}; ids look like {examples} "
        f"({len(ccxt.exchanges)} exchanges in all, see ccxt's list)"
    )


class _PolicyFetch:
    """Mixin for a ccxt exchange class: requests go through agents.net.fetch."""

    id: str
    timeout: int
    # True when an operator's base URL replaced the exchange's hosts: then a refusal reads
    # the same whatever its cause (agents.net.fetch), so saving reveals nothing about the
    # network. The exchange's own public hosts are no secret: a name that does not
    # resolve there means no network, and is said so.
    operator_url = False

    def load_markets(self, *args: Any, **kwargs: Any) -> Any:
        with _read_faults(self.id):
            return super().load_markets(*args, **kwargs)  # type: ignore[misc]

    def fetch_ohlcv(self, *args: Any, **kwargs: Any) -> Any:
        with _read_faults(self.id):
            return super().fetch_ohlcv(*args, **kwargs)  # type: ignore[misc]

    def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        if method != "GET" or body:
            raise ccxt.NotSupported(f"{self.id}: only public GET requests are made ({method} {url})")
        request_headers = self.prepare_request_headers(headers)  # type: ignore[attr-defined]
        try:
            response = fetch_url(
                url, headers=request_headers, max_bytes=MAX_RESPONSE_BYTES, timeout=self.timeout / 1000
            )
        except FetchTimeout as exc:
            raise ccxt.RequestTimeout(f"{self.id}: {exc}") from None
        except FetchRefused as exc:
            if not self.operator_url and exc.reason.endswith("does not resolve"):
                raise ccxt.NetworkError(f"{self.id}: {exc.reason} (no network or no DNS?)") from None
            # Not a network fault: retrying changes nothing until the operator allows the host.
            raise ccxt.PermissionDenied(f"{self.id}: {exc}") from None
        except FetchStatus as exc:
            # As ccxt does: the exchange's own error codes first (Binance's -1121 "Invalid
            # symbol" is BadSymbol), then its table of statuses (429 RateLimitExceeded,
            # 5xx ExchangeNotAvailable, ...).
            text = exc.body.decode("utf-8", errors="replace")
            self.handle_errors(  # type: ignore[attr-defined]
                exc.status, "", url, method, exc.headers, text, self.parse_json(text), request_headers, body
            )
            error = self.httpExceptions.get(str(exc.status), ccxt.ExchangeError)  # type: ignore[attr-defined]
            raise error(f"{self.id}: HTTP {exc.status} for {_path(url)}") from None
        except FetchError as exc:
            raise ccxt.NetworkError(f"{self.id}: {exc}") from None
        text = response.body.decode("utf-8", errors="replace")
        parsed = self.parse_json(text)  # type: ignore[attr-defined]
        # The exchange's own error answers (a JSON code with HTTP 200 on some exchanges).
        self.handle_errors(  # type: ignore[attr-defined]
            response.status, "", url, method, response.headers, text, parsed, request_headers, body
        )
        if parsed is None:
            raise ccxt.BadResponse(f"{self.id}: the answer to {_path(url)} is not JSON")
        return parsed


@contextmanager
def _read_faults(exchange_id: str) -> Iterator[None]:
    """ccxt's parser faults (see _PARSE_FAULTS) as BadResponse; ccxt's own errors as they are."""
    try:
        yield
    except ccxt.BaseError:
        raise
    except _PARSE_FAULTS as exc:
        raise ccxt.BadResponse(
            f"{exchange_id}: the answer could not be read ({type(exc).__name__} in ccxt's parser)"
        ) from exc


def make_exchange(exchange_id: str, base_url: str | None = None) -> ccxt.Exchange:
    """A ccxt exchange for public data: rate limited, spot markets, requests through our fetch.

    `base_url` (scheme, host and optional path prefix) replaces the origin of every API
    URL the exchange has, keeping each URL's path: a gateway, a proxy that mirrors the
    exchange, or a local recording in the tests."""
    exchange_id = check_exchange_id(exchange_id)
    base = getattr(ccxt, exchange_id)
    cls = type(f"Policy{base.__name__}", (_PolicyFetch, base), {})
    exchange = cls({"enableRateLimit": True, "timeout": TIMEOUT_MS})
    _spot_only(exchange)
    if base_url:
        exchange.urls["api"] = rebase(exchange.urls.get("api"), base_url)
        exchange.operator_url = True
    return exchange


def _spot_only(exchange: ccxt.Exchange) -> None:
    """Load spot markets only, where the exchange lets one say so: paper trading is spot,
    and the derivatives' lists would cost requests (and megabytes) for nothing."""
    exchange.options["defaultType"] = "spot"
    option = exchange.options.get("fetchMarkets")
    if isinstance(option, dict) and "types" in option:
        exchange.options["fetchMarkets"] = {**option, "types": ["spot"]}
    elif isinstance(option, list):
        exchange.options["fetchMarkets"] = ["spot"]


def check_base_url(base_url: str) -> str:
    """`base_url` if rebase can keep all of it: scheme, host, port and an optional path.
    A query or a fragment would be dropped from every request without a word (a gateway's
    `?token=...` would never reach it), so it is refused instead."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.query or parts.fragment or "?" in base_url or "#" in base_url:
        raise ValueError(
            "a base URL is a scheme, host and optional path, like https://gateway.example/binance: "
            "no query (?...) or fragment (#...), which would not reach the exchange"
        )
    return base_url


def rebase(api: Any, base_url: str) -> Any:
    """`api` (ccxt's urls['api']: a URL, or a dict of them, nested) with every URL's origin
    replaced by `base_url`'s, its path prefixed by `base_url`'s path; websocket URLs keep
    a websocket scheme (ws:// for an http:// base URL, wss:// for https://)."""
    if isinstance(api, dict):
        return {key: rebase(value, base_url) for key, value in api.items()}
    if not isinstance(api, str) or "://" not in api:
        return api
    base = urllib.parse.urlsplit(base_url.rstrip("/"))
    old = urllib.parse.urlsplit(api)
    scheme = base.scheme
    if old.scheme in ("ws", "wss"):  # a websocket stays one, at the base URL's host
        scheme = "wss" if base.scheme == "https" else "ws"
    return urllib.parse.urlunsplit((scheme, base.netloc, base.path + old.path, old.query, ""))


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def describe_error(exc: BaseException) -> str:
    """A short sentence for the card and the log: the kind of failure, then ccxt's words."""
    reasons = (
        # (Binance answers a 429 with a code ccxt reads as DDoSProtection, RateLimitExceeded's
        # parent: to a person both say slow down.)
        (ccxt.DDoSProtection, "rate limited"),
        (ccxt.RequestTimeout, "timed out"),
        (ccxt.ExchangeNotAvailable, "exchange not available"),
        (ccxt.BadResponse, "malformed answer"),
        (ccxt.PermissionDenied, "refused"),
        (ccxt.NetworkError, "unreachable"),
        (ccxt.BadSymbol, "market not listed"),
        (ccxt.OperationFailed, "the exchange failed to answer"),
    )
    reason = next((text for cls, text in reasons if isinstance(exc, cls)), type(exc).__name__)
    detail = str(exc).strip()
    return f"{reason}: {detail[:200]}" if detail else reason

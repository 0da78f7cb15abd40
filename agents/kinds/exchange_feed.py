"""Closed candles from an exchange, each once, in order: ccxt's fetch_ohlcv, or its websocket.

Once a candle should have closed (its open time plus the timeframe, by this machine's
clock) the feed asks for the candles since the last one it published: from the
exchange's websocket stream when it has one running and holding them (exchange_stream),
otherwise from the REST API (fetch_ohlcv, within ccxt's rate limit). Only
closed candles go out (the exchange's answer ends with the candle still forming), with
the exchange's own open times, and never one it already published. Candles the exchange
does not have are a gap: counted and logged, never filled in.

Any ccxt error (unreachable, timeout, HTTP 429 or 5xx, a malformed answer) puts the feed
in a degraded state, with the reason and since when, and the next attempt waits a
backoff that doubles up to MAX_BACKOFF_SECONDS; the first answer clears it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import ccxt

from agents.kinds.exchange_client import describe_error
from agents.validators import MAX_PRICE

# fetch_ohlcv's page: 1000 is Binance's largest; other exchanges cap it lower themselves.
MAX_PAGE = 1000
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
# After a candle's close time, how long to wait before asking for it: exchanges take a
# moment to close it. Capped by a tenth of the timeframe, for second bars.
SETTLE_SECONDS = 1.0
# A step must end well within its timeout (STEP_TIMEOUT_SECONDS, 10 s by default): once a
# poll has spent this long, the markets left wait for the next step (due at once), so a
# step is at most this plus one request (exchange_client.TIMEOUT_MS).
POLL_BUDGET_SECONDS = 2.0
# A candle that should have closed but is not in the exchange's answer yet (the exchange
# is late, or the market had no trade and the exchange skips empty candles) is asked for
# again this soon, not a whole timeframe later.
LATE_RETRY_SECONDS = 5.0
# ... and this soon when the websocket stream holds it but not final yet (the exchange
# has not sent the next candle): asking the stream again costs no request.
STREAM_LATE_RETRY_SECONDS = 1.0


class CandleStream(Protocol):
    """Candles from `since` on as ccxt rows, or None when the stream cannot vouch for them."""

    def candles_from(self, market: str, since: int) -> list[Any] | None: ...


@dataclass(frozen=True)
class Candle:
    symbol: str  # ours, BTC-USD
    market: str  # the exchange's, BTC/USDT
    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass
class Poll:
    """What one poll gave: new closed candles (oldest first), candles missing, bad rows."""

    candles: list[Candle]
    gaps: int = 0
    bad_rows: int = 0


class ExchangeFeed:
    """Polls one exchange for the closed candles of some markets."""

    def __init__(
        self,
        exchange: ccxt.Exchange,
        timeframe: str,
        markets: dict[str, str],
        backfill: int,
        last_open_ms: dict[str, int],
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.exchange = exchange
        self.timeframe = timeframe
        self.tf_ms = int(exchange.parse_timeframe(timeframe) * 1000)
        self.markets = markets  # ours -> the exchange's
        self.backfill = backfill
        self.last_open_ms = dict(last_open_ms)
        self.log = log
        self.clock = clock
        self.next_poll = 0.0
        self.markets_loaded = False
        # Markets still to poll this round, when a poll ran out of its time budget.
        self.pending: list[str] = []
        # With no backfill: the open time of each symbol's first candle to publish.
        self.live_from: dict[str, int] = {}
        # Where candles come from first, when the exchange streams them (exchange_stream).
        self.stream: CandleStream | None = None
        self.streamed = 0  # candles read from the stream, for tests and the bench
        self.stream_answered = False  # in the last poll
        # The degraded state: why, since when (wall clock), and the current backoff.
        self.failure: str | None = None
        self.failed_since = 0.0
        self.backoff = 0.0

    @property
    def last_bar_at(self) -> float | None:
        """Wall-clock time the newest published candle closed (its price's time), if any."""
        if not self.last_open_ms:
            return None
        return (max(self.last_open_ms.values()) + self.tf_ms) / 1000

    def due(self) -> bool:
        return self.clock() >= self.next_poll

    def poll(self) -> Poll:
        """The closed candles not yet published, of every market; on a ccxt error the
        degraded state is set (see failed) and whatever came before it is returned."""
        result = Poll([])
        self.stream_answered = False
        started = self.clock()
        if not self.pending:
            self.pending = list(self.markets)
        market_problem: ccxt.BaseError | None = None
        try:
            if not self.markets_loaded:
                self.exchange.load_markets()
                self.markets_loaded = True
            while self.pending:
                symbol = self.pending[0]
                try:
                    done = self._poll_market(symbol, self.markets[symbol], result, started)
                except (ccxt.BadSymbol, ccxt.BadRequest) as exc:
                    # This market's own fault (delisted since the config was saved): the
                    # others go on; the feed still shows itself degraded.
                    market_problem, done = market_problem or exc, True
                if not done:
                    break  # out of time with pages still to fetch: the next step goes on
                self.pending.pop(0)
                if self.clock() - started > POLL_BUDGET_SECONDS:
                    break
        except ccxt.BaseError as exc:
            self.failed(exc)
        else:
            if market_problem is not None:
                self.failed(market_problem)
            else:
                self._succeeded()
        result.candles.sort(key=lambda c: (c.open_ms, c.symbol))
        return result

    def _poll_market(self, symbol: str, market: str, result: Poll, started: float) -> bool:
        """Fetch the market's new closed candles into `result`; False if the time budget
        ran out before the last page."""
        now_ms = int(self.clock() * 1000)
        last = self.last_open_ms.get(symbol)
        if last is None and self.backfill == 0:
            # No history wanted: from the first candle that closes after the start.
            since = self.live_from.setdefault(symbol, (now_ms // self.tf_ms) * self.tf_ms)
        elif last is None:
            # First start: the `backfill` newest closed candles.
            newest_closed_open = (now_ms // self.tf_ms - 1) * self.tf_ms
            # (Not before 1970: a long backfill of long bars, 1000 x 4w, reaches back past
            # it, and a negative start is an error on some exchanges, forever after.)
            since = max(0, newest_closed_open - (self.backfill - 1) * self.tf_ms)
        else:
            since = last + self.tf_ms
        expected = since  # the open time the next candle should have
        while since + self.tf_ms <= now_ms:
            rows = self._fetch(market, since)
            fresh = []
            for row in rows:
                candle = to_candle(symbol, market, row)
                if candle is None:
                    result.bad_rows += 1
                    continue
                # Closed only, and each once (an exchange may answer from before `since`).
                if candle.open_ms + self.tf_ms > now_ms or candle.open_ms < expected:
                    continue
                if candle.open_ms > expected and (last is not None or fresh):
                    # (Before the first backfilled candle it is only history the exchange
                    # does not have, a market listed recently: not a gap.)
                    missing = (candle.open_ms - expected) // self.tf_ms
                    result.gaps += missing
                    self.log.warning(
                        "%s: %d %s candle(s) missing before %s (a gap; nothing is filled in)",
                        market,
                        missing,
                        self.timeframe,
                        self.exchange.iso8601(candle.open_ms),
                    )
                fresh.append(candle)
                expected = candle.open_ms + self.tf_ms
            result.candles.extend(fresh)
            if fresh:
                self.last_open_ms[symbol] = fresh[-1].open_ms
            if len(rows) < MAX_PAGE or not fresh:
                break
            since = expected  # a full page: there may be more
            if self.clock() - started > POLL_BUDGET_SECONDS:
                return False
        return True

    def _fetch(self, market: str, since: int) -> list[Any]:
        """The candles from `since` on: from the websocket stream when it holds them,
        otherwise (no stream, not connected, or it missed `since`) from the REST API."""
        if self.stream is not None:
            rows = self.stream.candles_from(market, since)
            if rows is not None:
                self.streamed += len(rows)
                self.stream_answered = True
                return rows
        return self.exchange.fetch_ohlcv(market, self.timeframe, since=since, limit=MAX_PAGE)

    def schedule(self) -> None:
        """Set the next poll: when the next candle has closed (and settled), or the backoff."""
        now = self.clock()
        if self.failure is not None:
            self.next_poll = now + self.backoff
            return
        if self.pending:
            self.next_poll = now  # the round is not finished: go on at the next step
            return
        tf = self.tf_ms / 1000
        settle = min(SETTLE_SECONDS, tf / 10)
        next_close = (math.floor(now / tf) + 1) * tf
        self.next_poll = next_close + settle
        newest_closed_open = (int(now * 1000) // self.tf_ms - 1) * self.tf_ms
        if any(self.last_open_ms.get(s, newest_closed_open) < newest_closed_open for s in self.markets):
            late = STREAM_LATE_RETRY_SECONDS if self.stream_answered else LATE_RETRY_SECONDS
            self.next_poll = min(self.next_poll, now + late)

    def failed(self, exc: BaseException) -> None:
        reason = describe_error(exc)
        if self.failure is None:
            self.failed_since = self.clock()
            self.log.warning("degraded: %s; retrying with backoff", reason)
        elif reason != self.failure:
            self.log.warning("still degraded, now: %s", reason)
        self.failure = reason
        self.backoff = min(MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, self.backoff * 2))

    def _succeeded(self) -> None:
        if self.failure is not None:
            self.log.info("recovered after %.0f s (was: %s)", self.clock() - self.failed_since, self.failure)
        self.failure = None
        self.failed_since = 0.0
        self.backoff = 0.0


def to_candle(symbol: str, market: str, row: object) -> Candle | None:
    """ccxt's [ms, open, high, low, close, volume] as a Candle, or None if unusable."""
    if not isinstance(row, list | tuple) or len(row) < 6:
        return None
    ts, *values = row[:6]
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return None
    prices = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        prices.append(float(value))
    open_, high, low, close, volume = prices
    if min(open_, high, low, close) <= 0 or volume < 0:
        return None
    # What a fill can be booked at, as for a CSV row (csv_replay) and the simulator: a
    # gateway's 1e300 went on to the technical agent and the sessions otherwise.
    if high >= MAX_PRICE:
        return None
    if high < max(open_, close, low) or low > min(open_, close):
        return None
    return Candle(symbol, market, int(ts), open_, high, low, close, volume)

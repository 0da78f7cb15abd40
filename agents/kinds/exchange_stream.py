"""Candles from an exchange's websocket (ccxt.pro's watch_ohlcv), for ExchangeFeed to read instead of polling.

The stream only replaces how candles are fetched: ExchangeFeed still decides which
candles are closed, publishes each once and reports gaps. It asks `candles_from(market,
since)`: the stream answers with the candles it holds from `since` on, or None when it
cannot vouch for them (not connected, silent, or it never saw `since`: a reconnect lost
it), and then the feed asks the exchange's REST API, where the history is.

All streams of a worker process share one asyncio event loop, in a daemon thread started
the first time a stream is (after the worker forked). An agent's stream holds one ccxt.pro
exchange (one websocket, ccxt multiplexes its markets) with one watch task per market,
under a supervisor: when any task fails (cannot connect, the connection drops, the
exchange is silent for longer than two timeframes plus SILENCE_SLACK_SECONDS, which also
catches answers ccxt cannot read) it closes the exchange, forgets the candles of that
connection, waits a backoff and connects again. Meanwhile `problem` says why, for the
card, and the feed polls.

The websocket obeys the URL policy as every request does (agents.net.aio_session).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import ccxt
import ccxt.pro

from agents.kinds.exchange_client import TIMEOUT_MS, _spot_only, describe_error, rebase
from agents.kinds.exchange_feed import to_candle
from agents.net.aio_session import PolicyRefused, policy_session
from agents.net.fetch import REFUSED, Resolver

SILENCE_SLACK_SECONDS = 3.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# A candle the stream holds is final once a newer one has been seen (the exchange sends
# updates in order) or this long after its close (an exchange pushes updates every 1-2 s).
SETTLE_SECONDS = 2.0
# Candles kept per market: the feed reads them within a step or two.
KEEP_CANDLES = 50
CLOSE_TIMEOUT_SECONDS = 5.0

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for streams, started on first use (again in a forked child)."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or not _loop.is_running():
            loop = asyncio.new_event_loop()
            started = threading.Event()
            loop.call_soon(started.set)
            threading.Thread(target=loop.run_forever, name="exchange-streams", daemon=True).start()
            started.wait(5)
            _loop, _loop_pid = loop, os.getpid()
        return _loop


@cache
def streams_ohlcv(exchange_id: str) -> bool:
    """True when ccxt.pro can watch the exchange's candles (no request made)."""
    cls = getattr(ccxt.pro, exchange_id, None)
    return cls is not None and bool(cls().has.get("watchOHLCV"))


class StreamSilent(ccxt.NetworkError):
    pass


def final_run(rows: dict[int, list[Any]], since: int, tf_ms: int, now_ms: float) -> list[list[Any]] | None:
    """Of the candles held (open time -> ccxt row), the final ones from `since` on without a
    hole; None if `since` is not held (the stream cannot vouch for it)."""
    if since not in rows:
        return None
    newest = max(rows)
    out = []
    t = since
    # Final: a newer candle came after it, or its close is SETTLE_SECONDS past.
    while t in rows and (t < newest or t + tf_ms + SETTLE_SECONDS * 1000 <= now_ms):
        out.append(rows[t])
        t += tf_ms
    return out


class ExchangeStream:
    """Watches some markets' candles on one exchange's websocket, in the process's event loop."""

    def __init__(
        self,
        exchange_id: str,
        base_url: str | None,
        timeframe: str,
        markets: list[str],
        loaded: ccxt.Exchange,
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
        resolver: Resolver | None = None,
    ) -> None:
        self.exchange_id = exchange_id
        self.base_url = base_url
        self.timeframe = timeframe
        self.tf_ms = int(loaded.parse_timeframe(timeframe) * 1000)
        self.markets = list(markets)
        # The market list the feed's exchange loaded over REST: the websocket exchange
        # needs it and must not download it again.
        self._market_list = (loaded.markets, loaded.currencies)
        self.log = log
        self.clock = clock
        self.resolver = resolver
        self.silence_limit = 2 * self.tf_ms / 1000 + SILENCE_SLACK_SECONDS
        self._lock = threading.Lock()
        self._rows: dict[str, dict[int, list[Any]]] = {m: {} for m in self.markets}
        self._heard: dict[str, float] = {}
        self.connected_at = clock()  # when the current connection was begun
        self.problem: str | None = None  # why the stream cannot be used now
        self.problem_since = 0.0
        self.connections = 0  # websocket exchanges made, for tests and logs
        self._backoff = 0.0
        self._closed = False
        self._finished = threading.Event()
        self._future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
            self._supervise(), event_loop()
        )

    # --- read by the feed (any thread) ---

    def candles_from(self, market: str, since: int) -> list[list[Any]] | None:
        """The final candles from `since` on, consecutive, as ccxt rows; None if the stream
        cannot vouch for `since` (the feed then asks REST)."""
        now_ms = self.clock() * 1000
        with self._lock:
            if not self._live(market):
                return None
            return final_run(self._rows[market], since, self.tf_ms, now_ms)

    def note(self) -> tuple[str, float] | None:
        """Why the feed is polling instead of streaming, and since when; None when it streams
        (or has not had the time to)."""
        now = self.clock()
        with self._lock:
            if self.problem is not None:
                return f"websocket {self.problem}; polling instead", self.problem_since
            heard = {m: self._heard.get(m, self.connected_at) for m in self.markets}
            quiet = [m for m in self.markets if now - heard[m] > self.silence_limit]
            if quiet:
                since = min(heard[m] for m in quiet)
                return f"websocket silent for {now - since:.0f} s; polling instead", since
        return None

    def _live(self, market: str) -> bool:
        heard = self._heard.get(market)
        return self.problem is None and heard is not None and self.clock() - heard <= self.silence_limit

    def close(self) -> None:
        """Stop watching: the tasks end and the exchange's websocket and session close."""
        if self._closed:
            return
        self._closed = True
        self._future.cancel()  # cancels the supervisor in its loop; its finally closes
        if not self._finished.wait(CLOSE_TIMEOUT_SECONDS):
            self.log.warning("the websocket took more than %.0f s to close", CLOSE_TIMEOUT_SECONDS)

    @property
    def closed(self) -> bool:
        """True once the tasks ended and the websocket and session are closed."""
        return self._finished.is_set()

    # --- in the event loop ---

    async def _supervise(self) -> None:
        try:
            await self._connect_forever()
        finally:
            self._finished.set()

    async def _connect_forever(self) -> None:
        while True:
            exchange, session, tasks = None, None, []
            try:
                with self._lock:
                    self.connected_at = self.clock()
                session = policy_session(self.resolver)
                exchange = self._make_exchange(session)
                self.connections += 1
                tasks = [asyncio.create_task(self._watch(exchange, m)) for m in self.markets]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                raise next(t.exception() for t in done if t.exception() is not None)  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                with self._lock:
                    # Candles of a lost connection may have missed their last update.
                    for rows in self._rows.values():
                        rows.clear()
                    self._heard.clear()
                if exchange is not None:
                    await _quietly(exchange.close())
                if session is not None:
                    await _quietly(session.close())
            await asyncio.sleep(self._backoff)

    def _make_exchange(self, session: Any) -> Any:
        cls = getattr(ccxt.pro, self.exchange_id)
        exchange = cls(
            {
                "enableRateLimit": True,
                "timeout": TIMEOUT_MS,
                "session": session,
                "asyncio_loop": asyncio.get_running_loop(),
            }
        )
        exchange.timeout_on_exit = 0  # close() would sleep 250 ms for a lingering request
        _spot_only(exchange)
        if self.base_url:
            exchange.urls["api"] = rebase(exchange.urls.get("api"), self.base_url)
        exchange.set_markets(*self._market_list)
        return exchange

    async def _watch(self, exchange: Any, market: str) -> None:
        while True:
            try:
                rows = await asyncio.wait_for(
                    exchange.watch_ohlcv(market, self.timeframe), timeout=self.silence_limit
                )
            except TimeoutError:
                raise StreamSilent(f"no candle of {market} for {self.silence_limit:.0f} s") from None
            self._received(market, rows)

    def _received(self, market: str, rows: list[list[Any]]) -> None:
        # Only a candle the feed would accept is held, and counts as hearing from the
        # exchange: an unusable one (a price that is not a number) is not held, so the
        # feed asks REST for it instead of counting a gap, and an exchange sending
        # nothing else is silent.
        usable = [row for row in rows if to_candle("", market, row) is not None]
        if not usable:
            return
        with self._lock:
            kept = self._rows[market]
            for row in usable:
                # A copy: ccxt updates the forming candle's row in place, in its own cache.
                kept[int(row[0])] = list(row)
            for t in sorted(kept)[:-KEEP_CANDLES]:
                del kept[t]
            self._heard[market] = self.clock()
            if self.problem is not None:
                self.log.info(
                    "websocket back after %.0f s (was: %s)", self.clock() - self.problem_since, self.problem
                )
            self.problem = None
            self._backoff = 0.0

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, StreamSilent):
            reason = f"silent: {exc}"
        elif _refused(exc):
            reason = REFUSED  # "refused by policy: ..."
        elif isinstance(exc, ccxt.BaseError):
            reason = describe_error(exc)
        else:
            reason = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
        with self._lock:
            if self.problem is None:
                self.problem_since = self.clock()
                self.log.warning("websocket %s; polling, and reconnecting with backoff", reason)
            self.problem = reason
        self._backoff = min(MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, self._backoff * 2))


def _refused(exc: BaseException) -> bool:
    """True when the URL policy refused the connection (ccxt re-raises it as a NetworkError
    carrying the refusal's words, or chains it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PolicyRefused) or REFUSED in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _quietly(closing: Any) -> None:
    try:
        await asyncio.wait_for(closing, timeout=CLOSE_TIMEOUT_SECONDS)
    except Exception:  # closing a broken connection may fail; it is gone either way
        pass

"""The `market_data` kind: the head of the signal graph, publishing one OHLCV bar per symbol.

Three sources: a seeded simulator (regime-switching GBM with jumps, see simulated_market),
the replay of a CSV file under settings.MARKET_DATA_DIR (see csv_replay), or an
exchange's closed candles through ccxt (see exchange_feed, docs/exchange-prices.md).
Every message says where it came from in `source`, and simulated data always says
"simulated", so nothing downstream can present it as real prices.

Every bar's `ts` is its open and `interval_seconds` its length. A simulated bar spans the
wall time since the previous step unless the config's `speed` accelerates it; its messages
carry that `speed` (see market_time, and sources for the labels shown to people).

The simulated source also writes news (see headlines): a headline for each price jump,
plus occasional noise headlines between jumps, published as `type: "news"` messages
labelled `source: "simulated"` for the sentiment kind to score offline.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from agents.kinds import register
from agents.kinds.base import AgentKind, KindConfig, Price, StepContext, StepResult
from agents.kinds.csv_replay import BadRow, CsvReplay, parse_timestamp, resolve_csv_path
from agents.kinds.exchange_client import (
    check_base_url,
    check_exchange_id,
    exchange_label,
    make_exchange,
    offered_timeframes,
)
from agents.kinds.exchange_feed import Candle, ExchangeFeed
from agents.kinds.exchange_markets import (
    MarketsUnavailable,
    exchange_symbol,
    listed_symbols,
    map_problems,
    symbol_problems,
)
from agents.kinds.exchange_stream import ExchangeStream, streams_ohlcv
from agents.kinds.headlines import Headline, NewsDesk
from agents.kinds.market_time import MarketClock, MarketTimeOver, bar_end_epoch
from agents.kinds.simulated_market import MarketParams, SymbolPath, default_price
from agents.net.url_policy import FetchableUrl
from agents.validators import MAX_AGENT_SYMBOLS, MAX_SEED

SUMMARY_SYMBOLS = 5
# How many of its own newest messages per symbol a restart reads to find each symbol's
# last bar (see MarketData._last_bars).
RESUME_MESSAGES_PER_SYMBOL = 4
# An exchange feed publishes candles of all its symbols interleaved by time, but one may
# lag (a market that traded nothing): a restart reads this many messages per symbol.
EXCHANGE_RESUME_MESSAGES_PER_SYMBOL = 50
MAX_BACKFILL = 1000
# ccxt's notation: BASE/QUOTE, with :SETTLE for derivatives.
_EXCHANGE_SYMBOL = re.compile(r"[A-Za-z0-9._-]{1,32}/[A-Za-z0-9._-]{1,32}(:[A-Za-z0-9._-]{1,32})?")


def _market_data_dir() -> Path:
    from django.conf import settings

    return Path(settings.MARKET_DATA_DIR)


@register
class MarketData(AgentKind):
    """Publishes a bar per symbol each step, simulated or replayed from a CSV."""

    name = "market_data"
    description = (
        "Market prices for the graph: one OHLCV bar per symbol per step, either simulated "
        "(seeded, regime-switching random walk with jumps; labelled 'simulated') or "
        "replayed from a CSV file in the market data folder."
    )
    roles = ("data_feed",)

    class Config(KindConfig):
        source: Literal["simulated", "csv", "exchange"] = Field(
            "simulated", description="Where prices come from."
        )
        # --- simulated ---
        seed: int | None = Field(
            None,
            ge=-MAX_SEED,
            le=MAX_SEED,
            description="Random seed; empty derives a stable one from the agent id, so restarts repeat.",
        )
        initial_prices: dict[str, Price] = Field(
            default_factory=dict,
            max_length=MAX_AGENT_SYMBOLS,
            description="Starting price per symbol; others start at BTC-USD 65000, ETH-USD 3400, else 100.",
        )
        annual_volatility: float = Field(0.6, gt=0, le=20, description="Annualised volatility (0.6 = 60%).")
        drift: float = Field(0.0, ge=-10, le=10, description="Annualised drift (0.1 = +10% a year).")
        high_vol_multiplier: float = Field(
            3.0, ge=1, le=100, description="Volatility multiplier in the high-volatility regime."
        )
        regime_switch_probability: float = Field(
            0.01,
            ge=0,
            le=1,
            description="Chance per simulated minute of switching between normal and high volatility.",
        )
        jump_probability: float = Field(
            0.002, ge=0, le=1, description="Chance per simulated minute of a price jump."
        )
        jump_std: float = Field(0.03, ge=0, le=1, description="Standard deviation of a jump's log size.")
        speed: float = Field(
            1.0,
            ge=1,
            le=100_000,
            description="Simulated market time per wall-clock second. 1 = real time: a bar spans the "
            "wall time between steps, so the market moves like a real one. Above 1 the simulation is "
            "accelerated (60 = a simulated minute per second), its bars run ahead of the clock, and "
            "the panel labels it 'Simulated, 60x'.",
        )
        news_on_jumps: bool = Field(
            True, description="Publish a simulated news headline with each simulated price jump."
        )
        # 0.02 at the default tick of 1 s is ~1.2 noise headlines a minute per symbol (plus
        # ~0.12 from jumps), so the sentiment kind has text to read within a minute or so.
        news_probability: float = Field(
            0.02,
            ge=0,
            le=1,
            description="Chance per step per symbol of a simulated headline between jumps (0 = none).",
        )
        # --- csv ---
        csv_path: str | None = Field(
            None,
            max_length=1000,
            validate_default=True,
            description="CSV file under the market data folder (relative or absolute); required for csv.",
        )
        loop_at_end: bool = Field(False, description="Replay the CSV from the top when it ends.")
        # --- exchange ---
        exchange: str | None = Field(
            None,
            max_length=50,
            validate_default=True,
            description="ccxt id of the exchange (binance, kraken, coinbase, bitstamp, ...); "
            "required for exchange. Public market data only, no API key.",
        )
        timeframe: str = Field(
            "1m", max_length=10, description="Bar length, in ccxt's notation (1m, 5m, 1h, 1d)."
        )
        backfill_bars: int = Field(
            100,
            ge=0,
            le=MAX_BACKFILL,
            description="Bars of history published on start, so indicators are warm before "
            "the first live bar.",
        )
        base_url: FetchableUrl | None = Field(
            None,
            max_length=2000,
            description="Optional origin replacing the exchange's API host (a gateway, a proxy "
            "mirroring the exchange, a local recording); private hosts only if listed in "
            "FETCH_ALLOWED_HOSTS.",
        )
        stream: Literal["auto", "poll"] = Field(
            "auto",
            description="auto: candles over the exchange's websocket where ccxt streams them "
            "(watchOHLCV), polling its REST API while the websocket is down; poll: REST only.",
        )
        symbol_map: dict[str, str] = Field(
            default_factory=dict,
            max_length=MAX_AGENT_SYMBOLS,
            description='Our symbol -> the exchange\'s market, e.g. {"BTC-USD": "BTC/USDT"}; '
            "unmapped BTC-USD means BTC/USD (USDT is never assumed for USD).",
        )

        @field_validator("csv_path")
        @classmethod
        def _check_csv_path(cls, value: str | None, info: ValidationInfo) -> str | None:
            """A field validator (not a model one) so the error names csv_path, not the whole config."""
            if info.data.get("source") != "csv":
                return value
            if not value or not value.strip():
                raise ValueError("required when source is 'csv'")
            resolve_csv_path(value.strip(), _market_data_dir())
            return value.strip()

        @field_validator("exchange")
        @classmethod
        def _check_exchange(cls, value: str | None, info: ValidationInfo) -> str | None:
            if info.data.get("source") != "exchange":
                return value
            if not value or not value.strip():
                raise ValueError("required when source is 'exchange'")
            return check_exchange_id(value)

        @field_validator("timeframe")
        @classmethod
        def _check_timeframe(cls, value: str, info: ValidationInfo) -> str:
            exchange_id = info.data.get("exchange")
            if info.data.get("source") != "exchange" or not exchange_id:
                return value
            offered = offered_timeframes(exchange_id)
            if not offered:
                raise ValueError(
                    f"{exchange_label(exchange_id)} offers no candles through ccxt; choose another exchange"
                )
            if value not in offered:
                raise ValueError(
                    f"{exchange_label(exchange_id)} offers no {value!r} bars; it offers {', '.join(offered)}"
                )
            return value

        @field_validator("base_url")
        @classmethod
        def _check_base_url(cls, value: str | None) -> str | None:
            return None if value is None else check_base_url(value)

        @field_validator("symbol_map")
        @classmethod
        def _check_symbol_map(cls, value: dict[str, str]) -> dict[str, str]:
            for ours, theirs in value.items():
                if not _EXCHANGE_SYMBOL.fullmatch(theirs):
                    raise ValueError(
                        f"{theirs!r} (for {ours}) is not a market in ccxt's notation, e.g. BTC/USDT"
                    )
            return value

    @classmethod
    def check_agent(cls, config: KindConfig, symbols: list[str]) -> list[tuple[str, str]]:
        """An exchange config's markets must be listed by the exchange (its cached market list)."""
        assert isinstance(config, cls.Config)
        if config.source != "exchange" or not config.exchange:
            return []
        problems = map_problems(symbols, config.symbol_map, exchange_label(config.exchange))
        if problems:
            return problems  # (no market list is needed to say so)
        try:
            listed = listed_symbols(config.exchange, config.base_url)
        except MarketsUnavailable as exc:
            return [("exchange", f"cannot check the symbols: {exc}")]
        return symbol_problems(symbols, config.symbol_map, listed, exchange_label(config.exchange))

    config: Config

    def __init__(self, ctx: StepContext, config: KindConfig, now: Callable[[], float] = time.time) -> None:
        super().__init__(ctx, config)
        self._now = now
        self._clock: MarketClock | None = None
        self._paths: dict[str, SymbolPath] | None = None
        self._news: dict[str, NewsDesk] = {}
        self._replay: CsvReplay | None = None
        # The CSV's bar size: the smallest gap seen between its timestamps (a weekend's
        # gap is not a longer bar), unknown until the second timestamp.
        self._csv_prev: datetime | None = None
        self._csv_interval: float | None = None
        self._feed: ExchangeFeed | None = None
        self._stream: ExchangeStream | None = None

    def step(self) -> StepResult:
        """Publish the next bar for each symbol (simulated now, or the CSV's next timestamp)."""
        if not self.ctx.symbols:
            return StepResult(summary="no symbols configured")
        if self.config.source == "csv":
            return self._step_csv()
        if self.config.source == "exchange":
            return self._step_exchange()
        return self._step_simulated()

    def close(self) -> None:
        """Close the CSV file, if one is open, and the exchange's websocket, if one is."""
        if self._replay is not None:
            self._replay.close()
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    # --- simulated ---

    def _seed(self) -> int:
        if self.config.seed is not None:
            return self.config.seed
        return int.from_bytes(hashlib.sha256(self.ctx.agent_id.encode()).digest()[:8], "big")

    def _start_simulated(self) -> dict[str, SymbolPath]:
        """Build one path per symbol, each resuming from its own last bar when there is one."""
        params = MarketParams(**self.config.model_dump(include=set(MarketParams.__dataclass_fields__)))
        last_bars = self._last_bars()
        seed, paths = self._seed(), {}
        resume_end = _bar_end(last_bars.values())
        self._clock = MarketClock(self.config.tick_seconds, self.config.speed, resume_end, now=self._now)
        for symbol in self.ctx.symbols:
            price = self.config.initial_prices.get(symbol) or default_price(symbol)
            high = False
            bar = last_bars.get(symbol)
            if bar is not None:
                price, high = float(bar["close"]), bar.get("regime") == "high"
                self.ctx.log.info("resuming %s from last close %s", symbol, bar["close"])
            paths[symbol] = SymbolPath(symbol, price, seed, params, high=high)
            self._news[symbol] = NewsDesk(symbol, seed)
        return paths

    def _last_bars(self) -> dict[str, dict[str, Any]]:
        """The newest bar of each of our symbols among our latest messages.

        A step publishes at most a bar and a headline per symbol, so the last two steps
        are within 4 x symbols messages (two, in case the last step was cut short).
        """
        wanted = set(self.ctx.symbols)
        found: dict[str, dict[str, Any]] = {}
        for message in self.ctx.recent_published(RESUME_MESSAGES_PER_SYMBOL * len(wanted)):
            symbol, close = message.get("symbol"), message.get("close")
            if (
                message.get("type") == "bar"
                and symbol in wanted
                and symbol not in found
                and isinstance(close, (int, float))
                and not isinstance(close, bool)
                and math.isfinite(close)
                and close > 0
            ):
                found[symbol] = message
                if len(found) == len(wanted):
                    break
        return found

    def _step_simulated(self) -> StepResult:
        if self._paths is None:
            self._paths = self._start_simulated()
        assert self._clock is not None
        try:
            span = self._clock.next_span()
        except MarketTimeOver as exc:
            # Like a CSV's end of file: nothing to publish, said on the card, still running.
            return StepResult(did_work=False, summary=str(exc))
        ts = span.open_iso()
        messages, news = [], []
        for symbol, path in self._paths.items():
            bar = path.next_bar(span.seconds)
            messages.append(
                {
                    "type": "bar",
                    "ts": ts,
                    "symbol": symbol,
                    **bar,
                    "price": bar["close"],
                    "interval_seconds": round(span.seconds, 3),
                    "source": "simulated",
                    "speed": self.config.speed,
                }
            )
            headline = self._headline(symbol, path, bar["jump"])
            if headline is not None:
                news.append(
                    {
                        "type": "news",
                        "ts": ts,
                        "symbol": symbol,
                        "headline": headline.text,
                        "source": "simulated",
                        "direction": headline.direction,
                        "jump": headline.jump,
                    }
                )
        # News goes out before the bars so this agent's newest messages are bars, which
        # is what a restart resumes its prices from (see _last_bars).
        for msg in news:
            self.ctx.publish(msg)
        result = self._publish(messages, {"news": len(news)} if news else {})
        result.published += len(news)
        return result

    def _headline(self, symbol: str, path: SymbolPath, jump: bool) -> Headline | None:
        """The jump's headline if it jumped (and news_on_jumps), else maybe a noise one."""
        desk = self._news[symbol]
        # At most one headline per symbol per step: a jump's replaces the noise one, whose
        # chance is still drawn so the news stream does not depend on the price path.
        noise = desk.noise_headline(self.config.news_probability)
        if jump and self.config.news_on_jumps:
            return desk.jump_headline(path.last_jump)
        return noise

    # --- csv ---

    def _start_replay(self) -> CsvReplay:
        path = resolve_csv_path(self.config.csv_path or "", _market_data_dir())
        source = f"csv:{path.name}"
        after, published = None, None
        # A step publishes one timestamp's bars, at most one per symbol.
        recent = self.ctx.recent_published(max(len(self.ctx.symbols), 1))
        last = recent[0] if recent else {}
        if last.get("source") == source:
            try:
                after = parse_timestamp(str(last.get("ts", "")))
                self.ctx.log.info("resuming %s after %s", path.name, after.isoformat())
            except BadRow:
                self.ctx.log.warning("cannot resume %s: last message has ts %r", path.name, last.get("ts"))
            else:
                # The bars of that timestamp already out; the rest of it is still due.
                published = {
                    str(m.get("symbol"))
                    for m in recent
                    if m.get("source") == source and m.get("ts") == last.get("ts")
                }
        return CsvReplay(
            path,
            list(self.ctx.symbols),
            self.ctx.log,
            after=after,
            loop=self.config.loop_at_end,
            published_at_after=published,
        )

    def _step_csv(self) -> StepResult:
        if self._replay is None:
            self._replay = self._start_replay()
        group = self._replay.next_group()
        counters = {"bad_rows": self._replay.take_bad_rows()}
        if group is None:
            return StepResult(did_work=False, summary="end of file", counters=counters)
        ts, bars = group
        source = f"csv:{self._replay.path.name}"
        gap = None if self._csv_prev is None else (ts - self._csv_prev).total_seconds()
        if gap is not None and gap > 0:
            self._csv_interval = gap if self._csv_interval is None else min(self._csv_interval, gap)
        self._csv_prev = ts
        length = {} if self._csv_interval is None else {"interval_seconds": self._csv_interval}
        messages = [
            {"type": "bar", "ts": ts.isoformat(), **bar, "price": bar["close"], **length, "source": source}
            for bar in bars
        ]
        return self._publish(messages, counters)

    # --- exchange ---

    def _start_feed(self) -> ExchangeFeed:
        exchange_id = self.config.exchange or ""
        markets = {s: exchange_symbol(s, self.config.symbol_map) for s in self.ctx.symbols}
        # Resume after the newest candle of each symbol we published from this exchange.
        last_open: dict[str, int] = {}
        recent = self.ctx.recent_published(EXCHANGE_RESUME_MESSAGES_PER_SYMBOL * len(markets))
        for message in recent:
            symbol, open_ms = message.get("symbol"), message.get("open_ms")
            if (
                message.get("type") == "bar"
                and message.get("source") == "exchange"
                and message.get("exchange") == exchange_id
                and message.get("timeframe") == self.config.timeframe
                and symbol in markets
                and symbol not in last_open
                and isinstance(open_ms, int)
            ):
                last_open[symbol] = open_ms
        for symbol, open_ms in last_open.items():
            self.ctx.log.info("resuming %s after the candle opened at %s", symbol, _iso(open_ms))
        return ExchangeFeed(
            make_exchange(exchange_id, self.config.base_url),
            self.config.timeframe,
            markets,
            self.config.backfill_bars,
            last_open,
            self.ctx.log,
        )

    def _step_exchange(self) -> StepResult:
        if self._feed is None:
            self._feed = self._start_feed()
        feed = self._feed
        if not feed.due():
            return StepResult(summary=self._feed_state(feed), gauges=self._feed_gauges(feed))
        poll = feed.poll()
        feed.schedule()
        if self._stream is None and feed.markets_loaded and self._wants_stream():
            # After the backfill (over REST, the first poll): the stream carries on from
            # the candle forming now.
            self._stream = ExchangeStream(
                feed.exchange.id,
                self.config.base_url,
                self.config.timeframe,
                list(feed.markets.values()),
                feed.exchange,
                self.ctx.log,
            )
            feed.stream = self._stream
        messages = [self._bar_message(c) for c in poll.candles]
        counters = {
            "gaps": poll.gaps,
            "bad_candles": poll.bad_rows,
            "feed_errors": int(feed.failure is not None),
        }
        if messages:
            result = self._publish(messages, counters)
        else:
            result = StepResult(summary=self._feed_state(feed), counters={"bars": 0, **counters})
        result.gauges = self._feed_gauges(feed)
        return result

    def _wants_stream(self) -> bool:
        return self.config.stream == "auto" and streams_ohlcv(self.config.exchange or "")

    def _degraded(self, feed: ExchangeFeed) -> tuple[str, float] | None:
        """Why the feed is degraded and since when: its REST failure first, else why the
        websocket is not used (then the feed is polling: prices still come, by REST)."""
        if feed.failure is not None:
            return feed.failure, feed.failed_since
        return self._stream.note() if self._stream is not None else None

    def _feed_gauges(self, feed: ExchangeFeed) -> dict[str, str | float]:
        """The feed's state for the card (cleared with "" and 0 when healthy)."""
        degraded = self._degraded(feed)
        return {
            "degraded": degraded[0] if degraded else "",
            "degraded_since": degraded[1] if degraded else 0,
            "last_price_at": feed.last_bar_at or 0,
        }

    def _bar_message(self, candle: Candle) -> dict[str, Any]:
        # Like every bar: ts is its open (the exchange's own stamp, kept exact in open_ms)
        # and interval_seconds its length, so its end, when the close was the price, is
        # what downstream ages are measured from (market_time.bar_end_ts).
        return {
            "type": "bar",
            "ts": _iso(candle.open_ms),
            "interval_seconds": self._feed_tf_ms() / 1000,
            "symbol": candle.symbol,
            "open": candle.open,
            "high": candle.high,
            "low": candle.low,
            "close": candle.close,
            "volume": candle.volume,
            "price": candle.close,
            "source": "exchange",
            "exchange": self.config.exchange,
            "market": candle.market,
            "timeframe": self.config.timeframe,
            "open_ms": candle.open_ms,
        }

    def _feed_tf_ms(self) -> int:
        return self._feed.tf_ms if self._feed is not None else 0

    def _feed_state(self, feed: ExchangeFeed) -> str:
        degraded = self._degraded(feed)
        if degraded is not None:
            return f"degraded: {degraded[0]}"
        return "waiting for the next candle to close"

    # --- shared ---

    def _publish(self, messages: list[dict[str, Any]], counters: dict[str, int]) -> StepResult:
        for msg in messages:
            self.ctx.publish(msg)
        shown = ", ".join(f"{m['symbol']} {_fmt(m['close'])}" for m in messages[:SUMMARY_SYMBOLS])
        if len(messages) > SUMMARY_SYMBOLS:
            shown += f", +{len(messages) - SUMMARY_SYMBOLS} more"
        return StepResult(
            did_work=True,
            published=len(messages),
            summary=shown,
            counters={"bars": len(messages), **counters},
        )


def _bar_end(bars: Any) -> float | None:
    """Where the newest of these bars ends in market time (epoch seconds), or None."""
    return max((end for bar in bars if (end := bar_end_epoch(bar)) is not None), default=None)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _fmt(price: float) -> str:
    return f"{price:.2f}" if price >= 1 else f"{price:.6g}"

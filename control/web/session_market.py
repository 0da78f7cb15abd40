"""The market data of a session, read from the streams that price it: which agents they
are, where their prices come from (simulated, replayed, live), and the bars turned into
OHLC candles for its chart (control.web.session)."""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from agents.graph import parents_of
from agents.kinds.sources import accelerated, config_label, message_label
from agents.models import Agent
from agents.runtime import keys
from agents.runtime.bus import newest_messages
from agents.runtime.redis import get_redis
from sessions.models import TradingSession

MAX_CANDLES = 500  # the newest candles per symbol
# Streams are read newest first in chunks, and never more than this many entries per
# producer per request (agent streams are capped near 10,000 entries anyway).
READ_CHUNK = 1000
SINCE_CHUNK = 200  # a poll with ?since= needs only the newest few entries
MAX_STREAM_ENTRIES = 20_000
SOURCE_LOOKBACK = 50  # newest entries looked at to tell where a producer's prices come from


def market_producers(session: TradingSession) -> list[str]:
    """The agents whose streams price this session: its execution agent's inputs (the
    same producers the session loop reads its prices from)."""
    return list(session.market_agents().values_list("agent_id", flat=True))


def price_labels(session: TradingSession) -> list[str]:
    """Where the prices this session trades on come from ("Simulated", "Live: Binance"...):
    the market_data agents upstream of its execution agent (the prices it fills at) and of
    its decision agent (the prices its signals are made of), each label once."""
    parents = parents_of()
    seen: set[str] = set()
    todo = [a for a in (session.execution_agent_id, session.decision_agent_id) if a]
    while todo:
        agent_id = todo.pop()
        for parent in parents.get(agent_id, []):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    configs = Agent.objects.filter(pk__in=seen, kind="market_data").values_list("config", flat=True)
    return sorted({config_label(c if isinstance(c, dict) else {}) for c in configs})


def producers_simulated(producers: list[str]) -> bool:
    """Whether the newest bars of these producers say they are simulated (or, with no bar
    to look at, the producer is configured to simulate)."""
    if not producers:
        return False
    try:
        newest = newest_messages(get_redis(), producers, SOURCE_LOOKBACK)
    except redis.RedisError:
        newest = {}
    seen_bar = False
    for messages in newest.values():
        for data in messages:
            if data.get("type") == "bar":
                seen_bar = True
                if data.get("source") == "simulated":
                    return True
                break
    if seen_bar:
        return False
    configs = Agent.objects.filter(pk__in=producers).values_list("config", flat=True)
    return any(isinstance(c, dict) and c.get("source") == "simulated" for c in configs)


def _message(fields: dict[str, str]) -> dict[str, Any] | None:
    try:
        data = json.loads(fields["data"])
    except (KeyError, TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _epoch(value: Any) -> float | None:
    """An ISO 8601 timestamp (naive = UTC) as unix seconds, or None."""
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


@dataclass(frozen=True)
class Bar:
    ts: float
    seq: int  # read order, to keep stream order between bars with the same ts
    symbol: str
    open: float
    high: float
    low: float
    close: float
    source: str
    arrived: float = 0.0  # wall clock (unix seconds) when it was published: its stream id


def parse_bar(data: dict[str, Any], seq: int = 0, arrived: float = 0.0) -> Bar | None:
    """A bar message ({"type": "bar", "ts", "symbol", "open", "high", "low", "close"}) or None."""
    if data.get("type") != "bar" or not isinstance(data.get("symbol"), str):
        return None
    ts = _epoch(data.get("ts"))
    ohlc = [_number(data.get(k)) for k in ("open", "high", "low", "close")]
    if ts is None or any(v is None or v <= 0 for v in ohlc):
        return None
    o, h, low, c = ohlc
    return Bar(
        ts,
        seq,
        data["symbol"],
        o,
        max(h, o, c, low),
        min(low, o, c, h),
        c,
        str(data.get("source", "")),
        arrived,
    )


@dataclass
class BarRead:
    bars: list[Bar] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)  # the sources as people read them (see sources)
    # Some bar is from an accelerated simulation: its times are market time, ahead of the clock.
    accelerated: bool = False
    complete: bool = True  # False when reading stopped before the start of the stream


def read_bars(
    client: redis.Redis, producer: str, symbols: set[str], interval: int, since: int | None
) -> BarRead:
    """The producer's bars of `symbols`, newest first, read back until

    * with `since` (a candle start): the first bar before it (every candle from `since`
      on is then complete);
    * without: every symbol has more than MAX_CANDLES candles (the oldest, perhaps
      partial, is dropped later), the stream's start, or MAX_STREAM_ENTRIES entries.
    """
    out = BarRead()
    key = keys.stream("agent", producer)
    buckets: dict[str, set[int]] = {}
    upper, read, seq = "+", 0, 0
    while read < MAX_STREAM_ENTRIES:
        chunk = READ_CHUNK if since is None else SINCE_CHUNK
        entries = client.xrevrange(key, max=upper, min="-", count=chunk)
        if not entries:
            return out
        read += len(entries)
        oldest_ts: float | None = None
        for _id, fields in entries:
            data = _message(fields)
            bar = parse_bar(data, seq, _entry_seconds(_id)) if data is not None else None
            seq -= 1  # newest first: older bars get smaller numbers
            if bar is None:
                continue
            oldest_ts = bar.ts if oldest_ts is None else min(oldest_ts, bar.ts)
            if bar.symbol not in symbols:
                continue
            if bar.source:
                out.sources.add(bar.source)
                out.labels.add(message_label(data))
            if accelerated(data):
                out.accelerated = True
            out.bars.append(bar)
            buckets.setdefault(bar.symbol, set()).add(int(bar.ts // interval) * interval)
        if len(entries) < chunk:
            return out
        upper = "(" + entries[-1][0]
        if since is not None and oldest_ts is not None and oldest_ts < since:
            return out
        if since is None and buckets and all(len(b) > MAX_CANDLES for b in buckets.values()):
            out.complete = False
            return out
    out.complete = False
    return out


def _entry_seconds(entry_id: Any) -> float:
    """A stream entry id ("<ms>-<seq>") as unix seconds: when Redis appended it."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    try:
        return int(text.split("-", 1)[0]) / 1000.0
    except ValueError:
        return 0.0


class MarketTimeline:
    """When bars arrived (wall clock) against their market times, per symbol and overall.

    An accelerated simulation's candles stand on market time, ahead of the clock; what
    happened on the wall clock (a fill, an equity point) is placed at the market time of
    the newest bar that had arrived by then: the price it was made at.
    """

    def __init__(self, bars: list[Bar]) -> None:
        self._lines: dict[str | None, tuple[list[float], list[float]]] = {}
        for bar in sorted(bars, key=lambda b: (b.arrived, b.ts, b.seq)):
            if bar.arrived <= 0:
                continue
            for key in (bar.symbol, None):
                arrivals, times = self._lines.setdefault(key, ([], []))
                arrivals.append(bar.arrived)
                times.append(max(bar.ts, times[-1]) if times else bar.ts)

    def market_time(self, wall: float, symbol: str | None = None) -> float | None:
        """The market time of the newest bar (of `symbol`, or any) that arrived by `wall`."""
        arrivals, times = self._lines.get(symbol, ([], []))
        i = bisect_right(arrivals, wall) - 1
        return times[i] if i >= 0 else None

    def wall_time(self, market: float, symbol: str | None = None) -> float | None:
        """When the first bar (of `symbol`, or any) at or after `market` arrived."""
        arrivals, times = self._lines.get(symbol, ([], []))
        i = bisect_left(times, market)
        return arrivals[i] if i < len(arrivals) else None


def build_candles(
    bars: list[Bar], interval: int, drop_oldest: bool = False, since: int | None = None
) -> dict[str, list[dict[str, float]]]:
    """OHLC candles of `interval` seconds per symbol, oldest first, the newest MAX_CANDLES.

    A candle's time is the start of its interval (unix seconds); open is its first bar's
    open, close its last bar's close, high and low the extremes of its bars. With
    `drop_oldest` the oldest candle of each symbol is left out (its earlier bars were not
    read); with `since`, only candles from that time on.
    """
    per_symbol: dict[str, dict[int, dict[str, float]]] = {}
    for bar in sorted(bars, key=lambda b: (b.ts, b.seq)):
        start = int(bar.ts // interval) * interval
        candles = per_symbol.setdefault(bar.symbol, {})
        candle = candles.get(start)
        if candle is None:
            candles[start] = {
                "time": start,
                "open": bar.open,
                "high": bar.high,
                "low": bar.low,
                "close": bar.close,
            }
        else:
            candle["high"] = max(candle["high"], bar.high)
            candle["low"] = min(candle["low"], bar.low)
            candle["close"] = bar.close
    out = {}
    for symbol, candles in per_symbol.items():
        rows = [candles[t] for t in sorted(candles)]
        if drop_oldest and len(rows) > 1:
            rows = rows[1:]
        if since is not None:
            rows = [c for c in rows if c["time"] >= since]
        out[symbol] = rows[-MAX_CANDLES:]
    return out

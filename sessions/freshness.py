"""How old a session's prices are, and when they are too old to trade on.

A price is as old as the market moment it describes. Bars from a live source carry the
exchange's own timestamp (a candle's open, `ts`, and its length): the close is the price
at the candle's end, so a bar published late, or history backfilled on start, is as old
as its end says. Simulated bars and CSV replays
describe no real moment (a replay's timestamps are history by design): their age is
the time since they were published (the stream entry's id). Whichever is older counts,
so a live bar with a clock ahead of ours is never younger than its publication.

The limit is the session's `max_price_age_seconds`, or, when that is empty, twice the
longest bar interval among the feeds it trades on plus AUTO_SLACK_SECONDS, at least
AUTO_MIN_SECONDS: one bar may be late, two may not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from agents.kinds.market_time import bar_end_epoch

AUTO_MIN_SECONDS = 60.0
AUTO_SLACK_SECONDS = 30.0
# Sources whose timestamps describe no moment of the real market (see the module doc).
UNTIMED_SOURCES = ("simulated", "csv:")


def published_at(stream_id: str) -> float:
    """Unix seconds a Redis stream entry was added ("<ms>-<seq>"); now when unreadable."""
    try:
        return int(stream_id.split("-", 1)[0]) / 1000
    except ValueError:
        return time.time()


def observed_at(data: Mapping[str, Any], stream_id: str) -> float:
    """Unix seconds of the market moment a bar's price describes (see the module doc)."""
    published = published_at(stream_id)
    if str(data.get("source") or "").startswith(UNTIMED_SOURCES):
        return published
    stamped = bar_end_epoch(data)  # the close was the price at the bar's end
    return published if stamped is None else min(published, stamped)


def feed_interval_seconds(config: Mapping[str, Any] | None) -> float:
    """Seconds between two bars of a market data agent with this config: its timeframe
    for an exchange source (parsed by ccxt, as the source itself does), else its tick."""
    config = config or {}
    if config.get("source") == "exchange":
        from ccxt.base.errors import BaseError
        from ccxt.base.exchange import Exchange  # heavy; only live feeds need it

        try:
            seconds = float(Exchange.parse_timeframe(str(config.get("timeframe") or "1m")))
        # (ccxt raises its own NotSupported for a unit it does not know: "15", a config
        # saved before such timeframes were refused; the session must not fail on it.)
        except (ValueError, KeyError, TypeError, OverflowError, BaseError):
            pass
        else:
            if math.isfinite(seconds) and seconds > 0:
                return seconds
    try:
        return float(config.get("tick_seconds", 1.0))
    except (TypeError, ValueError):
        return 1.0


def automatic_limit(intervals: Iterable[float]) -> float:
    """The limit when a session names none: one late bar is tolerated, two are not."""
    longest = max(intervals, default=0.0)
    return max(AUTO_MIN_SECONDS, 2 * longest + AUTO_SLACK_SECONDS)


def age_text(seconds: float) -> str:
    """'45 s', '3 min', '2 h 5 min', '3 d': an age for a sentence."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


class StaleWatch:
    """Which symbols trade on too old a price now; each change is reported once (a
    stale spell is one line when it starts and one when it ends, not one per tick)."""

    def __init__(self) -> None:
        self.stale: set[str] = set()

    def update(self, ages: Mapping[str, float], limit: float) -> tuple[list[str], list[str]]:
        """(symbols that just went stale, symbols fresh again), each sorted."""
        now_stale = {symbol for symbol, age in ages.items() if age > limit}
        began = sorted(now_stale - self.stale)
        ended = sorted(self.stale - now_stale)
        self.stale = now_stale
        return began, ended

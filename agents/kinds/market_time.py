"""Market time of the simulated source: when each bar opens and how long it lasts.

By default (speed 1) a simulated bar spans the wall time since the previous step, so the
simulated market moves like a real one minute by minute and its bars sit on the real
clock. With a speed above 1 the simulation is accelerated: a bar spans `speed` times the
wall time since the previous step, market time runs ahead of the wall clock from where it
was, and everything that shows that market says so ("Simulated, 60x", see sources).

A bar's `ts` is its open (like an exchange's candles and most CSV files) and
`interval_seconds` its length in market time, so its end is `ts + interval_seconds`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Wall time since the previous step beyond this many ticks is a gap (a paused agent, a
# stalled worker), not one long bar: one bar spanning an hour-long pause would jump as
# far as the market moves in an hour, in one step.
MAX_GAP_TICKS = 5.0
# The last moment a bar may end: a datetime (and so a bar's ts) cannot be written past the
# year 9999. An accelerated simulation reaches it (at the top speed, 100000x, in about a
# month of wall time), and then every step failed, stopping the agent in ERROR, and so did
# every restart, which resumes from the last bar.
LAST_MARKET_TIME = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


class MarketTimeOver(Exception):
    """The next bar would end past LAST_MARKET_TIME; str() is a sentence saying what to do."""


@dataclass(frozen=True)
class BarSpan:
    """One bar's place in market time: it opens at `start` (epoch seconds) and lasts `seconds`."""

    start: float
    seconds: float

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def open_iso(self) -> str:
        return datetime.fromtimestamp(self.start, UTC).isoformat()


class MarketClock:
    """Hands out consecutive BarSpans: one per step, from the wall time between steps.

    `resume_end` is where the previous run's last bar ended (market time), so a restart
    neither overlaps its earlier bars nor, when accelerated, jumps back to the wall clock.
    """

    def __init__(
        self,
        tick_seconds: float,
        speed: float = 1.0,
        resume_end: float | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if tick_seconds <= 0 or speed <= 0:
            raise ValueError("tick_seconds and speed must be positive")
        self.tick_seconds = tick_seconds
        self.speed = speed
        self._now = now
        self._last_wall: float | None = None
        self._market_end = resume_end  # market time at the end of the last bar

    @property
    def accelerated(self) -> bool:
        return self.speed != 1.0

    def next_span(self) -> BarSpan:
        """The span of the bar this step publishes."""
        wall = self._now()
        elapsed = None if self._last_wall is None else wall - self._last_wall
        self._last_wall = wall
        if elapsed is None or not 0 < elapsed <= MAX_GAP_TICKS * self.tick_seconds:
            # First step, or after a gap: one nominal step's worth.
            elapsed, first = self.tick_seconds, True
        else:
            first = False
        if self.accelerated:
            # Market time continues from the previous bar (never earlier than now, so a
            # switch from real time to accelerated does not rewrite the past).
            if self._market_end is None:
                start = wall
            else:
                start = max(self._market_end, wall) if first else self._market_end
            span = BarSpan(start, elapsed * self.speed)
        else:
            # Real time: the bar ends now. A first bar after a restart starts where the
            # last one ended, if that was within a step (no overlap, no sliver of a gap).
            start = wall - elapsed
            if first and self._market_end is not None and start < self._market_end < wall:
                start = self._market_end
            span = BarSpan(start, wall - start)
        if not span.end < LAST_MARKET_TIME:
            raise MarketTimeOver(
                "the simulated market has run out of time (its bars would end past the year 9999); "
                "set its speed to 1 (real time) to go on from the present"
            )
        self._market_end = span.end
        return span


def bar_length(data: Mapping[str, Any]) -> float | None:
    """A bar message's `interval_seconds` when it is a usable length (a finite number above
    0, not a bool), else None: older messages and a CSV's first bar do not say it."""
    length = data.get("interval_seconds")
    if isinstance(length, bool) or not isinstance(length, int | float):
        return None
    return float(length) if math.isfinite(length) and length > 0 else None


def epoch_seconds(ts: Any) -> float | None:
    """A message's `ts` as epoch seconds: ISO 8601 (naive = UTC, "Z" allowed), or a number
    (milliseconds when it is that large, as exchanges stamp); None when it is neither."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int | float):
        if not math.isfinite(ts):
            return None
        return ts / 1000 if ts > 1e11 else float(ts)
    if not isinstance(ts, str):
        return None
    try:
        when = datetime.fromisoformat(ts.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def bar_end_epoch(data: Mapping[str, Any]) -> float | None:
    """When a bar closed, in epoch seconds (`ts + interval_seconds`, or its `ts` when it does
    not say its length); None when its ts is unreadable."""
    start = epoch_seconds(data.get("ts"))
    return None if start is None else start + (bar_length(data) or 0.0)


def bar_end_ts(data: Mapping[str, Any]) -> str:
    """When a bar message closed (ISO 8601): `ts + interval_seconds`, or its `ts` as it is
    when it does not say its length (older messages, a CSV's first bar)."""
    ts, length = data.get("ts"), bar_length(data)
    if not isinstance(ts, str):
        return "" if ts is None else str(ts)
    start = epoch_seconds(ts)
    if length is None or start is None:
        return ts
    try:
        return datetime.fromtimestamp(start + length, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return ts

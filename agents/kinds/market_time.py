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
from datetime import UTC, datetime, timedelta
from typing import Any

# Wall time since the previous step beyond this many ticks is a gap (a paused agent, a
# stalled worker), not one long bar: one bar spanning an hour-long pause would jump as
# far as the market moves in an hour, in one step.
MAX_GAP_TICKS = 5.0


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
        self._market_end = span.end
        return span


def bar_end_ts(data: Mapping[str, Any]) -> str:
    """When a bar message closed (ISO 8601): `ts + interval_seconds`, or its `ts` as it is
    when it does not say its length (older messages, a CSV's first bar)."""
    ts, length = data.get("ts"), data.get("interval_seconds")
    if not isinstance(ts, str):
        return "" if ts is None else str(ts)
    usable = isinstance(length, (int, float)) and not isinstance(length, bool) and math.isfinite(length)
    if not usable or length <= 0:
        return ts
    try:
        start = datetime.fromisoformat(ts.strip().replace("Z", "+00:00"))
    except ValueError:
        return ts
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    try:
        return (start + timedelta(seconds=float(length))).isoformat()
    except OverflowError:
        return ts

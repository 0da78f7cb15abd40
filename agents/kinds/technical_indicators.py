"""The arithmetic of the `technical` kind: talipp indicators per price series, and scores.

Kept apart from the kind (technical.py) so the maths can be tested on known numbers
without a context. The indicators themselves are talipp's incremental ones (docs/architecture.md, Layers:
no hand-rolled copies of common indicators); this module only feeds them and turns
their latest values into component scores in [-1, 1], positive meaning "buy".
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from talipp.indicators import BB, MACD, RSI, SMA

COMPONENTS = ("ma_cross", "rsi", "macd", "bollinger")
INDICATOR_KEYS = (
    "sma_fast", "sma_slow", "rsi", "macd", "macd_signal", "macd_hist", "bb_lower", "bb_mid", "bb_upper",
)  # fmt: skip

# talipp keeps every input and output it has seen; an agent fed a bar a second for weeks
# would grow without bound. Past the longest look-back the old values are never read
# again, so we drop them, in batches (each purge copies the kept tail).
KEEP_FACTOR = 4
PURGE_BATCH = 1000
# A change of price smaller than this share of it is float rounding, not a move: the
# sums inside the indicators leave differences of about 1e-16 x price on identical inputs.
MOVE_TOLERANCE = 1e-9
# No movement is no opinion. Every component keeps a memory of moves that have ended:
# the oscillators (RSI, Bollinger %B) measure a stretch in units of the window's own
# movement, so they saturate on any movement at all (an RSI is 100 when no bar fell, also
# when none moved, and one tick up out of a flat range is "above the upper band"); the
# trend components keep leaning after a move stopped (after a rise and then a flat price,
# MACD's line sinks back under its signal line for dozens of bars: a sell vote on a symbol
# that is not moving at all). So every vote counts only as much as its own window moved:
# the share of the window's price changes that moved the price (the slow period for the
# trend components). A flat window has no opinion, one tick in twenty has a twentieth of
# one, and a market that moves every bar keeps full votes.
SCALED_BY_MOVEMENT = COMPONENTS


@dataclass(frozen=True)
class Periods:
    """The indicator settings, a plain copy of the kind's config fields of the same names."""

    fast_ma: int
    slow_ma: int
    rsi_period: int
    macd_fast: int
    macd_slow: int
    macd_signal: int
    bb_period: int
    bb_std: float

    def bars_needed(self) -> dict[str, int]:
        """Bars each component needs before its first value (talipp's warm-up lengths)."""
        return {
            "ma_cross": self.slow_ma,
            "rsi": self.rsi_period + 1,  # RSI needs period changes, so one bar more
            "macd": self.macd_slow + self.macd_signal - 1,  # the histogram needs the signal line
            "bollinger": self.bb_period,
        }


class Series:
    """The talipp indicators of one price series (one symbol from one producer)."""

    def __init__(self, periods: Periods, source: str) -> None:
        self.source = source
        self.bars = 0
        self.close = 0.0
        self.ts = ""
        # Whether each of the latest changes moved the price (see MOVE_TOLERANCE), as far
        # back as the longest window, in price changes: an average of n bars spans n - 1
        # of them, RSI its period, MACD its slow period (an EMA has no hard edge).
        self._windows = {
            "ma_cross": periods.slow_ma - 1,
            "rsi": periods.rsi_period,
            "macd": periods.macd_slow,
            "bollinger": periods.bb_period - 1,
        }
        self._moves: deque[bool] = deque(maxlen=max(self._windows.values()))
        self.sma_fast = SMA(periods.fast_ma)
        self.sma_slow = SMA(periods.slow_ma)
        self.rsi = RSI(periods.rsi_period)
        self.macd = MACD(periods.macd_fast, periods.macd_slow, periods.macd_signal)
        self.bb = BB(periods.bb_period, periods.bb_std)
        self._all = (self.sma_fast, self.sma_slow, self.rsi, self.macd, self.bb)
        # Every warm-up length with room to spare, so a purge never shortens a series back
        # to where talipp's "first value" branches (exact-length checks) would fire again.
        self._keep = KEEP_FACTOR * (max(periods.bars_needed().values()) + 1)

    def add(self, close: float, ts: str) -> None:
        for indicator in self._all:
            indicator.add(close)
        if self.bars:
            self._moves.append(not negligible(close - self.close, self.close))
        self.bars += 1
        self.close, self.ts = close, ts
        held = len(self.sma_fast.input_values)
        if held >= self._keep + PURGE_BATCH:
            for indicator in self._all:
                indicator.purge_oldest(held - self._keep)

    def values(self) -> dict[str, float | None]:
        """The latest value of every indicator; None while it warms up."""
        macd, bb = _last(self.macd), _last(self.bb)
        return {
            "sma_fast": _last(self.sma_fast),
            "sma_slow": _last(self.sma_slow),
            "rsi": _last(self.rsi),
            "macd": macd.macd if macd is not None else None,
            "macd_signal": macd.signal if macd is not None else None,
            "macd_hist": macd.histogram if macd is not None else None,
            "bb_lower": bb.lb if bb is not None else None,
            "bb_mid": bb.cb if bb is not None else None,
            "bb_upper": bb.ub if bb is not None else None,
        }

    def moved(self) -> dict[str, float]:
        """For each component, the share of the price changes in its window that moved the price."""
        shares = {}
        for name, window in self._windows.items():
            recent = list(self._moves)[-window:] if window > 0 else []
            shares[name] = sum(recent) / window if recent else 0.0
        return shares


def negligible(change: float, scale: float) -> bool:
    """True when `change` is float rounding relative to `scale` (a price), not a movement."""
    return abs(change) <= MOVE_TOLERANCE * abs(scale)


def _last(indicator: Any) -> Any:
    return indicator[-1] if len(indicator) else None


def clip(x: float, low: float = -1.0, high: float = 1.0) -> float:
    return max(low, min(high, x))


def component_scores(
    values: dict[str, float | None],
    close: float,
    *,
    rsi_oversold: float,
    rsi_overbought: float,
    ma_sensitivity: float,
    macd_sensitivity: float,
    moved: Mapping[str, float] | None = None,
) -> dict[str, float | None]:
    """Each component's vote in [-1, 1] (positive = buy), None while its indicator warms up.

    ma_cross and macd follow the trend; rsi and bollinger lean against stretched prices.
    Gaps are taken relative to price so the same settings fit a 0.0001 coin and BTC.
    `moved` is Series.moved(): each vote is scaled by the share of its window that moved
    (see SCALED_BY_MOVEMENT); left out, every bar is taken as a move. No movement is
    no opinion: a flat market scores 0 on every component, never an extreme.
    """
    scores: dict[str, float | None] = dict.fromkeys(COMPONENTS)
    fast, slow = values["sma_fast"], values["sma_slow"]
    if fast is not None and slow is not None and slow > 0:
        gap = 0.0 if negligible(fast - slow, slow) else (fast - slow) / slow
        scores["ma_cross"] = math.tanh(ma_sensitivity * gap)
    rsi = values["rsi"]
    if rsi is not None:
        # Linear between the thresholds: at or below oversold a full buy, at or above
        # overbought a full sell, neutral half-way (50 with the usual 30/70).
        middle = (rsi_oversold + rsi_overbought) / 2
        half_width = (rsi_overbought - rsi_oversold) / 2
        scores["rsi"] = clip((middle - rsi) / half_width)
    hist = values["macd_hist"]
    if hist is not None and close > 0:
        scores["macd"] = 0.0 if negligible(hist, close) else math.tanh(macd_sensitivity * hist / close)
    lower, upper = values["bb_lower"], values["bb_upper"]
    if lower is not None and upper is not None:
        width = upper - lower
        # A flat market has no band to be inside of: no opinion rather than a division by
        # 0, or by a width that is only the rounding of a zero standard deviation.
        position = 0.5 if negligible(width, close) else (close - lower) / width
        scores["bollinger"] = clip(1 - 2 * position)
    for name in SCALED_BY_MOVEMENT:
        score = scores[name]
        if score is not None and moved is not None:
            scores[name] = score * clip(moved.get(name, 1.0), 0.0, 1.0)
    return scores


def combine(scores: dict[str, float | None], weights: dict[str, float]) -> float | None:
    """Weighted mean of the ready components (weights renormalised), or None if none is ready."""
    ready = {name: s for name, s in scores.items() if s is not None and weights.get(name, 0) > 0}
    total = sum(weights[name] for name in ready)
    if total <= 0:
        return None
    mean = sum(weights[name] * s for name, s in ready.items()) / total
    return round(clip(mean), 4)


def significant(value: float | None, digits: int = 8) -> float | None:
    """Round to significant digits, not decimals: a MACD of 3e-9 on a tiny coin must not become 0."""
    if value is None:
        return None
    return float(f"{value:.{digits}g}")

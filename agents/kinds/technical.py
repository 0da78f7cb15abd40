"""The `technical` kind: indicators over the bars of its inputs, one signal in [-1, 1] per symbol.

Each step reads the new messages of the agents it consumes, feeds every bar's close to
talipp's incremental indicators (moving-average crossover, RSI, MACD, Bollinger bands;
see technical_indicators), and publishes, for each symbol that got bars, the weighted
mean of the components' votes with the values behind it, once every weighted component
is warm (has seen enough bars). The bars' `source` passes through, so a signal computed
from simulated prices still says "simulated", and so does an accelerated simulation's
`speed`. A signal's `ts` is when its newest bar closed (the bar's `ts`, its open, plus its
`interval_seconds`): the time the price it judges was seen.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.kinds import register
from agents.kinds.base import (
    AgentKind,
    KindConfig,
    StepContext,
    StepResult,
    Weight,
    must_be_below,
    must_exceed,
)
from agents.kinds.market_time import bar_end_ts
from agents.kinds.technical_indicators import (
    COMPONENTS,
    Periods,
    Series,
    combine,
    component_scores,
    significant,
)

SUMMARY_SYMBOLS = 5


class Weights(BaseModel):
    """How much each component counts in the signal; a component left out keeps weight 1."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ma_cross: Weight = Field(1.0, description="Weight of the moving-average crossover.")
    rsi: Weight = Field(1.0, description="Weight of the RSI component.")
    macd: Weight = Field(1.0, description="Weight of the MACD histogram component.")
    bollinger: Weight = Field(1.0, description="Weight of the Bollinger band position.")

    @model_validator(mode="after")
    def _one_counts(self) -> Weights:
        if not any(getattr(self, name) > 0 for name in COMPONENTS):
            raise ValueError("at least one weight must be above 0")
        return self


@register
class Technical(AgentKind):
    """Turns a market stream into one technical signal per symbol."""

    name = "technical"
    description = (
        "Technical analysis of its inputs' bars: moving-average crossover, RSI, MACD and "
        "Bollinger bands (talipp, incremental), combined into one signal in [-1, 1] per "
        "symbol (positive = buy), published with the indicator values behind it."
    )
    roles = ("specialized_technical",)

    class Config(KindConfig):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

        fast_ma: int = Field(5, ge=1, le=500, description="Bars in the fast simple moving average.")
        slow_ma: int = Field(20, ge=2, le=1000, description="Bars in the slow simple moving average.")
        ma_sensitivity: float = Field(
            100.0, gt=0, le=100_000,
            description="k in tanh(k x (fast - slow) / slow): 100 makes a 1% gap score 0.76. "
            "Lower it for daily bars, raise it for second bars.",
        )  # fmt: skip
        rsi_period: int = Field(14, ge=2, le=500, description="Bars in the RSI.")
        rsi_overbought: float = Field(70.0, gt=0, le=100, description="RSI at or above which to sell fully.")
        rsi_oversold: float = Field(30.0, ge=0, lt=100, description="RSI at or below which to buy fully.")
        macd_fast: int = Field(12, ge=1, le=500, description="Bars in MACD's fast EMA.")
        macd_slow: int = Field(26, ge=2, le=1000, description="Bars in MACD's slow EMA.")
        macd_signal: int = Field(9, ge=1, le=500, description="Bars in MACD's signal line EMA.")
        macd_sensitivity: float = Field(
            300.0, gt=0, le=100_000,
            description="k in tanh(k x histogram / price): 300 makes a histogram of 0.25% of price "
            "score 0.64.",
        )  # fmt: skip
        bb_period: int = Field(20, ge=2, le=1000, description="Bars in the Bollinger bands.")
        bb_std: float = Field(2.0, gt=0, le=10, description="Band half-width in standard deviations.")
        weights: Weights = Field(default_factory=Weights, description="Weight of each component.")
        emit: Literal["every_bar", "on_change"] = Field(
            "every_bar",
            description="every_bar: a signal per symbol each step that brought it bars; "
            "on_change: only when the symbol's signal differs from the last one sent.",
        )

        _slow_above_fast = field_validator("slow_ma")(must_exceed("fast_ma"))
        _macd_slow_above_fast = field_validator("macd_slow")(must_exceed("macd_fast"))
        _oversold_below_overbought = field_validator("rsi_oversold")(must_be_below("rsi_overbought"))

        def periods(self) -> Periods:
            return Periods(**self.model_dump(include=set(Periods.__dataclass_fields__)))

    config: Config

    def __init__(self, ctx: StepContext, config: KindConfig) -> None:
        super().__init__(ctx, config)
        self._periods = self.config.periods()
        self._weights = self.config.weights.model_dump()
        # Bars before the first signal: the slowest weighted component's warm-up. A vote
        # from the quickest alone (RSI after 15 bars) would be a different signal from the
        # one configured, and would trade on it; an exchange feed's backfill warms them all
        # before its first live bar.
        needed = self._periods.bars_needed()
        self._warmup = max(needed[name] for name in COMPONENTS if self._weights[name] > 0)
        # One series per (producer, symbol): two feeds of one symbol must not interleave
        # their prices into one moving average.
        self._series: dict[tuple[str, str], Series] = {}
        self._last_signal: dict[tuple[str, str], float] = {}
        self._speeds: dict[tuple[str, str], Any] = {}  # an accelerated feed's speed, passed on

    def step(self) -> StepResult:
        """Feed the new bars to the indicators, then publish a signal per symbol that moved."""
        wanted = set(self.ctx.symbols)
        touched: list[tuple[str, str]] = []
        bars_in = bad = 0
        for message in self.ctx.read_inputs():
            data = message.data
            if data.get("type") != "bar":
                continue  # news and the like are other kinds' business
            symbol, close = data.get("symbol"), _close(data)
            if not isinstance(symbol, str) or close is None:
                bad += 1
                self.ctx.log.warning("skipped a malformed bar from %s: %.200r", message.producer, data)
                continue
            if wanted and symbol not in wanted:
                continue
            key = (message.producer, symbol)
            source = str(data.get("source", "unknown"))
            series = self._series.get(key)
            if series is None or series.source != source:
                # A feed switched between simulated and a file is a new price series: mixing
                # them would make averages of two unrelated markets.
                series = self._series[key] = Series(self._periods, source)
                self._last_signal.pop(key, None)
            series.add(close, bar_end_ts(data))
            self._speeds[key] = data.get("speed")
            bars_in += 1
            if key not in touched:
                touched.append(key)
        return self._signal(touched, bars_in, bad)

    def _signal(self, touched: list[tuple[str, str]], bars_in: int, bad: int) -> StepResult:
        counters = {"bars_in": bars_in, "signals": 0}
        if bad:
            counters["bad_bars"] = bad
        if not touched:
            return StepResult(summary="no new bars", counters=counters)
        sent: list[tuple[str, float]] = []
        unchanged: list[tuple[str, float]] = []
        warming: list[Series] = []
        for key in touched:
            series, symbol = self._series[key], key[1]
            message = self._message(symbol, series, self._speeds.get(key))
            if message is None:
                warming.append(series)
                continue
            signal = message["signal"]
            if self.config.emit == "on_change" and self._last_signal.get(key) == signal:
                unchanged.append((symbol, signal))
                continue
            self.ctx.publish(message)
            self._last_signal[key] = signal
            sent.append((symbol, signal))
        counters["signals"] = len(sent)
        return StepResult(
            did_work=bool(sent),
            published=len(sent),
            summary=self._summary(sent, unchanged, warming),
            counters=counters,
        )

    def _message(self, symbol: str, series: Series, speed: Any = None) -> dict[str, Any] | None:
        if series.bars < self._warmup:
            return None
        values = series.values()
        scores = component_scores(
            values,
            series.close,
            rsi_oversold=self.config.rsi_oversold,
            rsi_overbought=self.config.rsi_overbought,
            ma_sensitivity=self.config.ma_sensitivity,
            macd_sensitivity=self.config.macd_sensitivity,
            moved=series.moved(),
        )
        signal = combine(scores, self._weights)
        if signal is None:
            return None
        return {
            "type": "signal",
            "kind": "technical",
            "ts": series.ts,
            "symbol": symbol,
            "signal": signal,
            "price": series.close,
            "indicators": {name: significant(v) for name, v in values.items()},
            "components": {name: None if s is None else round(s, 4) for name, s in scores.items()},
            "source": series.source,
            **({"speed": speed} if speed is not None else {}),
        }

    def _summary(
        self, sent: list[tuple[str, float]], unchanged: list[tuple[str, float]], warming: list[Series]
    ) -> str:
        parts = []
        if sent:
            parts.append(_listing(sent))
        if unchanged:
            parts.append(f"unchanged: {_listing(unchanged)}")
        if warming:
            # The series nearest to its first signal: how long until something comes out.
            bars = max(s.bars for s in warming)
            label = f"warming up ({bars}/{self._warmup} bars)"
            parts.append(label if len(warming) == 1 else f"{len(warming)} symbols {label}")
        return "; ".join(parts)


def _listing(signals: list[tuple[str, float]]) -> str:
    shown = ", ".join(f"{symbol} {signal:+.2f}" for symbol, signal in signals[:SUMMARY_SYMBOLS])
    if len(signals) > SUMMARY_SYMBOLS:
        shown += f", +{len(signals) - SUMMARY_SYMBOLS} more"
    return shown


def _close(data: dict[str, Any]) -> float | None:
    """The bar's close (or its `price`), if it is a usable positive finite number."""
    value = data.get("close", data.get("price"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None

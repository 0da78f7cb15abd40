"""`momentum`: the example kind of docs/agent-kinds.md.

It reads the bars of its inputs and, once it has `window` closes of a symbol, publishes a
technical signal in [-1, 1]: the change over the window, divided by `full_scale` (a 2 %
rise over the window with the default scale is a full buy vote). The decision kind
weighs it like any technical signal. Not registered by default: set
AGENT_KIND_MODULES=agents.kinds.examples.momentum.
"""

from __future__ import annotations

import math
from collections import deque

from pydantic import Field

from agents.kinds import register
from agents.kinds.base import AgentKind, KindConfig, StepResult


class MomentumConfig(KindConfig):
    window: int = Field(10, ge=2, le=1000, description="Closes the change is measured over.")
    full_scale: float = Field(
        0.02, gt=0, le=1, description="The change (0.02 = 2 %) that gives a full vote of +1 or -1."
    )


@register
class Momentum(AgentKind):
    name = "momentum"
    description = "Change of the close over a window of bars, as a technical signal in [-1, 1]."
    roles = ("specialized_technical",)
    Config = MomentumConfig

    def __init__(self, ctx, config: MomentumConfig) -> None:
        super().__init__(ctx, config)
        self.closes: dict[str, deque[float]] = {}

    def step(self) -> StepResult:
        published = 0
        for message in self.ctx.read_inputs():
            bar = message.data
            close, symbol = bar.get("close"), bar.get("symbol")
            if bar.get("type") != "bar" or symbol not in self.ctx.symbols:
                continue
            if not isinstance(close, (int, float)) or not math.isfinite(close) or close <= 0:
                continue
            closes = self.closes.setdefault(symbol, deque(maxlen=self.config.window))
            closes.append(float(close))
            if len(closes) < self.config.window:
                continue  # warming up: no opinion yet
            change = closes[-1] / closes[0] - 1
            signal = max(-1.0, min(1.0, change / self.config.full_scale))
            self.ctx.publish(
                {
                    "type": "signal",
                    "kind": "technical",
                    "ts": bar.get("ts"),
                    "symbol": symbol,
                    "signal": round(signal, 4),
                    "price": closes[-1],
                    "source": bar.get("source", ""),
                }
            )
            published += 1
        return StepResult(did_work=bool(published), published=published, summary=f"{published} signals")

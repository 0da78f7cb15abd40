"""The `decision` kind: turns the signals of its inputs into buy / sell / hold directives.

It keeps the latest signal per (producer, symbol): a technical signal's `signal`, a
sentiment message's `average` (the smoothed score, so one headline does not swing it).
For each symbol that got something new it takes the weighted mean of the fresh signals,
compares it with the thresholds, and publishes a directive that a session (a long-only
paper account) follows by moving the symbol's position toward `target_weight`, a fraction
of its equity:

    {"type": "directive", "ts", "symbol", "action": "buy" | "sell" | "hold",
     "target_weight": 0..1 | None, "score", "price", "reason", "signals", "source"}

buy and sell are standing targets (sell means "hold none of it"); hold carries no target
and means "keep what you have". So a buy is not repeated while nothing changes, a hold is
repeated now and then to show the agent is alive, and a cooldown keeps a score that
wobbles around a threshold from making sessions trade back and forth.

A signal's age counts from its `ts`, except for an accelerated simulation's (it carries
`speed`, see market_time): its ts is market time, running ahead of the clock, so its age
counts from when it arrived here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from agents.kinds import register
from agents.kinds.base import AgentKind, KindConfig, StepContext, StepResult, Weight, must_be_below
from agents.kinds.market_time import epoch_seconds
from agents.kinds.sources import accelerated
from agents.runtime.bus import InputMessage

SUMMARY_SYMBOLS = 5
# A proportional buy just over the threshold still asks for this fraction of max_weight:
# without a floor a marginal buy would be a near-zero target that sessions round away.
PROPORTIONAL_FLOOR = 0.25

# Which message types carry a signal, and the field holding its value (-1..1).
SIGNAL_FIELDS = {"signal": "signal", "sentiment": "average"}
# The name a message type goes by in reasons, when the message does not say its kind.
DEFAULT_KINDS = {"signal": "technical", "sentiment": "sentiment"}
# Reasons list technical signals first, then sentiment, then anything else, each by producer.
KIND_ORDER = {"technical": 0, "sentiment": 1}


@dataclass(frozen=True)
class Signal:
    """The latest value one producer gave for one symbol."""

    value: float
    at: float  # epoch seconds, from the message's ts
    kind: str  # "technical" | "sentiment" | ...
    source: str


@dataclass
class SymbolState:
    """What this agent last told sessions about a symbol."""

    last_action: str | None = None  # of the last directive published, hold included
    last_at: float = -math.inf
    # The last buy/sell: it is the target sessions are holding, and cooldowns count from it.
    trade_action: str | None = None
    trade_target: float = 0.0
    trade_at: float = -math.inf


@register
class Decision(AgentKind):
    """Weighted vote of the input signals per symbol, published as buy / sell / hold directives."""

    name = "decision"
    description = (
        "Combines the signals of its inputs (technical signals, sentiment averages) per symbol into a "
        "weighted score and publishes directives: buy (with a target weight of the session's equity), "
        "sell (target 0) or hold, with a reason naming the signals behind them. A cooldown stops it "
        "flip-flopping."
    )
    roles = ("decision",)

    class Config(KindConfig):
        weights: dict[str, Weight] = Field(
            default_factory=dict,
            max_length=1000,
            description="Weight per input agent id (>= 0; 0 mutes it). Inputs not listed weigh "
            "default_weight. Weights are normalised over the inputs with a fresh signal.",
        )
        default_weight: Weight = Field(1.0, description="Weight of inputs not listed in weights.")
        buy_threshold: float = Field(
            0.15,
            gt=0,
            le=1,
            description="Buy when the combined score is at least this. Lower trades more often on weaker "
            "evidence; 0.15 makes simulated markets trade every minute or so.",
        )
        sell_threshold: float = Field(
            -0.15,
            ge=-1,
            lt=0,
            description="Sell (target weight 0) when the combined score is at most this; must be below "
            "buy_threshold. The gap between the two is where the agent holds.",
        )
        max_signal_age_seconds: float = Field(
            300.0,
            ge=0,
            le=7 * 86400,
            description="Signals whose ts is older than this are ignored, so a stopped input does not keep "
            "voting. 0 = no limit (needed to replay old CSV data, whose ts are in the past).",
        )
        cooldown_seconds: float = Field(
            30.0,
            ge=0,
            le=86400,
            description="Minimum seconds between a buy/sell and the next one that changes what sessions hold "
            "(the other action, or a new target weight). Longer means fewer trades and fees, but a slower "
            "reaction; meanwhile the agent says hold.",
        )
        hold_every_seconds: float = Field(
            60.0,
            ge=0,
            le=86400,
            description="A hold is published when the view turns to hold, then repeated at most this often "
            "to show the agent is alive; 0 = never repeated.",
        )
        max_weight: float = Field(
            0.5,
            gt=0,
            le=1,
            description="Target weight (fraction of a session's equity) of a full-strength buy. Sessions "
            "apply their own risk caps on top.",
        )
        sizing: Literal["fixed", "proportional"] = Field(
            "proportional",
            description="fixed: every buy targets max_weight. proportional: the target grows from "
            f"{PROPORTIONAL_FLOOR:g} x max_weight at buy_threshold to max_weight at a score of 1, so "
            "stronger evidence buys more.",
        )
        min_target_change: float = Field(
            0.05,
            ge=0,
            le=1,
            description="With proportional sizing, a buy whose target moved at least this much from the "
            "last one is published again (subject to the cooldown); smaller moves are not worth a trade.",
        )

        # Redundant with today's ranges (sell < 0 < buy) but keeps the rule if they widen.
        _sell_below_buy = field_validator("sell_threshold")(must_be_below("buy_threshold"))

    config: Config

    def __init__(self, ctx: StepContext, config: KindConfig, now: Callable[[], float] = time.time) -> None:
        super().__init__(ctx, config)
        self._now = now
        self._latest: dict[tuple[str, str], Signal] = {}  # (producer, symbol) -> signal
        self._prices: dict[str, tuple[float, float]] = {}  # symbol -> (latest technical price, at)
        self._states: dict[str, SymbolState] = {}
        unknown = sorted(set(self.config.weights) - set(ctx.inputs))
        if ctx.inputs and unknown:
            # Likely a typo or a removed edge: say so instead of silently weighing nothing.
            ctx.log.warning("weights name agents that are not inputs: %s", ", ".join(unknown))

    def step(self) -> StepResult:
        """Take in new signals and publish a directive for each symbol whose view needs saying."""
        messages = self.ctx.read_inputs()
        touched = self._ingest(messages)
        now = self._now()
        directives = []
        for symbol in sorted(touched):
            directive = self._decide(symbol, now)
            if directive is not None:
                self.ctx.publish(directive)
                directives.append(directive)
        n_signals = sum(touched.values())
        return StepResult(
            did_work=bool(n_signals or directives),
            published=len(directives),
            summary=_summary(directives, n_signals),
            counters={"signals_in": n_signals, "directives": len(directives)},
        )

    # --- taking signals in ---

    def _ingest(self, messages: list[InputMessage]) -> dict[str, int]:
        """Remember the latest signal per (producer, symbol); returns signals taken per symbol."""
        wanted = set(self.ctx.symbols)
        touched: dict[str, int] = {}
        arrived = self._now()
        for message in messages:
            data = message.data if isinstance(message.data, dict) else {}
            kind_of = data.get("type")
            # Bars, news and the like carry no signal.
            field = SIGNAL_FIELDS.get(kind_of) if isinstance(kind_of, str) else None
            symbol = data.get("symbol")
            if field is None or not isinstance(symbol, str) or (wanted and symbol not in wanted):
                continue
            value, at = _number(data.get(field)), epoch_seconds(data.get("ts"))
            if value is None or at is None:
                # Without a value or a time (to judge freshness) a signal cannot be weighed.
                self.ctx.log.debug(
                    "ignored a %s from %s: no usable value or ts", data["type"], message.producer
                )
                continue
            if accelerated(data):
                at = arrived  # market time is not the clock's: age it from its arrival
            kind = str(data.get("kind") or DEFAULT_KINDS[data["type"]])
            # Clamped: a producer out of range must not outvote the others by itself.
            value = max(-1.0, min(1.0, value))
            self._latest[(message.producer, symbol)] = Signal(value, at, kind, str(data.get("source") or ""))
            price = _number(data.get("price"))
            if data["type"] == "signal" and price is not None and price > 0:
                self._prices[symbol] = (price, at)
            touched[symbol] = touched.get(symbol, 0) + 1
        return touched

    def _fresh(self, at: float, now: float) -> bool:
        limit = self.config.max_signal_age_seconds
        return limit == 0 or now - at <= limit

    # --- deciding ---

    def _decide(self, symbol: str, now: float) -> dict[str, Any] | None:
        """The directive to publish for `symbol` now, or None when there is nothing to say."""
        cfg = self.config
        votes = []  # (producer, signal, weight)
        for (producer, sym), signal in self._latest.items():
            weight = cfg.weights.get(producer, cfg.default_weight)
            if sym == symbol and weight > 0 and self._fresh(signal.at, now):
                votes.append((producer, signal, weight))
        total = sum(w for _, _, w in votes)
        if not votes or total <= 0:
            return None  # every signal is stale or muted: no view, so say nothing
        votes.sort(key=lambda v: (KIND_ORDER.get(v[1].kind, len(KIND_ORDER)), v[1].kind, v[0]))
        # Decided on the rounded score so the published score and the action never disagree.
        score = round(sum(s.value * w for _, s, w in votes) / total, 4)
        action = "buy" if score >= cfg.buy_threshold else "sell" if score <= cfg.sell_threshold else "hold"
        target = self._target(action, score)
        named = ", ".join(f"{s.kind} {p} {s.value:+.2f} (w{_weight(w)})" for p, s, w in votes)
        if action == "buy":
            why = f"{named} -> {score:+.2f} >= {cfg.buy_threshold:+.2f}"
        elif action == "sell":
            why = f"{named} -> {score:+.2f} <= {cfg.sell_threshold:+.2f}"
        else:
            why = f"{named} -> {score:+.2f}, between {cfg.sell_threshold:+.2f} and {cfg.buy_threshold:+.2f}"

        state = self._states.setdefault(symbol, SymbolState())
        if action != "hold":
            assert target is not None
            changes = state.trade_action != action or abs(target - state.trade_target) >= max(
                cfg.min_target_change, 1e-9
            )
            wait = state.trade_at + cfg.cooldown_seconds - now if state.trade_action is not None else 0.0
            if changes and wait > 0 and state.trade_action == action == state.last_action:
                return None  # a new target for the standing buy waits, and the standing one still holds
            if changes and wait > 0:
                # A flip held back: sessions keep what they have until the cooldown is over.
                why += f", but {action} waits {math.ceil(wait)}s of cooldown after {state.trade_action}"
                action, target = "hold", None
            elif changes or state.last_action != action:
                # A change, or the same target again after a hold said "keep what you have".
                state.trade_action, state.trade_target, state.trade_at = action, target or 0.0, now
            else:
                return None  # the standing target is unchanged
        if action == "hold":
            repeat = cfg.hold_every_seconds > 0 and now - state.last_at >= cfg.hold_every_seconds
            if state.last_action == "hold" and not repeat:
                return None
        state.last_action, state.last_at = action, now

        price = self._prices.get(symbol)
        sources = {s.source for _, s, _ in votes}
        return {
            "type": "directive",
            "ts": datetime.fromtimestamp(now, UTC).isoformat(),
            "symbol": symbol,
            "action": action,
            "target_weight": target,
            "score": score,
            "price": price[0] if price is not None and self._fresh(price[1], now) else None,
            "reason": f"{action}: {why}",
            "signals": {p: round(s.value, 4) for p, s, _ in votes},
            "source": _source(sources),
        }

    def _target(self, action: str, score: float) -> float | None:
        """Fraction of a session's equity to hold: None for hold (no instruction)."""
        cfg = self.config
        if action == "sell":
            return 0.0
        if action == "hold":
            return None
        if cfg.sizing == "fixed" or cfg.buy_threshold >= 1:
            return cfg.max_weight
        strength = (score - cfg.buy_threshold) / (1 - cfg.buy_threshold)
        fraction = PROPORTIONAL_FLOOR + (1 - PROPORTIONAL_FLOOR) * strength
        return round(cfg.max_weight * min(1.0, max(PROPORTIONAL_FLOOR, fraction)), 4)


def _source(sources: set[str]) -> str:
    """Simulated anywhere in the inputs makes the directive simulated; a CSV replay is no live data either."""
    if "simulated" in sources:
        return "simulated"
    if any(s.startswith("csv:") for s in sources):
        return "replay"
    return "live"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _weight(weight: float) -> str:
    text = f"{weight:.3g}"
    return text if "." in text or "e" in text else f"{text}.0"


def _summary(directives: list[dict[str, Any]], n_signals: int) -> str:
    if not directives:
        if not n_signals:
            return "no new signals"
        return f"{n_signals} signal{'' if n_signals == 1 else 's'}, no new directive"
    parts = []
    for d in directives[:SUMMARY_SYMBOLS]:
        target = f" {d['target_weight']:.2f}" if d["target_weight"] is not None else ""
        parts.append(f"{d['symbol']} {d['action']}{target} ({d['score']:+.2f})")
    if len(directives) > SUMMARY_SYMBOLS:
        parts.append(f"+{len(directives) - SUMMARY_SYMBOLS} more")
    return ", ".join(parts)

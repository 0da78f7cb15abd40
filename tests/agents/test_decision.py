"""Unit tests of the decision kind: no Redis, no database, a fake StepContext and a fake clock."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.kinds import ConfigError, validate_config
from agents.kinds.base import StepContext, StepResult
from agents.kinds.decision import Decision
from agents.runtime.bus import InputMessage

T0 = 1_750_000_000.0  # the fake clock's start, epoch seconds


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class FakeContext(StepContext):
    """A StepContext whose stream is a list and whose inputs are scripted per step with `feed`."""

    def __init__(self, symbols: list[str] | None = None, inputs: list[str] | None = None) -> None:
        self.published: list[dict[str, Any]] = []
        self.pending: list[InputMessage] = []
        super().__init__(
            agent_id="dec",
            symbols=list(symbols or []),
            publish=self._publish,
            last_published=lambda: None,
            log=logging.getLogger("tests.decision"),
            read_inputs=self._read,
            inputs=list(inputs or []),
        )

    def _publish(self, msg: dict[str, Any]) -> str:
        self.published.append(msg)
        return f"{len(self.published)}-0"

    def _read(self) -> list[InputMessage]:
        out, self.pending = self.pending, []
        return out


class Harness:
    def __init__(self, config: dict[str, Any] | None = None, **ctx_args: Any) -> None:
        self.clock = Clock()
        self.ctx = FakeContext(**ctx_args)
        self.kind = Decision(self.ctx, validate_config("decision", config or {}), now=self.clock)

    def step(self, *messages: tuple[str, dict[str, Any]], at: float | None = None) -> StepResult:
        """Feed `(producer, data)` messages and step, `at` seconds after T0 (default: the clock as is)."""
        if at is not None:
            self.clock.t = T0 + at
        self.ctx.pending = [InputMessage(p, f"{i}-0", d) for i, (p, d) in enumerate(messages)]
        return self.kind.step()

    def directive(
        self, *messages: tuple[str, dict[str, Any]], at: float | None = None
    ) -> dict[str, Any] | None:
        """Step and return the one directive published, or None."""
        before = len(self.ctx.published)
        self.step(*messages, at=at)
        new = self.ctx.published[before:]
        assert len(new) <= 1
        return new[0] if new else None

    def action(self, *messages: tuple[str, dict[str, Any]], at: float | None = None) -> str | None:
        d = self.directive(*messages, at=at)
        return d["action"] if d else None

    def target(self, *messages: tuple[str, dict[str, Any]], at: float | None = None) -> float | None:
        d = self.directive(*messages, at=at)
        assert d is not None
        return d["target_weight"]


def iso(seconds_after_t0: float = 0.0) -> str:
    return datetime.fromtimestamp(T0 + seconds_after_t0, UTC).isoformat()


def tech(
    value: float,
    symbol: str = "BTC-USD",
    age: float = 0.0,
    price: float = 100.0,
    source: str = "simulated",
    ts_at: float = 0.0,
) -> dict[str, Any]:
    """A technical signal stamped `ts_at - age` seconds after T0."""
    return {
        "type": "signal", "kind": "technical", "ts": iso(ts_at - age), "symbol": symbol, "signal": value,
        "price": price, "indicators": {"rsi": 50}, "source": source,
    }  # fmt: skip


def sent(
    average: float, symbol: str = "BTC-USD", score: float = 0.9, source: str = "simulated"
) -> dict[str, Any]:
    return {
        "type": "sentiment", "kind": "sentiment", "ts": iso(), "symbol": symbol, "score": score,
        "average": average, "trend": "up", "label": "positive", "headline": "Bitcoin rallies",
        "source": source,
    }  # fmt: skip


def refusal(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        validate_config("decision", config)
    return dict(exc.value.errors)


# --- combining ---


def test_the_score_is_the_weighted_mean_with_configured_and_default_weights() -> None:
    h = Harness({"weights": {"tech": 3.0}, "default_weight": 1.0})
    d = h.directive(("tech", tech(0.4)), ("news", sent(-0.4)))
    assert d is not None and d["score"] == 0.2  # (3 x 0.4 + 1 x -0.4) / 4
    assert d["signals"] == {"tech": 0.4, "news": -0.4}
    h2 = Harness({"weights": {"tech": 3.0}, "default_weight": 0.0})  # unlisted inputs muted
    d2 = h2.directive(("tech", tech(0.4)), ("news", sent(-0.4)))
    assert d2 is not None and d2["score"] == 0.4 and d2["signals"] == {"tech": 0.4}


def test_the_latest_value_of_each_producer_counts_and_earlier_ones_are_replaced() -> None:
    h = Harness()
    h.step(("tech", tech(0.9)), ("news", sent(0.0)), at=0)
    d = h.directive(("tech", tech(-0.1)), at=100)  # news' 0.0 from 100 s ago still votes
    assert d is not None and d["score"] == -0.05 and d["signals"] == {"tech": -0.1, "news": 0.0}


def test_sentiment_votes_with_its_average_not_the_single_headline_score() -> None:
    d = Harness().directive(("news", sent(0.2, score=-0.9)))
    assert d is not None and d["score"] == 0.2 and d["action"] == "buy"


def test_thresholds_give_buy_sell_and_hold() -> None:
    cfg = {"buy_threshold": 0.3, "sell_threshold": -0.2, "sizing": "fixed", "cooldown_seconds": 0}
    h = Harness(cfg)
    assert h.action(("t", tech(0.3)), at=0) == "buy"
    assert h.action(("t", tech(0.29)), at=1) == "hold"
    assert h.action(("t", tech(-0.2)), at=2) == "sell"
    assert h.action(("t", tech(-0.19)), at=3) == "hold"


def test_stale_signals_are_ignored_and_with_nothing_fresh_nothing_is_said() -> None:
    h = Harness({"max_signal_age_seconds": 60})
    assert h.directive(("t", tech(0.9, age=61))) is None
    d = h.directive(("t", tech(0.9, age=61)), ("news", sent(-0.5)))
    assert d is not None and d["signals"] == {"news": -0.5} and d["price"] is None
    # A signal that was fresh ages out of later decisions.
    h.step(("t", tech(0.9)), at=0)
    d = h.directive(("news", sent(-0.5) | {"ts": iso(120)}), at=120)
    assert d is not None and d["signals"] == {"news": -0.5} and d["action"] == "sell"


def test_an_age_limit_of_zero_lets_old_replayed_signals_vote() -> None:
    d = Harness({"max_signal_age_seconds": 0}).directive(("t", tech(0.9, age=10 * 86400)))
    assert d is not None and d["action"] == "buy" and d["price"] == 100.0


def test_signals_without_a_usable_value_or_ts_and_other_message_types_are_ignored() -> None:
    h = Harness()
    bar = {"type": "bar", "ts": iso(), "symbol": "BTC-USD", "close": 1.0, "price": 1.0, "source": "simulated"}
    news = {"type": "news", "ts": iso(), "symbol": "BTC-USD", "headline": "x", "signal": 1.0}
    result = h.step(
        ("md", bar),
        ("rss", news),
        ("t", tech(0.9) | {"ts": "yesterday"}),
        ("t", tech(0.9) | {"signal": "high"}),
        ("t", tech(0.9) | {"signal": True}),
        ("t", {k: v for k, v in tech(0.9).items() if k != "ts"}),
    )
    assert h.ctx.published == [] and result.counters == {"signals_in": 0, "directives": 0}
    assert not result.did_work and result.summary == "no new signals"


def test_out_of_range_signals_are_clamped() -> None:
    d = Harness().directive(("a", tech(5.0)), ("b", tech(-0.5)))
    assert d is not None and d["signals"] == {"a": 1.0, "b": -0.5} and d["score"] == 0.25


def test_symbols_are_limited_to_the_agents_symbols_unless_it_has_none() -> None:
    msgs = [("t", tech(0.9, symbol="BTC-USD")), ("t", tech(0.9, symbol="ETH-USD"))]
    h = Harness(symbols=["ETH-USD"])
    result = h.step(*msgs)
    assert [d["symbol"] for d in h.ctx.published] == ["ETH-USD"] and result.counters["signals_in"] == 1
    h = Harness()
    h.step(*msgs)
    assert [d["symbol"] for d in h.ctx.published] == ["BTC-USD", "ETH-USD"]


# --- the directive ---


def test_a_directive_has_the_documented_shape() -> None:
    h = Harness({"weights": {"tech_btc": 1.0, "sent_news": 0.5}, "sizing": "fixed"})
    h.clock.t = T0 + 5
    d = h.directive(("tech_btc", tech(0.42, price=65000.5)), ("sent_news", sent(0.31)))
    assert d == {
        "type": "directive",
        "ts": iso(5),
        "symbol": "BTC-USD",
        "action": "buy",
        "target_weight": 0.5,
        "score": 0.3833,
        "price": 65000.5,
        "reason": "buy: technical tech_btc +0.42 (w1.0), sentiment sent_news +0.31 (w0.5) -> +0.38 >= +0.15",
        "signals": {"tech_btc": 0.42, "sent_news": 0.31},
        "source": "simulated",
    }
    assert datetime.fromisoformat(d["ts"]).utcoffset() is not None


def test_the_reason_names_every_contributing_producer_and_its_value() -> None:
    h = Harness({"weights": {"muted": 0}})
    d = h.directive(("a", tech(-0.5)), ("b", tech(-0.25)), ("c", sent(-0.1)), ("muted", tech(1.0)))
    assert d is not None and d["action"] == "sell"
    reason = d["reason"]
    assert reason.startswith("sell: ") and reason.endswith("-> -0.28 <= -0.15")
    for part in ("technical a -0.50 (w1.0)", "technical b -0.25 (w1.0)", "sentiment c -0.10 (w1.0)"):
        assert part in reason
    assert "muted" not in reason and "muted" not in d["signals"]


def test_a_hold_has_no_target_and_says_the_score_is_between_the_thresholds() -> None:
    d = Harness().directive(("t", tech(0.05)))
    assert d is not None and d["action"] == "hold" and d["target_weight"] is None
    assert d["reason"] == "hold: technical t +0.05 (w1.0) -> +0.05, between -0.15 and +0.15"


def test_the_reference_price_is_the_latest_technical_price() -> None:
    h = Harness({"cooldown_seconds": 0})
    h.step(("t1", tech(0.9, price=100.0)), ("t2", tech(0.9, price=101.0)))
    d = h.directive(("news", sent(-0.9)), ("t1", tech(-0.9, price=99.0)), at=1)
    assert d is not None and d["price"] == 99.0
    assert Harness().directive(("news", sent(0.9)))["price"] is None


def test_source_is_simulated_when_any_input_is_and_live_or_replay_otherwise() -> None:
    d = Harness().directive(("t", tech(0.9, source="live")), ("n", sent(0.9, source="simulated")))
    assert d is not None and d["source"] == "simulated"
    d = Harness().directive(("t", tech(0.9, source="live")), ("n", sent(0.9, source="rss:reuters")))
    assert d is not None and d["source"] == "live"
    d = Harness().directive(("t", tech(0.9, source="csv:btc.csv")), ("n", sent(0.9, source="rss")))
    assert d is not None and d["source"] == "replay"
    # Only contributing signals count: a muted simulated input does not relabel live data.
    d = Harness({"weights": {"n": 0}}).directive(("t", tech(0.9, source="live")), ("n", sent(0.9)))
    assert d is not None and d["source"] == "live"


def test_counters_and_summary() -> None:
    h = Harness({"sizing": "fixed"})
    result = h.step(("t", tech(0.5)), ("t", tech(0.4, symbol="ETH-USD")), ("n", sent(0.3)))
    assert result.counters == {"signals_in": 3, "directives": 2} and result.published == 2
    assert result.did_work and result.summary == "BTC-USD buy 0.50 (+0.40), ETH-USD buy 0.50 (+0.40)"
    result = h.step(("t", tech(0.5)), at=1)
    assert result.counters == {"signals_in": 1, "directives": 0}
    assert result.summary == "1 signal, no new directive"
    assert h.step(("t", tech(-0.1)), at=2).summary == "BTC-USD hold (+0.10)"


# --- sizing ---


def test_fixed_sizing_buys_max_weight_and_sell_targets_zero() -> None:
    h = Harness({"sizing": "fixed", "max_weight": 0.3, "cooldown_seconds": 0})
    assert h.target(("t", tech(0.16)), at=0) == 0.3
    assert h.target(("t", tech(-0.9)), at=1) == 0.0


def test_proportional_sizing_grows_from_a_floor_at_the_threshold_to_max_weight_at_one() -> None:
    cfg = {"sizing": "proportional", "max_weight": 0.4, "buy_threshold": 0.2}
    assert Harness(cfg).target(("t", tech(0.2))) == 0.1
    assert Harness(cfg).target(("t", tech(0.6))) == 0.25
    assert Harness(cfg).target(("t", tech(1.0))) == 0.4
    one = {**cfg, "buy_threshold": 1.0}
    assert Harness(one).target(("t", tech(1.0))) == 0.4


def test_a_proportional_buy_is_retargeted_only_for_a_big_enough_change_after_the_cooldown() -> None:
    h = Harness({"max_weight": 0.4, "buy_threshold": 0.2, "min_target_change": 0.05, "cooldown_seconds": 30})
    assert h.target(("t", tech(0.2)), at=0) == 0.1
    assert h.directive(("t", tech(0.3)), at=40) is None  # target 0.1375: too small a move
    assert h.target(("t", tech(1.0)), at=45) == 0.4
    assert h.directive(("t", tech(0.2)), at=50) is None  # the standing buy stands during the cooldown
    assert h.target(("t", tech(0.2)), at=75) == 0.1


# --- cooldown and repeats ---


def test_the_cooldown_suppresses_flip_flopping_and_lets_the_change_through_after_it() -> None:
    h = Harness({"cooldown_seconds": 30, "sizing": "fixed", "hold_every_seconds": 60})
    assert h.action(("t", tech(0.5)), at=0) == "buy"
    held = h.directive(("t", tech(-0.5)), at=10)
    assert held is not None and held["action"] == "hold" and held["target_weight"] is None
    assert held["reason"].endswith("-0.50 <= -0.15, but sell waits 20s of cooldown after buy")
    assert h.directive(("t", tech(-0.5)), at=20) is None  # still held back, hold already said
    assert h.action(("t", tech(0.5)), at=25) == "buy"  # no change: at once
    assert h.action(("t", tech(-0.5)), at=54) == "hold"  # 30 s after 25
    sell = h.directive(("t", tech(-0.5)), at=55)
    assert sell is not None and sell["action"] == "sell" and sell["target_weight"] == 0.0
    # The cooldown is per symbol.
    assert h.action(("t", tech(0.5, symbol="ETH-USD")), at=56) == "buy"


def test_an_unchanged_buy_is_not_repeated_but_is_restated_after_a_hold() -> None:
    h = Harness({"sizing": "fixed", "hold_every_seconds": 0})
    assert h.action(("t", tech(0.5)), at=0) == "buy"
    assert h.directive(("t", tech(0.6)), at=100) is None
    assert h.action(("t", tech(0.0)), at=101) == "hold"
    assert h.action(("t", tech(0.5)), at=102) == "buy"


def test_hold_is_said_when_the_view_turns_to_hold_then_repeated_every_hold_every_seconds() -> None:
    h = Harness({"hold_every_seconds": 60})
    assert h.action(("t", tech(0.0)), at=0) == "hold"
    assert h.directive(("t", tech(0.05)), at=30) is None
    assert h.directive(("t", tech(0.05)), at=59) is None
    assert h.action(("t", tech(0.05)), at=60) == "hold"
    assert h.directive(("t", tech(0.05)), at=61) is None


def test_with_hold_every_zero_a_hold_is_said_once_and_never_repeated() -> None:
    h = Harness({"hold_every_seconds": 0})
    assert h.action(("t", tech(0.0)), at=0) == "hold"
    assert all(h.directive(("t", tech(0.0, ts_at=t)), at=t) is None for t in (60, 600, 6000))


def test_no_new_signal_for_a_symbol_means_no_directive_for_it() -> None:
    h = Harness({"hold_every_seconds": 1})
    h.step(("t", tech(0.0)), at=0)
    assert h.directive(at=100) is None
    assert h.directive(("t", tech(0.0, symbol="ETH-USD")), at=101)["symbol"] == "ETH-USD"


# --- config ---


def test_the_defaults_are_valid_and_documented() -> None:
    cfg = validate_config("decision", {})
    assert (cfg.buy_threshold, cfg.sell_threshold, cfg.cooldown_seconds) == (0.15, -0.15, 30.0)
    assert all(f.description for f in type(cfg).model_fields.values())


def test_a_sell_threshold_not_below_the_buy_threshold_is_refused_naming_it() -> None:
    assert "sell_threshold" in refusal({"buy_threshold": 0.2, "sell_threshold": 0.2})
    assert "sell_threshold" in refusal({"buy_threshold": 0.2, "sell_threshold": 0.5})


def test_thresholds_out_of_range_are_refused() -> None:
    assert "buy_threshold" in refusal({"buy_threshold": 0})
    assert "buy_threshold" in refusal({"buy_threshold": 1.5})
    assert "sell_threshold" in refusal({"sell_threshold": -1.5})


def test_a_negative_weight_is_refused_naming_its_producer() -> None:
    assert "weights.tech" in refusal({"weights": {"tech": -1}})
    assert "default_weight" in refusal({"default_weight": -0.1})


def test_bad_sizing_and_weights_out_of_range_are_refused() -> None:
    assert "sizing" in refusal({"sizing": "kelly"})
    assert "max_weight" in refusal({"max_weight": 1.5})
    assert "max_weight" in refusal({"max_weight": 0})
    assert "cooldown_seconds" in refusal({"cooldown_seconds": -1})


def test_an_unknown_config_key_is_refused() -> None:
    assert "threshold" in refusal({"threshold": 0.2})


def test_weights_for_agents_that_are_not_inputs_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        Harness({"weights": {"tech": 1, "tecj": 2}}, inputs=["tech", "news"])
    assert "tecj" in caplog.text and "tech," not in caplog.text


def test_an_accelerated_signal_ages_from_its_arrival_not_from_its_market_time() -> None:
    """An accelerated simulation's ts run ahead of the clock: judged by ts it would never
    age (a stopped feed would vote for ever); by arrival it does, like any other."""
    h = Harness({"max_signal_age_seconds": 60})
    future = tech(0.9, ts_at=86_400) | {"speed": 60}  # a day ahead in market time
    assert h.action(("t", future), at=0) == "buy"
    # Still the standing view while fresh; then, with nothing new, it ages out: the next
    # signal from another producer votes alone.
    d = h.directive(("news", sent(-0.5) | {"ts": iso(61)}), at=61)
    assert d is not None and d["signals"] == {"news": -0.5}


def test_a_real_time_signal_from_the_future_is_not_aged_from_its_arrival() -> None:
    """Only a message that says it is accelerated is aged from arrival; a real-time one
    keeps its own ts (a clock skew is not hidden)."""
    h = Harness({"max_signal_age_seconds": 60})
    assert h.action(("t", tech(0.9, ts_at=86_400)), at=0) == "buy"
    d = h.directive(("news", sent(-0.5) | {"ts": iso(61)}), at=61)
    assert d is not None and set(d["signals"]) == {"t", "news"}

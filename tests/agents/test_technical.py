"""Unit tests of the technical kind: no Redis, no database, a fake StepContext fed scripted bars."""

from __future__ import annotations

import logging
import math
import random
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from talipp.indicators import BB, MACD, RSI, SMA

from agents.kinds import ConfigError, get_kind, validate_config
from agents.kinds import technical_indicators as ti
from agents.kinds.base import StepContext
from agents.kinds.technical import Technical
from agents.kinds.technical_indicators import combine, component_scores
from agents.runtime.bus import InputMessage

SMALL = {
    "fast_ma": 2,
    "slow_ma": 4,
    "rsi_period": 3,
    "macd_fast": 2,
    "macd_slow": 4,
    "macd_signal": 2,
    "bb_period": 4,
}


class FakeContext(StepContext):
    """A StepContext whose inputs are scripted: each step reads the next batch of messages."""

    def __init__(self, symbols: list[str] | None = None) -> None:
        self.published: list[dict[str, Any]] = []
        self.batches: list[list[InputMessage]] = []
        super().__init__(
            agent_id="tech1",
            symbols=list(symbols if symbols is not None else ["BTC-USD"]),
            publish=self._publish,
            last_published=lambda: None,
            log=logging.getLogger("tests.technical"),
            read_inputs=self._read,
            inputs=["md1"],
        )

    def _publish(self, msg: dict[str, Any]) -> str:
        self.published.append(msg)
        return f"{len(self.published)}-0"

    def _read(self) -> list[InputMessage]:
        return self.batches.pop(0) if self.batches else []


_ids = iter(range(1, 10**9))


def bar(
    close: float, symbol: str = "BTC-USD", source: str = "simulated", producer: str = "md1"
) -> InputMessage:
    n = next(_ids)
    data = {
        "type": "bar", "ts": f"2024-01-01T00:00:{n % 60:02d}+00:00", "symbol": symbol, "open": close,
        "high": close, "low": close, "close": close, "volume": 1.0, "price": close, "source": source,
    }  # fmt: skip
    return InputMessage(producer, f"{n}-0", data)


def bars(closes: list[float], **kw: Any) -> list[InputMessage]:
    return [bar(c, **kw) for c in closes]


def make(
    config: dict[str, Any] | None = None, symbols: list[str] | None = None
) -> tuple[Technical, FakeContext]:
    ctx = FakeContext(symbols)
    return Technical(ctx, validate_config("technical", config or {})), ctx


def feed(kind: Technical, ctx: FakeContext, batch: list[InputMessage]) -> Any:
    ctx.batches.append(batch)
    return kind.step()


def refusal(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        validate_config("technical", config)
    return dict(exc.value.errors)


RISING = [100 * 1.01**i for i in range(60)]  # steady, accelerating in absolute terms
FALLING = [300 - 100 * 1.01**i for i in range(60)]  # its mirror: ever faster down


# --- registry and config ---


def test_the_kind_is_registered_with_its_role() -> None:
    assert get_kind("technical") is Technical
    assert Technical.roles == ("specialized_technical",)


def test_defaults() -> None:
    cfg = validate_config("technical", {})
    assert (cfg.fast_ma, cfg.slow_ma, cfg.rsi_period, cfg.rsi_overbought, cfg.rsi_oversold) == (
        5,
        20,
        14,
        70,
        30,
    )
    assert (cfg.macd_fast, cfg.macd_slow, cfg.macd_signal, cfg.bb_period, cfg.bb_std) == (12, 26, 9, 20, 2.0)
    assert cfg.weights.model_dump() == {"ma_cross": 1.0, "rsi": 1.0, "macd": 1.0, "bollinger": 1.0}
    assert cfg.emit == "every_bar" and cfg.tick_seconds == 1.0


@pytest.mark.parametrize("slow", [5, 3])
def test_a_slow_average_not_slower_than_the_fast_one_is_refused_naming_slow_ma(slow: int) -> None:
    assert "fast_ma" in refusal({"fast_ma": 5, "slow_ma": slow})["slow_ma"]


def test_a_macd_slow_period_not_above_the_fast_one_is_refused_naming_macd_slow() -> None:
    assert "macd_fast" in refusal({"macd_fast": 12, "macd_slow": 12})["macd_slow"]


@pytest.mark.parametrize("oversold", [70, 80])
def test_oversold_not_below_overbought_is_refused_naming_rsi_oversold(oversold: float) -> None:
    assert "rsi_overbought" in refusal({"rsi_overbought": 70, "rsi_oversold": oversold})["rsi_oversold"]


def test_all_zero_weights_are_refused() -> None:
    zero = dict.fromkeys(["ma_cross", "rsi", "macd", "bollinger"], 0)
    assert "at least one" in refusal({"weights": zero})["weights"]


def test_weights_left_out_keep_their_default_and_unknown_components_are_refused() -> None:
    assert validate_config("technical", {"weights": {"rsi": 3}}).weights.model_dump() == {
        "ma_cross": 1.0, "rsi": 3.0, "macd": 1.0, "bollinger": 1.0,
    }  # fmt: skip
    assert "weights.volume" in refusal({"weights": {"volume": 1}})
    assert "weights.rsi" in refusal({"weights": {"rsi": -1}})


def test_unknown_keys_and_out_of_range_values_are_refused() -> None:
    assert "fast" in refusal({"fast": 3})
    errors = refusal({"rsi_period": 1, "bb_std": 0, "emit": "sometimes", "rsi_overbought": 101})
    assert set(errors) == {"rsi_period", "bb_std", "emit", "rsi_overbought"}
    assert "bb_std" in refusal({"bb_std": float("nan")})


# --- component maths on known numbers ---

KNOBS = {"rsi_oversold": 30.0, "rsi_overbought": 70.0, "ma_sensitivity": 100.0, "macd_sensitivity": 300.0}
NONE = dict.fromkeys(ti.INDICATOR_KEYS)


def test_ma_cross_is_tanh_of_the_scaled_relative_gap() -> None:
    scores = component_scores({**NONE, "sma_fast": 101.0, "sma_slow": 100.0}, 100.0, **KNOBS)
    assert scores["ma_cross"] == pytest.approx(math.tanh(1.0))
    scores = component_scores({**NONE, "sma_fast": 99.5, "sma_slow": 100.0}, 100.0, **KNOBS)
    assert scores["ma_cross"] == pytest.approx(math.tanh(-0.5))
    assert scores["rsi"] is scores["macd"] is scores["bollinger"] is None


@pytest.mark.parametrize(
    ("rsi", "expected"), [(30, 1.0), (10, 1.0), (40, 0.5), (50, 0.0), (60, -0.5), (70, -1.0), (95, -1.0)]
)
def test_rsi_buys_when_oversold_and_sells_when_overbought(rsi: float, expected: float) -> None:
    assert component_scores({**NONE, "rsi": rsi}, 1.0, **KNOBS)["rsi"] == pytest.approx(expected)


def test_rsi_thresholds_move_the_neutral_point() -> None:
    knobs = {**KNOBS, "rsi_oversold": 20.0, "rsi_overbought": 60.0}
    assert component_scores({**NONE, "rsi": 40}, 1.0, **knobs)["rsi"] == pytest.approx(0.0)
    assert component_scores({**NONE, "rsi": 20}, 1.0, **knobs)["rsi"] == pytest.approx(1.0)


def test_macd_is_the_histogram_relative_to_price() -> None:
    scores = component_scores({**NONE, "macd_hist": 0.25}, 100.0, **KNOBS)
    assert scores["macd"] == pytest.approx(math.tanh(300 * 0.0025))
    assert component_scores({**NONE, "macd_hist": -0.25}, 100.0, **KNOBS)["macd"] < 0


@pytest.mark.parametrize(
    ("close", "expected"), [(90, 1.0), (95, 0.5), (100, 0.0), (110, -1.0), (80, 1.0), (120, -1.0)]
)
def test_bollinger_buys_at_the_lower_band_and_sells_at_the_upper(close: float, expected: float) -> None:
    values = {**NONE, "bb_lower": 90.0, "bb_mid": 100.0, "bb_upper": 110.0}
    assert component_scores(values, close, **KNOBS)["bollinger"] == pytest.approx(expected)


def test_a_flat_band_gives_no_opinion() -> None:
    values = {**NONE, "bb_lower": 100.0, "bb_mid": 100.0, "bb_upper": 100.0}
    assert component_scores(values, 100.0, **KNOBS)["bollinger"] == 0.0


def test_combine_renormalises_over_the_ready_weighted_components() -> None:
    weights = {"ma_cross": 1.0, "rsi": 3.0, "macd": 1.0, "bollinger": 0.0}
    scores = {"ma_cross": 0.8, "rsi": -0.4, "macd": None, "bollinger": 1.0}
    assert combine(scores, weights) == pytest.approx(round((0.8 - 1.2) / 4, 4))
    assert combine({"ma_cross": None, "rsi": None, "macd": None, "bollinger": 1.0}, weights) is None
    assert combine({"ma_cross": 1.0, "rsi": 1.0, "macd": 1.0, "bollinger": 1.0}, weights) == 1.0
    assert combine({"ma_cross": 1 / 3, "rsi": None, "macd": None, "bollinger": None}, weights) == 0.3333


# --- indicators against talipp and by hand ---


def test_indicator_values_are_talipps_and_the_hand_computed_ones() -> None:
    kind, ctx = make({"weights": {"macd": 0}})  # MACD's long warm-up would hold the signal back
    closes = [float(i) for i in range(1, 21)]
    feed(kind, ctx, bars(closes))
    ind = ctx.published[-1]["indicators"]
    assert ind["sma_fast"] == pytest.approx(18.0) and ind["sma_slow"] == pytest.approx(10.5)
    assert ind["bb_mid"] == pytest.approx(10.5)
    assert ind["bb_upper"] == pytest.approx(10.5 + 2 * statistics.pstdev(closes))
    assert ind["rsi"] == 100.0  # no losses at all
    assert ind["macd_hist"] is None  # MACD's histogram needs 26 + 9 - 1 bars

    rng = random.Random(4)
    walk = [100.0]
    for _ in range(79):
        walk.append(walk[-1] * math.exp(rng.gauss(0, 0.02)))
    kind, ctx = make()
    feed(kind, ctx, bars(walk))
    ind = ctx.published[-1]["indicators"]
    macd, bb = MACD(12, 26, 9, input_values=walk)[-1], BB(20, 2.0, input_values=walk)[-1]
    expected = {
        "sma_fast": SMA(5, input_values=walk)[-1], "sma_slow": SMA(20, input_values=walk)[-1],
        "rsi": RSI(14, input_values=walk)[-1], "macd": macd.macd, "macd_signal": macd.signal,
        "macd_hist": macd.histogram, "bb_lower": bb.lb, "bb_mid": bb.cb, "bb_upper": bb.ub,
    }  # fmt: skip
    assert ind == pytest.approx(expected, rel=1e-7)
    assert ind["sma_fast"] == pytest.approx(sum(walk[-5:]) / 5)


def test_dropping_old_history_changes_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ti, "PURGE_BATCH", 7)
    rng = random.Random(9)
    walk = [50.0]
    for _ in range(1499):
        walk.append(walk[-1] * math.exp(rng.gauss(0, 0.01)))
    series = ti.Series(validate_config("technical", {}).periods(), "simulated")
    for close in walk:
        series.add(close, "")
    assert len(series.sma_fast.input_values) < 500
    macd = MACD(12, 26, 9, input_values=walk)[-1]
    values = series.values()
    assert values["macd_hist"] == pytest.approx(macd.histogram, rel=1e-9)
    assert values["rsi"] == pytest.approx(RSI(14, input_values=walk)[-1], rel=1e-9)
    assert values["sma_slow"] == pytest.approx(sum(walk[-20:]) / 20, rel=1e-9)


def test_a_rising_market_reads_as_trend_up_and_stretched() -> None:
    kind, ctx = make()
    feed(kind, ctx, bars(RISING))
    components = ctx.published[-1]["components"]
    assert components["ma_cross"] > 0.5 and components["macd"] > 0  # trend followers buy
    assert components["rsi"] == -1.0 and components["bollinger"] < 0  # mean reverters sell


def test_a_falling_market_is_the_mirror_image() -> None:
    kind, ctx = make()
    feed(kind, ctx, bars(FALLING))
    components = ctx.published[-1]["components"]
    assert components["ma_cross"] < -0.5 and components["macd"] < 0
    assert components["rsi"] == 1.0 and components["bollinger"] > 0


def test_trend_weights_alone_make_a_rising_market_a_buy() -> None:
    kind, ctx = make({"weights": {"rsi": 0, "bollinger": 0}})
    feed(kind, ctx, bars(RISING))
    assert ctx.published[-1]["signal"] > 0.5


# --- warm-up, stepping, message ---


def test_nothing_is_emitted_until_every_weighted_component_is_warm() -> None:
    kind, ctx = make()
    # RSI(14) is warm after 15 bars, the averages and bands after 20, but MACD's histogram
    # needs 26 + 9 - 1 = 34: no vote from a part of the indicators before then.
    result = feed(kind, ctx, bars([100.0 + i for i in range(33)]))
    assert ctx.published == [] and not result.did_work and result.published == 0
    assert result.summary == "warming up (33/34 bars)"
    assert result.counters == {"bars_in": 33, "signals": 0}
    result = feed(kind, ctx, bars([140.0]))
    assert result.did_work and result.published == 1 and result.counters == {"bars_in": 1, "signals": 1}
    msg = ctx.published[0]
    assert all(score is not None for score in msg["components"].values()), msg["components"]
    assert result.summary == f"BTC-USD {msg['signal']:+.2f}"


def test_the_warm_up_counts_only_weighted_components() -> None:
    kind, ctx = make({"weights": {"ma_cross": 0, "rsi": 0, "bollinger": 0}})
    assert feed(kind, ctx, bars([100.0 + i for i in range(33)])).summary == "warming up (33/34 bars)"
    assert feed(kind, ctx, bars([140.0])).published == 1
    kind, ctx = make({"weights": {"macd": 0}})  # then the averages and bands, 20 bars
    assert feed(kind, ctx, bars([100.0 + i for i in range(19)])).summary == "warming up (19/20 bars)"
    assert feed(kind, ctx, bars([140.0])).published == 1


def test_one_signal_per_symbol_per_step_from_its_latest_bar() -> None:
    kind, ctx = make(SMALL, symbols=["BTC-USD", "ETH-USD"])
    batch = bars([10, 11, 12, 13, 14, 15]) + bars([5, 4, 3, 2, 1.5], symbol="ETH-USD")
    result = feed(kind, ctx, batch)
    assert [m["symbol"] for m in ctx.published] == ["BTC-USD", "ETH-USD"]
    btc, eth = ctx.published
    assert btc["price"] == 15 and btc["ts"] == batch[5].data["ts"]
    assert eth["price"] == 1.5 and eth["ts"] == batch[-1].data["ts"]
    assert btc["signal"] != eth["signal"]
    assert result.summary == f"BTC-USD {btc['signal']:+.2f}, ETH-USD {eth['signal']:+.2f}"
    assert result.counters == {"bars_in": 11, "signals": 2}


def test_the_summary_names_signals_and_symbols_still_warming_up() -> None:
    kind, ctx = make(SMALL, symbols=[])
    result = feed(
        kind, ctx, bars([1, 2, 3, 4, 5]) + bars([1, 2], symbol="ETH-USD") + bars([3], symbol="SOL-USD")
    )
    assert result.summary == f"BTC-USD {ctx.published[0]['signal']:+.2f}; 2 symbols warming up (2/5 bars)"


def test_the_message_format() -> None:
    kind, ctx = make(SMALL)
    feed(kind, ctx, bars([10, 11, 12, 11, 13, 14]))
    msg = ctx.published[0]
    assert set(msg) == {
        "type",
        "kind",
        "ts",
        "symbol",
        "signal",
        "price",
        "indicators",
        "components",
        "source",
    }
    assert msg["type"] == "signal" and msg["kind"] == "technical" and msg["symbol"] == "BTC-USD"
    assert set(msg["indicators"]) == set(ti.INDICATOR_KEYS)
    assert set(msg["components"]) == {"ma_cross", "rsi", "macd", "bollinger"}
    assert all(isinstance(v, float) for v in msg["indicators"].values())
    assert msg["signal"] == round(msg["signal"], 4) and -1 <= msg["signal"] <= 1


def test_tiny_prices_keep_their_indicator_digits() -> None:
    kind, ctx = make(SMALL)
    feed(kind, ctx, bars([0.00001234, 0.00001301, 0.00001277, 0.00001342, 0.00001399, 0.0000142]))
    ind = ctx.published[0]["indicators"]
    assert ind["sma_fast"] == pytest.approx((0.00001399 + 0.0000142) / 2, rel=1e-7)
    assert ind["macd_hist"] != 0


def test_a_step_without_bars_does_nothing() -> None:
    kind, ctx = make()
    result = kind.step()
    assert (
        not result.did_work
        and result.summary == "no new bars"
        and result.counters == {"bars_in": 0, "signals": 0}
    )


# --- inputs: symbols, other messages, sources, producers ---


def test_only_the_configured_symbols_are_used() -> None:
    kind, ctx = make(SMALL, symbols=["ETH-USD"])
    result = feed(kind, ctx, bars([1, 2, 3, 4, 5]) + bars([1, 2, 3, 4, 5], symbol="ETH-USD"))
    assert [m["symbol"] for m in ctx.published] == ["ETH-USD"] and result.counters["bars_in"] == 5


def test_without_configured_symbols_every_symbol_seen_is_used() -> None:
    kind, ctx = make(SMALL, symbols=[])
    feed(kind, ctx, bars([1, 2, 3, 4, 5]) + bars([1, 2, 3, 4, 5], symbol="SOL-USD"))
    assert [m["symbol"] for m in ctx.published] == ["BTC-USD", "SOL-USD"]


def test_messages_other_than_bars_are_ignored_and_malformed_bars_counted() -> None:
    kind, ctx = make(SMALL)
    news = InputMessage("news1", "1-0", {"type": "news", "symbol": "BTC-USD", "headline": "up", "close": 1e9})
    broken = [
        InputMessage("md1", "2-0", {"type": "bar", "symbol": "BTC-USD", "close": "abc"}),
        InputMessage("md1", "3-0", {"type": "bar", "symbol": "BTC-USD", "close": -1}),
        InputMessage("md1", "4-0", {"type": "bar", "close": 5.0}),
        InputMessage("md1", "5-0", {"type": "bar", "symbol": "BTC-USD", "close": float("nan")}),
    ]
    result = feed(kind, ctx, [news, *broken, *bars([1, 2, 3, 4, 5])])
    assert result.counters == {"bars_in": 5, "signals": 1, "bad_bars": 4}
    assert ctx.published[0]["price"] == 5


@pytest.mark.parametrize("source", ["simulated", "csv:btc.csv"])
def test_the_bars_source_passes_through(source: str) -> None:
    kind, ctx = make(SMALL)
    feed(kind, ctx, bars([1, 2, 3, 4, 5], source=source))
    assert ctx.published[0]["source"] == source


def test_a_feed_that_changes_source_starts_a_new_series() -> None:
    kind, ctx = make(SMALL)
    feed(kind, ctx, bars([1, 2, 3, 4, 5], source="simulated"))
    result = feed(kind, ctx, bars([100, 101], source="csv:btc.csv"))
    assert result.published == 0 and result.summary == "warming up (2/5 bars)"
    feed(kind, ctx, bars([102, 103, 104], source="csv:btc.csv"))
    assert ctx.published[-1]["source"] == "csv:btc.csv"
    assert ctx.published[-1]["indicators"]["sma_slow"] == pytest.approx(102.5)


def test_two_producers_of_one_symbol_are_not_mixed() -> None:
    kind, ctx = make(SMALL)
    batch = bars([1, 2, 3, 4, 5], producer="a") + bars([100, 100, 100, 100, 100], producer="b")
    feed(kind, ctx, batch)
    assert sorted(m["indicators"]["sma_slow"] for m in ctx.published) == [3.5, 100.0]


# --- emit modes ---


def test_on_change_publishes_only_when_the_signal_moves() -> None:
    kind, ctx = make({**SMALL, "emit": "on_change"})
    assert feed(kind, ctx, bars([5.0] * 6)).published == 1
    quiet = feed(kind, ctx, bars([5.0]))
    assert quiet.published == 0 and not quiet.did_work
    assert quiet.summary.startswith("unchanged: BTC-USD")
    assert feed(kind, ctx, bars([7.0])).published == 1


def test_every_bar_publishes_each_step_even_when_unchanged() -> None:
    kind, ctx = make(SMALL)
    assert [feed(kind, ctx, bars([5.0] * 6)).published, feed(kind, ctx, bars([5.0])).published] == [1, 1]


# --- bounds ---


@settings(max_examples=60, deadline=None)
@given(
    returns=st.lists(st.floats(min_value=-0.5, max_value=0.5, allow_nan=False), min_size=1, max_size=120),
    start=st.floats(min_value=1e-6, max_value=1e6),
    chunk=st.integers(min_value=1, max_value=15),
)
def test_the_signal_and_every_component_stay_within_minus_one_and_one(
    returns: list[float], start: float, chunk: int
) -> None:
    kind, ctx = make({**SMALL, "ma_sensitivity": 1000, "macd_sensitivity": 1000})
    closes = [start]
    for r in returns:
        closes.append(closes[-1] * math.exp(r))
    for i in range(0, len(closes), chunk):
        feed(kind, ctx, bars(closes[i : i + chunk]))
    assert len(closes) < 5 or ctx.published  # SMALL's slowest warm-up: MACD, 4 + 2 - 1 bars
    for msg in ctx.published:
        assert -1 <= msg["signal"] <= 1
        assert all(c is None or -1 <= c <= 1 for c in msg["components"].values())


# --- no movement is no opinion ---

SELL_THRESHOLD = -0.15  # the decision kind's default


def signals_of(closes: list[float], config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    kind, ctx = make(config)
    for close in closes:
        feed(kind, ctx, [bar(close)])
    return ctx.published


@pytest.mark.parametrize("price", [100.0, 65_000.13, 0.00012345, 3_400.0])
@pytest.mark.parametrize("config", [None, SMALL], ids=["defaults", "small"])
def test_a_flat_market_gives_no_opinion_on_any_component(price: float, config: dict[str, Any] | None) -> None:
    published = signals_of([price] * 80, config)
    assert published, "the components warm up on a flat market too"
    for message in published:
        assert message["signal"] == 0.0
        assert all(score in (None, 0.0) for score in message["components"].values()), message["components"]
    assert all(score == 0.0 for score in published[-1]["components"].values())


def test_float_rounding_noise_is_no_movement() -> None:
    rng = random.Random(3)
    closes = [65_000.13 * (1 + rng.uniform(-1e-13, 1e-13)) for _ in range(80)]
    assert len(set(closes)) > 1  # really not identical
    last = signals_of(closes)[-1]
    assert last["signal"] == 0.0
    assert all(score == 0.0 for score in last["components"].values())


@pytest.mark.parametrize("seed", range(8))
def test_a_near_flat_market_gives_no_extreme_vote(seed: int) -> None:
    """Tiny noise is movement, but it must not pin the oscillators to a sell."""
    rng = random.Random(seed)
    closes = [100.0 * (1 + rng.gauss(0, 1e-6)) for _ in range(80)]
    for message in signals_of(closes):
        assert math.isfinite(message["signal"]) and -1 <= message["signal"] <= 1
        # The trend components are in proportion to the (tiny) move.
        for name in ("ma_cross", "macd"):
            assert message["components"][name] in (None, pytest.approx(0, abs=1e-3))


def test_near_flat_noise_does_not_lean_to_sell_on_average() -> None:
    finals = []
    for seed in range(40):
        rng = random.Random(seed)
        finals.append(signals_of([100.0 * (1 + rng.gauss(0, 1e-6)) for _ in range(60)])[-1]["signal"])
    assert statistics.mean(finals) == pytest.approx(0, abs=0.1)


@pytest.mark.parametrize("tick", [0.0001, 0.01])
def test_a_single_up_tick_after_flat_is_not_a_sell(tick: float) -> None:
    published = signals_of([100.0] * 60 + [100.0 * (1 + tick)])
    last = published[-1]
    assert last["signal"] > SELL_THRESHOLD
    # One move in the window: the oscillators count it as one bar in their window, not as a
    # market stretched to its limit.
    assert last["components"]["rsi"] == pytest.approx(-1 / 14, abs=1e-4)
    assert last["components"]["bollinger"] == pytest.approx(-1 / 19, abs=1e-4)
    assert last["components"]["ma_cross"] > 0 and last["components"]["macd"] > 0


def test_a_single_down_tick_after_flat_is_not_a_buy() -> None:
    last = signals_of([100.0] * 60 + [99.99])[-1]
    assert last["signal"] < 0.15
    assert last["components"]["rsi"] == pytest.approx(1 / 14, abs=1e-4)


def test_a_market_that_moves_every_bar_keeps_full_oscillator_votes() -> None:
    last = signals_of(RISING)[-1]
    assert last["components"]["rsi"] == -1.0  # a real run up is overbought


def test_component_scores_take_the_share_of_the_window_that_moved() -> None:
    values = {**NONE, "rsi": 100.0, "bb_lower": 99.0, "bb_mid": 100.0, "bb_upper": 101.0}
    still = component_scores(values, 101.0, **KNOBS, moved={"rsi": 0.0, "bollinger": 0.0})
    assert still["rsi"] == 0.0 and still["bollinger"] == 0.0
    half = component_scores(values, 101.0, **KNOBS, moved={"rsi": 0.5, "bollinger": 0.5})
    assert half["rsi"] == pytest.approx(-0.5) and half["bollinger"] == pytest.approx(-0.5)


def test_the_trend_components_take_the_share_of_their_window_that_moved_too() -> None:
    values = {**NONE, "sma_fast": 101.0, "sma_slow": 100.0, "macd_hist": 0.5}
    full = component_scores(values, 100.0, **KNOBS)
    assert full["ma_cross"] > 0.5 and full["macd"] > 0.5
    still = component_scores(values, 100.0, **KNOBS, moved={"ma_cross": 0.0, "macd": 0.0})
    assert still["ma_cross"] == 0.0 and still["macd"] == 0.0
    half = component_scores(values, 100.0, **KNOBS, moved={"ma_cross": 0.5, "macd": 0.5})
    assert half["ma_cross"] == pytest.approx(full["ma_cross"] / 2)
    assert half["macd"] == pytest.approx(full["macd"] / 2)


DEMO_THRESHOLD = 0.10  # the demo decision agent's buy and sell thresholds, the tightest used


@pytest.mark.parametrize("change", [0.2, -0.2, 0.05], ids=["rise 20%", "fall 20%", "rise 5%"])
@pytest.mark.parametrize("move_bars", [20, 40])
def test_a_move_then_a_flat_price_fades_to_no_opinion(change: float, move_bars: int) -> None:
    """A symbol that stopped moving has no opinion: MACD's line sinking back under its
    signal line after a move is a memory of the move, not a vote on a quiet market."""
    move = [100.0 * (1 + change * i / move_bars) for i in range(move_bars + 1)]
    magnitudes = []
    for flat in (20, 30, 60):
        last = signals_of([100.0] * 40 + move + [move[-1]] * flat)[-1]
        assert abs(last["signal"]) < DEMO_THRESHOLD, (flat, last)
        magnitudes.append(abs(last["signal"]))
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[-1] == 0.0  # the whole slow window flat: no opinion at all


def test_a_market_still_falling_keeps_its_full_trend_sell_vote() -> None:
    kind, ctx = make({"weights": {"rsi": 0, "bollinger": 0}})
    feed(kind, ctx, bars(FALLING))
    last = ctx.published[-1]
    assert last["components"]["ma_cross"] < -0.5 and last["components"]["macd"] < -0.2
    assert last["signal"] < -0.5


@pytest.mark.parametrize(
    "values",
    [
        {"sma_fast": 100.0, "sma_slow": 100.0},
        {"sma_fast": 100.0 + 1e-12, "sma_slow": 100.0},
        {"macd_hist": 0.0},
        {"macd_hist": 1e-13},
        {"bb_lower": 100.0, "bb_mid": 100.0, "bb_upper": 100.0 + 1e-12},
    ],
)
def test_degenerate_indicator_values_give_no_opinion(values: dict[str, float]) -> None:
    scores = component_scores({**NONE, **values}, 100.0, **KNOBS)
    assert all(score in (None, 0.0) for score in scores.values()), scores


def test_a_signal_is_stamped_with_its_bars_close_and_passes_an_accelerated_speed_on() -> None:
    kind, ctx = make({"fast_ma": 1, "slow_ma": 2, "weights": {"rsi": 0, "macd": 0, "bollinger": 0}})
    batch = bars([100.0, 101.0, 102.0])
    for i, message in enumerate(batch):
        message.data.update(ts=f"2026-01-01T00:0{i}:00+00:00", interval_seconds=60, speed=60)
    feed(kind, ctx, batch)
    signal = ctx.published[-1]
    assert signal["ts"] == "2026-01-01T00:03:00+00:00"  # the last bar opened 00:02, lasted 60 s
    assert signal["speed"] == 60


def test_a_real_time_signal_has_no_speed() -> None:
    kind, ctx = make({"fast_ma": 1, "slow_ma": 2, "weights": {"rsi": 0, "macd": 0, "bollinger": 0}})
    feed(kind, ctx, bars([100.0, 101.0, 102.0]))
    assert ctx.published and "speed" not in ctx.published[-1]

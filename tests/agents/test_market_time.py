"""Honest simulated time: bar spans from the wall clock (agents.kinds.market_time), the
random walk scaled to a bar's length (simulated_market), and what the market_data kind
publishes with them. No Redis, no database: a stepped clock stands in for the loop."""

from __future__ import annotations

import math
import statistics
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest

from agents.kinds import validate_config
from agents.kinds.market_time import MAX_GAP_TICKS, MarketClock, bar_end_ts
from agents.kinds.simulated_market import MarketParams, SymbolPath, per_bar
from tests.agents.test_market_data import SteppedClock, make

T0 = 1_767_225_600.0


class Wall:
    """A wall clock the test moves by hand."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def spans(clock: MarketClock, wall: Wall, steps: list[float]) -> list[tuple[float, float]]:
    """(start, seconds) of the bar made after each wall step (relative to T0)."""
    out = []
    for step in steps:
        wall.t += step
        span = clock.next_span()
        out.append((round(span.start - T0, 6), round(span.seconds, 6)))
    return out


# --- the clock ---


def test_in_real_time_a_bar_spans_the_wall_time_since_the_previous_step_and_ends_now() -> None:
    wall = Wall()
    clock = MarketClock(tick_seconds=1.0, now=wall)
    # The first bar is one tick; then each spans exactly the wall time between steps,
    # including a late step (2.5 s), so the bars tile the clock without gaps or overlaps.
    assert spans(clock, wall, [0, 1, 2.5, 0.5]) == [(-1, 1), (0, 1), (1, 2.5), (3.5, 0.5)]


def test_a_pause_longer_than_a_few_ticks_is_a_gap_not_one_long_bar() -> None:
    wall = Wall()
    clock = MarketClock(tick_seconds=1.0, now=wall)
    clock.next_span()
    after_pause = spans(clock, wall, [MAX_GAP_TICKS + 60])[0]
    assert after_pause == (MAX_GAP_TICKS + 60 - 1, 1)


def test_a_restart_in_real_time_starts_where_the_last_bar_ended_without_overlap() -> None:
    wall = Wall(T0 + 10)
    clock = MarketClock(tick_seconds=1.0, resume_end=T0 + 9.6, now=wall)
    assert spans(clock, wall, [0]) == [(9.6, 0.4)]


def test_accelerated_a_bar_spans_speed_times_the_wall_time_and_market_time_runs_ahead() -> None:
    wall = Wall()
    clock = MarketClock(tick_seconds=1.0, speed=60, now=wall)
    got = spans(clock, wall, [0, 1, 2, 1])
    assert got == [(0, 60), (60, 60), (120, 120), (240, 60)]
    assert clock.next_span().start - wall.t > 60  # ahead of the wall clock, and says so (speed)


def test_accelerated_time_resumes_from_the_last_bar_even_when_that_is_in_the_future() -> None:
    wall = Wall()
    clock = MarketClock(tick_seconds=1.0, speed=60, resume_end=T0 + 3600, now=wall)
    assert spans(clock, wall, [0]) == [(3600, 60)]


def test_bar_end_is_the_open_plus_the_length_or_the_ts_when_the_length_is_unknown() -> None:
    assert (
        bar_end_ts({"ts": "2026-01-01T00:00:00+00:00", "interval_seconds": 90}) == "2026-01-01T00:01:30+00:00"
    )
    assert (
        bar_end_ts({"ts": "2026-01-01T00:00:00Z", "interval_seconds": 1.5})
        == "2026-01-01T00:00:01.500000+00:00"
    )
    for length in (None, 0, -5, True, "60", math.inf):
        assert bar_end_ts({"ts": "2026-01-01T00:00:00", "interval_seconds": length}) == "2026-01-01T00:00:00"
    assert bar_end_ts({"ts": "garbage", "interval_seconds": 60}) == "garbage"


# --- the walk, scaled to a bar's length ---


def log_moves(seconds: float, bars: int = 4000, **knobs: Any) -> list[float]:
    params = MarketParams(jump_probability=0, regime_switch_probability=0, **knobs)
    path = SymbolPath("BTC-USD", 65_000.0, seed=11, params=params)
    out = []
    for _ in range(bars):
        bar = path.next_bar(seconds)
        out.append(math.log(bar["close"] / bar["open"]))
    return out


def test_volatility_scales_with_the_square_root_of_a_bars_real_duration() -> None:
    per_second = statistics.pstdev(log_moves(1.0, annual_volatility=0.6))
    per_minute = statistics.pstdev(log_moves(60.0, annual_volatility=0.6))
    # GBM: sigma x sqrt(dt). 60% a year is ~0.0107% a second and ~0.083% a minute.
    assert per_second == pytest.approx(0.6 * math.sqrt(1 / (365 * 24 * 3600)), rel=0.1)
    assert per_minute / per_second == pytest.approx(math.sqrt(60), rel=0.1)


def test_the_chances_of_jumps_and_regime_switches_are_per_simulated_minute() -> None:
    assert per_bar(0.1, 60) == pytest.approx(0.1)
    assert per_bar(0.1, 120) == pytest.approx(1 - 0.9**2)
    assert per_bar(0.1, 1) == pytest.approx(1 - 0.9 ** (1 / 60))
    assert per_bar(0, 3600) == 0 and per_bar(1, 0.5) == 1


def test_two_real_minutes_of_the_default_market_move_btc_like_a_real_market() -> None:
    """The issue: BTC moved ~7% in two minutes (a one-minute bar every second). Two minutes
    of one-second bars at the defaults now move it about as much as real BTC moves."""
    moves = []
    for seed in range(30):
        kind, ctx = make({"seed": seed}, symbols=["BTC-USD"])
        for _ in range(120):
            kind.step()
        closes = [m["close"] for m in ctx.published if m["type"] == "bar"]
        moves.append(abs(closes[-1] / closes[0] - 1))
    assert statistics.median(moves) < 0.005 and max(moves) < 0.03


# --- what the kind publishes ---


def bars_of(config: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    kind, ctx = make(config, symbols=["BTC-USD"])
    for _ in range(steps):
        kind.step()
    return [m for m in ctx.published if m["type"] == "bar"]


def opens(bars: list[dict[str, Any]]) -> list[float]:
    return [datetime.fromisoformat(b["ts"]).timestamp() for b in bars]


def test_simulated_bars_open_at_ts_last_their_real_duration_and_say_they_are_real_time() -> None:
    bars = bars_of({"seed": 1, "tick_seconds": 2.0}, 5)
    assert {b["interval_seconds"] for b in bars} == {2.0}
    assert {b["speed"] for b in bars} == {1.0}
    assert [b - a for a, b in pairwise(opens(bars))] == [2.0] * 4


def test_an_accelerated_simulation_says_its_speed_and_its_bars_run_on_market_time() -> None:
    bars = bars_of({"seed": 1, "tick_seconds": 1.0, "speed": 60}, 5)
    assert {b["interval_seconds"] for b in bars} == {60.0}
    assert {b["speed"] for b in bars} == {60.0}
    assert [b - a for a, b in pairwise(opens(bars))] == [60.0] * 4


def test_a_restart_continues_the_market_clock_from_the_last_bar() -> None:
    first = bars_of({"seed": 1, "speed": 60}, 3)
    kind, ctx = make({"seed": 1, "speed": 60}, symbols=["BTC-USD"], history=list(reversed(first)))
    kind.step()
    last_end = opens(first)[-1] + 60
    assert opens([ctx.published[-1]]) == [last_end]


def test_a_speed_below_one_and_the_old_seconds_per_step_are_refused_naming_the_field() -> None:
    from agents.kinds import ConfigError

    for config, field in (({"speed": 0.5}, "speed"), ({"seconds_per_step": 60.0}, "seconds_per_step")):
        with pytest.raises(ConfigError) as exc:
            validate_config("market_data", config)
        assert field in dict(exc.value.errors)


@pytest.mark.django_db
def test_the_migration_drops_seconds_per_step_from_stored_configs_so_they_run_in_real_time(
    make_agent,
) -> None:
    from importlib import import_module

    from django.apps import apps

    from agents.models import Agent

    make_agent("old", config={"source": "simulated", "seconds_per_step": 60.0, "seed": 3})
    make_agent("other", kind="technical", role="specialized_technical", config={"seconds_per_step": 1})
    import_module("agents.migrations.0003_market_data_real_time").drop_seconds_per_step(apps, None)
    assert Agent.objects.get(pk="old").config == {"source": "simulated", "seed": 3}
    assert validate_config("market_data", Agent.objects.get(pk="old").config).speed == 1.0
    assert Agent.objects.get(pk="other").config == {"seconds_per_step": 1}  # not a market_data agent


def test_stepped_clock_is_one_tick_per_read() -> None:
    clock = SteppedClock(0.5, start=10.0)
    assert [clock(), clock(), clock()] == [10.0, 10.5, 11.0]


def test_csv_bars_carry_the_files_bar_size_once_it_is_known(settings: Any, tmp_path: Any) -> None:
    settings.MARKET_DATA_DIR = tmp_path
    (tmp_path / "gaps.csv").write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,1,1,1,1,1\n"
        "2024-01-01T00:05:00Z,1,1,1,1,1\n"
        "2024-01-01T00:06:00Z,1,1,1,1,1\n"
        "2024-01-01T02:00:00Z,1,1,1,1,1\n"  # a gap after the 1-minute bars is not a longer bar
    )
    bars = bars_of({"source": "csv", "csv_path": "gaps.csv"}, 4)
    assert [b.get("interval_seconds") for b in bars] == [None, 300.0, 60.0, 60.0]

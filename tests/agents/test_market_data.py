"""Unit tests of the market_data kind: no Redis, no database, a fake StepContext."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from agents.kinds import ConfigError, validate_config
from agents.kinds.base import StepContext
from agents.kinds.market_data import MarketData
from agents.models import Agent
from agents.runtime import keys, lifecycle
from agents.states import Desired
from tests.agents.test_loop import run_loop  # noqa: F401 (a fixture, used by name)
from tests.conftest import wait_for

SYMBOLS = ["BTC-USD", "ETH-USD"]


class FakeContext(StepContext):
    """A StepContext whose stream is a list; `last` plays the newest message already there,
    `history` the newest messages (newest first) when there are several."""

    def __init__(
        self,
        symbols: list[str] | None = None,
        last: dict[str, Any] | None = None,
        agent_id: str = "a1",
        history: list[dict[str, Any]] | None = None,
    ):
        self.published: list[dict[str, Any]] = []
        history = history if history is not None else [last] if last else []
        super().__init__(
            agent_id=agent_id,
            symbols=list(symbols or SYMBOLS),
            publish=self._publish,
            last_published=lambda: history[0] if history else None,
            recent_published=lambda count: history[:count],
            log=logging.getLogger("tests.market_data"),
        )

    def _publish(self, msg: dict[str, Any]) -> str:
        self.published.append(msg)
        return f"{len(self.published)}-0"


class SteppedClock:
    """A wall clock that moves `step` seconds each time it is read: one read per step, as if
    the loop stepped exactly on its tick (real steps in a test come microseconds apart,
    which would make bars of microseconds, see market_time)."""

    def __init__(self, step: float = 1.0, start: float = 1_767_225_600.0) -> None:
        self.step, self.now = step, start - step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def make(config: dict[str, Any], **ctx_args: Any) -> tuple[MarketData, FakeContext]:
    ctx = FakeContext(**ctx_args)
    validated = validate_config("market_data", config)
    return MarketData(ctx, validated, now=SteppedClock(validated.tick_seconds)), ctx


def run_all(config: dict[str, Any], steps: int, **ctx_args: Any) -> list[dict[str, Any]]:
    """Everything published in `steps` steps: bars and (simulated source) news."""
    kind, ctx = make(config, **ctx_args)
    for _ in range(steps):
        kind.step()
    return ctx.published


def run(config: dict[str, Any], steps: int, **ctx_args: Any) -> list[dict[str, Any]]:
    """The bars published in `steps` steps."""
    return [m for m in run_all(config, steps, **ctx_args) if m["type"] == "bar"]


def closes(messages: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(m["symbol"], m["close"]) for m in messages]


def refusal(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        validate_config("market_data", config)
    return dict(exc.value.errors)


# --- simulated source ---


def test_the_same_seed_gives_the_same_path() -> None:
    assert closes(run({"seed": 7}, 50)) == closes(run({"seed": 7}, 50))


def test_different_seeds_give_different_paths() -> None:
    assert closes(run({"seed": 7}, 50)) != closes(run({"seed": 8}, 50))


def test_without_a_seed_the_path_is_stable_per_agent_and_differs_between_agents() -> None:
    assert closes(run({}, 20, agent_id="x")) == closes(run({}, 20, agent_id="x"))
    assert closes(run({}, 20, agent_id="x")) != closes(run({}, 20, agent_id="y"))


def test_each_step_publishes_one_bar_per_symbol_and_summarises_the_closes() -> None:
    kind, ctx = make({"seed": 1})
    result = kind.step()
    assert [m["symbol"] for m in ctx.published] == SYMBOLS
    assert result.did_work and result.published == 2 and result.counters == {"bars": 2}
    assert result.summary == ", ".join(f"{m['symbol']} {m['close']:.2f}" for m in ctx.published)
    assert datetime.fromisoformat(ctx.published[0]["ts"]).utcoffset() is not None


def test_unlisted_symbols_start_from_default_prices_and_listed_ones_from_the_config() -> None:
    messages = run({"seed": 1, "initial_prices": {"ETH-USD": 10.0}}, 1, symbols=["BTC-USD", "ETH-USD", "XYZ"])
    opens = {m["symbol"]: m["open"] for m in messages}
    assert opens == {"BTC-USD": 65000.0, "ETH-USD": 10.0, "XYZ": 100.0}


def test_every_simulated_bar_is_labelled_simulated_and_has_consistent_ohlc() -> None:
    wild = {
        "seed": 3,
        "annual_volatility": 8,
        "high_vol_multiplier": 5,
        "jump_probability": 0.2,
        "jump_std": 0.5,
    }
    messages = run(wild, 300, symbols=["BTC-USD", "PENNY"]) + run(
        {**wild, "initial_prices": {"PENNY": 0.0001}}, 300, symbols=["PENNY"]
    )
    for m in messages:
        assert m["type"] == "bar" and m["source"] == "simulated"
        assert m["high"] >= max(m["open"], m["close"]) >= min(m["open"], m["close"]) >= m["low"] > 0
        assert m["volume"] > 0 and m["price"] == m["close"]


def test_regimes_switch_and_jumps_happen_when_made_likely() -> None:
    messages = run({"seed": 5, "regime_switch_probability": 0.3, "jump_probability": 0.3}, 200)
    assert {m["regime"] for m in messages} == {"normal", "high"}
    assert 0 < sum(m["jump"] for m in messages) < len(messages)


def test_with_default_probabilities_the_market_is_mostly_calm() -> None:
    messages = run({"seed": 5}, 50)
    assert sum(m["jump"] for m in messages) <= 2


def test_after_a_restart_the_last_published_symbol_continues_from_its_close() -> None:
    last = {"type": "bar", "symbol": "ETH-USD", "close": 1234.5, "regime": "high", "source": "simulated"}
    messages = run({"seed": 1}, 1, last=last)
    by_symbol = {m["symbol"]: m for m in messages}
    assert by_symbol["ETH-USD"]["open"] == 1234.5
    assert by_symbol["ETH-USD"]["regime"] == "high"
    assert by_symbol["BTC-USD"]["open"] == 65000.0


def test_after_a_restart_every_symbol_continues_from_its_own_last_close() -> None:
    """The newest message is one symbol's bar (or news): the others resume too, not from
    their start price."""
    history = [
        {"type": "news", "symbol": "SOL-USD", "headline": "x", "source": "simulated"},
        {"type": "bar", "symbol": "SOL-USD", "close": 151.25, "regime": "normal", "source": "simulated"},
        {"type": "bar", "symbol": "ETH-USD", "close": 3555.5, "regime": "high", "source": "simulated"},
        {"type": "bar", "symbol": "BTC-USD", "close": 72_700.0, "regime": "normal", "source": "simulated"},
        {"type": "bar", "symbol": "SOL-USD", "close": 150.0, "regime": "normal", "source": "simulated"},
        {"type": "bar", "symbol": "ETH-USD", "close": 3500.0, "regime": "normal", "source": "simulated"},
        {"type": "bar", "symbol": "BTC-USD", "close": 72_600.0, "regime": "normal", "source": "simulated"},
    ]
    messages = run({"seed": 1}, 1, symbols=["BTC-USD", "ETH-USD", "SOL-USD"], history=history)
    by_symbol = {m["symbol"]: m for m in messages}
    assert by_symbol["BTC-USD"]["open"] == 72_700.0
    assert by_symbol["ETH-USD"]["open"] == 3555.5
    assert by_symbol["ETH-USD"]["regime"] == "high"
    assert by_symbol["SOL-USD"]["open"] == 151.25


@pytest.mark.parametrize("close", [0, -1.0, float("nan"), float("inf"), "72700", True, None])
def test_a_restart_skips_a_last_bar_without_a_usable_close(close: Any) -> None:
    history = [
        {"type": "bar", "symbol": "BTC-USD", "close": close, "source": "simulated"},
        {"type": "bar", "symbol": "BTC-USD", "close": 70_000.0, "source": "simulated"},
    ]
    by_symbol = {m["symbol"]: m for m in run({"seed": 1}, 1, history=history)}
    assert by_symbol["BTC-USD"]["open"] == 70_000.0
    assert by_symbol["ETH-USD"]["open"] == 3400.0  # no bar of its own: its start price


def test_each_bar_opens_at_the_previous_close() -> None:
    eth = [m for m in run({"seed": 2}, 20) if m["symbol"] == "ETH-USD"]
    assert all(b["open"] == a["close"] for a, b in pairwise(eth))


# --- config validation ---


def test_an_unknown_config_key_is_refused() -> None:
    assert "volatility" in refusal({"volatility": 0.5})


def test_a_negative_volatility_is_refused_naming_its_field() -> None:
    assert "annual_volatility" in refusal({"annual_volatility": -0.1})


def test_a_non_positive_initial_price_is_refused() -> None:
    assert "initial_prices.BTC-USD" in refusal({"initial_prices": {"BTC-USD": 0}})


def test_the_csv_source_without_a_path_is_refused(settings: Any, tmp_path: Path) -> None:
    settings.MARKET_DATA_DIR = tmp_path
    assert "required" in refusal({"source": "csv"})["csv_path"]


def test_a_csv_path_outside_the_market_data_folder_is_refused(settings: Any, tmp_path: Path) -> None:
    settings.MARKET_DATA_DIR = tmp_path / "data"
    (tmp_path / "data").mkdir()
    outside = write_csv(tmp_path, "secret.csv", "timestamp,open,high,low,close,volume\n")
    assert "inside" in refusal({"source": "csv", "csv_path": str(outside)})["csv_path"]
    assert "inside" in refusal({"source": "csv", "csv_path": "../secret.csv"})["csv_path"]


def test_a_missing_csv_file_is_refused(settings: Any, tmp_path: Path) -> None:
    settings.MARKET_DATA_DIR = tmp_path
    assert "not found" in refusal({"source": "csv", "csv_path": "nope.csv"})["csv_path"]


def test_a_csv_without_the_required_header_is_refused(settings: Any, tmp_path: Path) -> None:
    settings.MARKET_DATA_DIR = tmp_path
    write_csv(tmp_path, "bad.csv", "time,open,high,low,close\n1,1,1,1,1\n")
    reason = refusal({"source": "csv", "csv_path": "bad.csv"})["csv_path"]
    assert "timestamp" in reason and "volume" in reason


def test_a_csv_path_relative_to_the_market_data_folder_is_accepted(settings: Any, tmp_path: Path) -> None:
    settings.MARKET_DATA_DIR = tmp_path
    write_csv(tmp_path, "ok.csv", " Timestamp ,OPEN,High,low,close,Volume\n")
    assert validate_config("market_data", {"source": "csv", "csv_path": "ok.csv"}).csv_path == "ok.csv"


# --- csv source ---


def write_csv(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


ONE_INSTRUMENT = """timestamp,open,high,low,close,volume
2024-01-01T00:00:00Z,100,110,95,105,10
2024-01-01T00:01:00Z,105,108,101,102,12
1704067320,102,103,99,100,9
"""

MULTI = """timestamp,symbol,open,high,low,close,volume
2024-01-01T00:00:00Z,BTC-USD,100,110,95,105,10
2024-01-01T00:00:00Z,DOGE-USD,1,1,1,1,1
2024-01-01T00:00:00Z,ETH-USD,10,11,9,10.5,5
2024-01-01T00:01:00Z,ETH-USD,10.5,12,10,11,6
2024-01-01T00:02:00Z,DOGE-USD,1,1,1,1,1
2024-01-01T00:03:00Z,BTC-USD,105,106,100,101,7
"""


@pytest.fixture
def csv_dir(settings: Any, tmp_path: Path) -> Path:
    settings.MARKET_DATA_DIR = tmp_path
    return tmp_path


def test_csv_replay_publishes_rows_in_order_with_the_files_timestamps_for_the_first_symbol(
    csv_dir: Path,
) -> None:
    write_csv(csv_dir, "btc.csv", ONE_INSTRUMENT)
    kind, ctx = make({"source": "csv", "csv_path": "btc.csv"})
    results = [kind.step() for _ in range(3)]
    assert [r.published for r in results] == [1, 1, 1]
    assert [m["ts"] for m in ctx.published] == [
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:01:00+00:00",
        "2024-01-01T00:02:00+00:00",
    ]
    assert {m["symbol"] for m in ctx.published} == {"BTC-USD"}
    assert {m["source"] for m in ctx.published} == {"csv:btc.csv"}
    assert ctx.published[0] == {
        "type": "bar", "ts": "2024-01-01T00:00:00+00:00", "symbol": "BTC-USD", "open": 100.0, "high": 110.0,
        "low": 95.0, "close": 105.0, "volume": 10.0, "price": 105.0, "source": "csv:btc.csv",
    }  # fmt: skip


def test_csv_replay_groups_rows_by_timestamp_and_skips_other_symbols(csv_dir: Path) -> None:
    write_csv(csv_dir, "multi.csv", MULTI)
    kind, ctx = make({"source": "csv", "csv_path": "multi.csv"})
    first = kind.step()
    assert first.published == 2 and first.summary == "BTC-USD 105.00, ETH-USD 10.50"
    assert kind.step().published == 1
    assert kind.step().published == 1  # the DOGE-only minute is passed over
    assert [(m["ts"][11:16], m["symbol"]) for m in ctx.published] == [
        ("00:00", "BTC-USD"),
        ("00:00", "ETH-USD"),
        ("00:01", "ETH-USD"),
        ("00:03", "BTC-USD"),
    ]


def test_csv_replay_skips_bad_rows_with_a_warning_and_counts_them(
    csv_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_csv(
        csv_dir,
        "bad.csv",
        "timestamp,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,100,abc,95,105,10\n"
        "2024-01-01T00:01:00Z,100,90,95,105,10\n"
        "yesterday,100,110,95,105,10\n"
        "2024-01-01T00:02:00Z,100,110,95,105,10\n",
    )
    kind, ctx = make({"source": "csv", "csv_path": "bad.csv"})
    with caplog.at_level(logging.WARNING):
        result = kind.step()
    assert result.published == 1 and result.counters == {"bars": 1, "bad_rows": 3}
    assert ctx.published[0]["ts"] == "2024-01-01T00:02:00+00:00"
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 3


def test_csv_replay_stops_at_the_end_of_the_file(csv_dir: Path) -> None:
    write_csv(csv_dir, "btc.csv", ONE_INSTRUMENT)
    kind, ctx = make({"source": "csv", "csv_path": "btc.csv"})
    for _ in range(3):
        kind.step()
    end = kind.step()
    assert not end.did_work and end.published == 0 and end.summary == "end of file"
    assert len(ctx.published) == 3
    kind.close()


def test_csv_replay_loops_to_the_top_when_asked(csv_dir: Path) -> None:
    write_csv(csv_dir, "btc.csv", ONE_INSTRUMENT)
    kind, ctx = make({"source": "csv", "csv_path": "btc.csv", "loop_at_end": True})
    results = [kind.step() for _ in range(5)]
    assert all(r.did_work for r in results)
    assert [m["ts"][11:16] for m in ctx.published] == ["00:00", "00:01", "00:02", "00:00", "00:01"]


def test_csv_replay_looping_over_a_file_with_nothing_for_us_does_not_spin(csv_dir: Path) -> None:
    write_csv(csv_dir, "multi.csv", MULTI)
    kind, _ = make({"source": "csv", "csv_path": "multi.csv", "loop_at_end": True}, symbols=["SOL-USD"])
    assert kind.step().summary == "end of file"


def test_csv_replay_resumes_after_the_last_published_timestamp(csv_dir: Path) -> None:
    write_csv(csv_dir, "btc.csv", ONE_INSTRUMENT)
    last = {"type": "bar", "symbol": "BTC-USD", "ts": "2024-01-01T00:01:00+00:00", "source": "csv:btc.csv"}
    messages = run({"source": "csv", "csv_path": "btc.csv"}, 2, last=last)
    assert [m["ts"] for m in messages] == ["2024-01-01T00:02:00+00:00"]


def csv_bar(symbol: str, minute: int) -> dict[str, Any]:
    return {
        "type": "bar",
        "symbol": symbol,
        "ts": f"2024-01-01T00:0{minute}:00+00:00",
        "source": "csv:multi.csv",
    }


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # The whole 00:00 group went out: the replay goes on at 00:01.
        ([csv_bar("ETH-USD", 0), csv_bar("BTC-USD", 0)], [("00:01", "ETH-USD"), ("00:03", "BTC-USD")]),
        # The step was cut short after BTC: ETH's 00:00 bar is still due, and comes first.
        ([csv_bar("BTC-USD", 0)], [("00:00", "ETH-USD"), ("00:01", "ETH-USD"), ("00:03", "BTC-USD")]),
        # Older bars of another timestamp do not count as published at 00:01.
        ([csv_bar("ETH-USD", 1), csv_bar("ETH-USD", 0)], [("00:03", "BTC-USD")]),
    ],
)
def test_csv_replay_resumes_every_symbol_of_a_step_cut_short(
    csv_dir: Path, history: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    write_csv(csv_dir, "multi.csv", MULTI)
    messages = run({"source": "csv", "csv_path": "multi.csv"}, 4, history=history)
    assert [(m["ts"][11:16], m["symbol"]) for m in messages] == expected


def test_csv_replay_ignores_a_last_message_from_another_source(csv_dir: Path) -> None:
    write_csv(csv_dir, "btc.csv", ONE_INSTRUMENT)
    last = {"symbol": "BTC-USD", "ts": "2030-01-01T00:00:00+00:00", "source": "simulated", "close": 5.0}
    assert len(run({"source": "csv", "csv_path": "btc.csv"}, 3, last=last)) == 3


# --- simulated news ---

JUMPY = {"seed": 4, "jump_probability": 1, "news_probability": 0}


def news(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "news"]


def test_every_simulated_jump_comes_with_a_simulated_headline_in_the_same_step() -> None:
    kind, ctx = make(JUMPY)
    result = kind.step()
    assert result.counters == {"bars": 2, "news": 2} and result.published == 4
    items, bars = news(ctx.published), [m for m in ctx.published if m["type"] == "bar"]
    assert [m["symbol"] for m in items] == SYMBOLS and all(b["jump"] for b in bars)
    for item in items:
        assert set(item) == {"type", "ts", "symbol", "headline", "source", "direction", "jump"}
        assert item["source"] == "simulated" and item["jump"] is True
        assert item["direction"] in ("up", "down") and item["ts"] == bars[0]["ts"]
    assert "Bitcoin" in items[0]["headline"] and "Ether" in items[1]["headline"]


def test_a_headline_follows_the_direction_of_its_jump() -> None:
    calm_but_jumpy = {**JUMPY, "annual_volatility": 0.01, "jump_std": 0.2}
    messages = run_all(calm_but_jumpy, 40, symbols=["SOL-USD"])
    bars = [m for m in messages if m["type"] == "bar"]
    directions = [m["direction"] for m in news(messages)]
    assert directions == ["up" if b["close"] > b["open"] else "down" for b in bars]
    assert set(directions) == {"up", "down"}
    assert all(m["headline"].count("SOL") == 1 for m in news(messages))


def test_news_is_published_before_the_bars_so_a_restart_still_resumes_from_a_bar() -> None:
    kind, ctx = make(JUMPY)
    kind.step()
    assert ctx.published[-1]["type"] == "bar"
    assert [m["type"] for m in ctx.published] == ["news", "news", "bar", "bar"]


def test_simulated_news_is_reproducible_with_the_seed() -> None:
    headlines = [m["headline"] for m in news(run_all({**JUMPY, "news_probability": 0.3}, 30))]
    assert headlines == [m["headline"] for m in news(run_all({**JUMPY, "news_probability": 0.3}, 30))]
    assert len(set(headlines)) > 5


def test_news_does_not_change_the_price_path() -> None:
    quiet = {"seed": 9, "news_on_jumps": False, "news_probability": 0}
    chatty = {"seed": 9, "news_probability": 0.5}
    assert closes(run(quiet, 100)) == closes(run(chatty, 100))


def test_no_news_when_both_kinds_of_news_are_off() -> None:
    messages = run_all({**JUMPY, "news_on_jumps": False}, 20)
    assert news(messages) == [] and len(messages) == 40


def test_noise_headlines_come_between_jumps_labelled_simulated() -> None:
    kind, ctx = make({"seed": 2, "jump_probability": 0, "news_probability": 1})
    for _ in range(30):
        assert kind.step().counters["news"] == 2
    items = news(ctx.published)
    assert {m["direction"] for m in items} == {"up", "down", "neutral"}
    assert all(m["jump"] is False and m["source"] == "simulated" for m in items)


def test_with_defaults_a_newcomer_sees_about_a_headline_a_minute_per_symbol() -> None:
    config = validate_config("market_data", {})
    per_minute = 60 / config.tick_seconds * (config.news_probability + config.jump_probability)
    assert per_minute >= 1
    items = news(run_all({"seed": 11}, 3000))  # 50 minutes at the default tick
    for symbol in SYMBOLS:
        assert len([m for m in items if m["symbol"] == symbol]) >= 40


def test_csv_replay_publishes_no_news(csv_dir: Path) -> None:
    write_csv(csv_dir, "btc.csv", ONE_INSTRUMENT)
    assert news(run_all({"source": "csv", "csv_path": "btc.csv", "news_probability": 1}, 3)) == []


def test_a_news_probability_outside_0_to_1_is_refused() -> None:
    assert "news_probability" in refusal({"news_probability": 1.5})


# --- a real loop restart (real Redis, real database) ---


def _bars_after(redis_client: Any, agent_id: str, after: str = "-") -> list[tuple[str, dict[str, Any]]]:
    start = after if after == "-" else f"({after}"
    entries = redis_client.xrange(keys.stream("agent", agent_id), min=start)
    messages = [(entry_id, json.loads(fields["data"])) for entry_id, fields in entries]
    return [(entry_id, data) for entry_id, data in messages if data.get("type") == "bar"]


def test_a_loop_restart_resumes_every_symbol_from_its_last_close(
    make_agent: Any,
    run_loop: Any,  # noqa: F811 (the imported fixture)
    redis_client: Any,
) -> None:
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    agent = make_agent(
        "restarter",
        symbols=symbols,
        config={"source": "simulated", "tick_seconds": 0.05, "seed": 3, "news_probability": 0.5},
    )
    outcome = run_loop(agent.agent_id, "run-1")
    wait_for(lambda: len(_bars_after(redis_client, agent.agent_id)) >= 3 * len(symbols), what="bars")
    Agent.objects.filter(pk=agent.pk).update(desired_state=Desired.STOPPED)
    lifecycle.write_flags("agent", agent.agent_id, Desired.STOPPED, "run-1", "1")
    outcome["thread"].join(timeout=10)
    assert outcome["reason"] == "stop requested"

    before = _bars_after(redis_client, agent.agent_id)
    last_close = {data["symbol"]: data["close"] for _id, data in before}  # the newest wins
    assert set(last_close) == set(symbols)
    run_loop(agent.agent_id, "run-2")

    def first_bars_after_restart() -> dict[str, dict[str, Any]] | None:
        first: dict[str, dict[str, Any]] = {}
        for _id, data in _bars_after(redis_client, agent.agent_id, before[-1][0]):
            first.setdefault(data["symbol"], data)
        return first if len(first) == len(symbols) else None

    first = wait_for(first_bars_after_restart, what="a bar of every symbol after the restart")
    assert {symbol: bar["open"] for symbol, bar in first.items()} == last_close

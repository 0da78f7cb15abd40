"""Run every benchmark in bench/ and write bench/RESULTS.md (`make bench`).

Each benchmark runs as its own process, one after the other (they would disturb each
other's figures), with its output shown as it goes and kept under var/bench/<name>.log.
Each prints a last line `RESULT {json}` (the contract in bench/common.py), which this
script reads; bench/loops_per_worker.py prints a table instead, which is parsed. The
report holds the machine, the date, the commit, and for each benchmark its command, its
figures (medians and percentiles) and the targets of the issues (5, 12) beside them. A benchmark
that is missing, fails or prints no result is reported as such, with the tail of its
output, and this script then exits non-zero (after writing the report).

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--output PATH]

--quick runs each benchmark's short form, a smoke test whose figures are not meant to
be kept: its report goes to var/bench/RESULTS-quick.md, not bench/RESULTS.md, and so
does a run of only some benchmarks (var/bench/RESULTS-partial.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOGS = ROOT / "var" / "bench"
PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/test"
TAIL_LINES = 40


@dataclass
class Bench:
    name: str
    title: str
    args: list[str]  # after the script, full run
    quick_args: list[str]
    target: str  # what the issue asks, in words (issue 5 unless it says another)
    timeout: float  # seconds, full run (a quick run gets a third)
    headline: tuple[str, ...] = ()  # figures shown in the summary (besides the targets)
    parse: Any = None  # fallback parser of the output when there is no RESULT line

    @property
    def script(self) -> Path:
        return BENCH / f"{self.name}.py"


def parse_loops_table(output: str) -> dict[str, Any] | None:
    """bench/loops_per_worker.py's table: loops, steps/s, tick-lag p50, p95, max."""
    row = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
    figures: dict[str, float] = {}
    for line in output.splitlines():
        match = row.match(line)
        if match:
            n, steps, p50, p95, peak = match.groups()
            figures |= {
                f"loops_{n}_steps_per_s": float(steps),
                f"loops_{n}_tick_lag_p50_ms": float(p50),
                f"loops_{n}_tick_lag_p95_ms": float(p95),
                f"loops_{n}_tick_lag_max_ms": float(peak),
            }
    if not figures:
        return None
    targets = {}
    if "loops_1000_tick_lag_p95_ms" in figures:
        met = figures["loops_1000_tick_lag_p95_ms"] < 250
        targets["loops_1000_tick_lag_p95_ms"] = {"limit": 250, "met": met}
    return {"bench": "loops_per_worker", "figures": figures, "targets": targets, "via": "its printed table"}


BENCHES = [
    Bench(
        "control_latency",
        "Control latency",
        [],
        ["--quick"],
        "API stop/pause/resume -> loop confirmed: p95 <= 50 ms, beside the Redis round trip",
        900,
        headline=("redis_ping_p95_ms",),
    ),
    Bench(
        "push_latency",
        "Push latency",
        [],
        ["--quick"],
        "state change -> websocket client p95 <= 10 ms (and Chromium DOM); "
        "flood of 1,000 changes/s: a few pushes per object per second, staleness p95 < 300 ms",
        900,
        headline=("dom_p95_ms",),
    ),
    Bench(
        "loops_per_worker",
        "Loops per worker",
        ["100", "300", "500", "1000"],
        ["100", "--seconds", "5"],
        "1,000 agent loops at 1 tick/s in one worker with p95 tick lag < 250 ms",
        1800,
        headline=("loops_1000_steps_per_s",),
        parse=parse_loops_table,
    ),
    Bench(
        "fill_throughput",
        "Trading throughput",
        [],
        ["--quick"],
        "fills per second through broker + database, SQLite and PostgreSQL (no limit set)",
        1800,
        headline=(
            "sqlite_1_writer_p50_fills_per_s",
            "sqlite_writers_own_sessions_p50_fills_per_s",
            "postgresql_1_writer_p50_fills_per_s",
            "postgresql_writers_own_sessions_p50_fills_per_s",
        ),
    ),
    Bench(
        "page_render",
        "Page render",
        [],
        ["--quick"],
        "server render time and query count of / at 10, 100 and 500 agents; the query count must not grow",
        900,
        headline=(
            "render_10_agents_p50_ms",
            "render_100_agents_p50_ms",
            "render_500_agents_p50_ms",
            "queries_500_agents_count",
        ),
    ),
    Bench(
        "log_tail",
        "Log tail",
        [],
        ["--quick"],
        "last 100 lines of a 1 GB file, beside GNU tail -n 100 in the same run",
        900,
        headline=("project_warm_p50_ms", "gnu_warm_p50_ms", "project_cold_p50_ms", "gnu_cold_p50_ms"),
    ),
    Bench(
        "exchange_source",
        "Exchange source",
        [],
        ["--quick"],
        "(issue 12) exchange loops per worker polling the local recording at their timeframe (1s), "
        "and messages per second through a graph; floors of this project: at 100 feeds p95 tick lag "
        "< 250 ms and a candle in the graph within one timeframe of its close; no loop degraded "
        "(200 feeds measured beside it)",
        900,
        headline=(
            "exchange_200_loops_tick_lag_p95_ms",
            "exchange_200_loops_requests_per_s",
            "graph_20_chains_messages_per_s",
            "graph_20_chains_bar_to_signal_p95_ms",
        ),
    ),
]


# --- the machine ----------------------------------------------------------------------------


def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def redis_version() -> str:
    try:
        import redis

        client = redis.Redis.from_url(
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=3
        )
        return "Redis " + client.info("server")["redis_version"]
    except Exception as exc:  # noqa: BLE001 - a description, not a check
        return f"no answer ({type(exc).__name__})"


def postgres_version() -> str:
    url = os.environ.get("BENCH_PG_URL", PG_DEFAULT)
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            return "PostgreSQL " + conn.execute("show server_version").fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - a description, not a check
        return f"no answer at {url} ({type(exc).__name__})"


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> list[tuple[str, str]]:
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    ram = f"{int(mem_kib) / 2**20:.1f} GiB" if mem_kib.isdigit() else "unknown"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("CPU", _first("/proc/cpuinfo", "model name")),
        ("cores", str(os.cpu_count())),
        ("RAM", ram),
        ("OS", f"{_first('/etc/os-release', 'PRETTY_NAME=')}, {platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Redis", redis_version()),
        ("PostgreSQL", postgres_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("load average at start (1, 5, 15 min)", load),
    ]


# --- running ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    bench: Bench
    command: str
    status: str  # "ok", "failed", "missing"
    seconds: float = 0.0
    result: dict[str, Any] | None = None
    tail: str = ""
    notes: list[str] = field(default_factory=list)


def run(bench: Bench, quick: bool) -> Outcome:
    args = bench.quick_args if quick else bench.args
    shown = " ".join([".venv/bin/python", f"bench/{bench.script.name}", *args])
    if not bench.script.exists():
        return Outcome(bench, shown, "missing", tail=f"bench/{bench.script.name} does not exist")
    timeout = bench.timeout / 3 if quick else bench.timeout
    print(f"\n=== {bench.title}: {shown}", flush=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(bench.script), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a timeout ends it and its children
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    lines = []
    try:
        with open(LOGS / f"{bench.name}.log", "w") as log:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
                lines.append(line.rstrip("\n"))
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    outcome = Outcome(bench, shown, "ok", seconds=time.monotonic() - started)
    output = "\n".join(lines)
    outcome.notes = [line.removeprefix("note: ") for line in lines if line.startswith("note: ")]
    results = [line for line in lines if line.startswith("RESULT ")]
    if results:
        try:
            outcome.result = json.loads(results[-1].removeprefix("RESULT "))
        except json.JSONDecodeError as exc:
            outcome.notes.append(f"its RESULT line is not JSON: {exc}")
    elif bench.parse is not None:
        outcome.result = bench.parse(output)
    problem = ""
    if timed_out.is_set():
        problem = f"stopped after the {timeout:.0f} s time limit"
    elif proc.returncode != 0:
        problem = f"exited with code {proc.returncode}"
    elif outcome.result is None:
        problem = "printed no result"
    if problem:
        outcome.status = "failed"
        outcome.notes.insert(0, problem)
        outcome.tail = "\n".join(lines[-TAIL_LINES:])
    return outcome


# --- the report -------------------------------------------------------------------------------

STATS = ("p50", "p95", "p99", "max", "min", "mean")
_STAT_RE = re.compile(r"_(" + "|".join(STATS) + r")(?=_|$)")


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _natural(name: str) -> list[Any]:
    """Sort key that puts render_10_ before render_100_."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def figures_table(figures: dict[str, Any]) -> list[str]:
    """One row per measured thing, its percentiles side by side: `ws_p50_ms` and
    `ws_p95_ms` become the row `ws_ms` with columns p50 and p95."""
    rows: dict[str, dict[str, Any]] = {}
    for name, value in sorted(figures.items(), key=lambda item: _natural(item[0])):
        match = _STAT_RE.search(name)
        if match:
            row, column = name[: match.start()] + name[match.end() :], match.group(1)
        else:
            row, column = name, "value"
        rows.setdefault(row, {})[column] = value
    columns = [c for c in (*STATS, "value") if any(c in r for r in rows.values())]
    out = ["| figure | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for row, values in rows.items():
        cells = [fmt(values[c]) if c in values else "" for c in columns]
        out.append(f"| `{row}` | " + " | ".join(cells) + " |")
    return out


def targets_lines(result: dict[str, Any]) -> list[str]:
    figures, targets = result.get("figures", {}), result.get("targets", {})
    if not targets:
        return []
    out = ["| target | limit | measured | met |", "|---|---|---|---|"]
    for name, target in targets.items():
        met = "**yes**" if target.get("met") else "**NO**"
        out.append(f"| `{name}` | <= {fmt(target.get('limit'))} | {fmt(figures.get(name, 'n/a'))} | {met} |")
    return out


def verdict(outcome: Outcome) -> str:
    if outcome.status != "ok":
        return f"**{outcome.status.upper()}**"
    targets = (outcome.result or {}).get("targets", {})
    if not targets:
        return "measured (no limit)"
    missed = [name for name, t in targets.items() if not t.get("met")]
    return f"**missed**: {', '.join(missed)}" if missed else "met"


def headline(outcome: Outcome) -> str:
    """The targets' figures against their limits, then the bench's chosen figures."""
    if outcome.result is None:
        return ""
    figures, targets = outcome.result.get("figures", {}), outcome.result.get("targets", {})
    parts = [
        f"{name} {fmt(figures.get(name, 'n/a'))} (<= {fmt(t.get('limit'))})" for name, t in targets.items()
    ]
    parts += [f"{name} {fmt(figures[name])}" for name in outcome.bench.headline if name in figures]
    return "; ".join(parts)


def report(outcomes: list[Outcome], quick: bool, started: dt.datetime, info: list[tuple[str, str]]) -> str:
    commit = git("describe", "--always", "--dirty")
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench{' ARGS=--quick' if quick else ''}` (bench/run_all.py), started "
        f"{started:%Y-%m-%d %H:%M %Z}, {sum(o.seconds for o in outcomes) / 60:.1f} min in all.",
        f"Code: `{commit}` (git describe; -dirty: with uncommitted changes).",
    ]
    if quick:
        lines += ["", "**Quick smoke pass** (`--quick`): short runs, figures not to be kept or compared."]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in info]
    lines += ["", "## Summary against the issues' targets", ""]
    lines += ["| benchmark | the issue asks | result | figures |", "|---|---|---|---|"]
    lines += [
        f"| [{o.bench.title}](#{o.bench.name}) | {o.bench.target} | {verdict(o)} | {headline(o)} |"
        for o in outcomes
    ]
    for o in outcomes:
        lines += ["", f'<a id="{o.bench.name}"></a>', f"## {o.bench.title}", ""]
        lines += [f"Target: {o.bench.target}.", "", f"Command: `{o.command}` ({o.seconds:.0f} s)"]
        if o.result and o.result.get("via"):
            lines += ["", f"Measured: {o.result['via']}."]
        if o.result and o.result.get("machine", {}).get("load_1min") is not None:
            lines += ["", f"Load average when it started: {o.result['machine']['load_1min']}."]
        for note in o.notes:
            lines += ["", f"Note: {note}."]
        if o.result:
            targets = targets_lines(o.result)
            if targets:
                lines += ["", *targets]
            lines += ["", *figures_table(o.result.get("figures", {}))]
        if o.tail:
            lines += ["", "Last lines of its output:", "", "```", o.tail, "```"]
    lines += ["", "Every benchmark's full output: var/bench/<name>.log on the machine that ran it.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test, not figures to keep")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these")
    parser.add_argument("--output", type=Path, help="where to write the report")
    args = parser.parse_args()
    chosen = [b for b in BENCHES if not args.only or b.name in args.only]
    if args.output is not None:
        output = args.output
    elif args.quick:
        output = LOGS / "RESULTS-quick.md"
    elif args.only:
        output = LOGS / "RESULTS-partial.md"
    else:
        output = BENCH / "RESULTS.md"
    started = dt.datetime.now(dt.UTC)
    info = machine()
    outcomes = [run(bench, args.quick) for bench in chosen]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report(outcomes, args.quick, started, info))
    print(f"\nwrote {output}")
    for o in outcomes:
        print(f"  {o.bench.title:20} {o.status:8} {o.seconds:6.0f} s  {verdict(o).replace('*', '')}")
    if any(o.status != "ok" for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The last 100 lines of a 1 GB agent log: the project's tail beside GNU `tail -n 100`.

Writes a log file of --size-mb MiB under a temporary directory, in the agents' file
format (agents/runtime/logs.py LINE_FORMAT: one record per line, UTC timestamp, level,
logger name, message), then times, in the same run and alternating:

* the project's `agents.runtime.logs.tail(path, 100)`, the function behind the log
  endpoint (GET /api/system/agents/<id>/logs) and the panel's cards, called in process;
* GNU `tail -n 100 <file>` as a subprocess, wall time from spawn to exit;
* `true` as a subprocess, the same way: the cost of spawning alone, so a reader can
  see how much of GNU tail's time is the fork/exec;

each with the file in the page cache ("warm") and dropped from it before every call
with posix_fadvise(DONTNEED) ("cold": the few blocks at the end come from the disk).
Checks both tails return the same lines, prints medians and p95, and removes the file.
Also times the project's worst case beside it: a filter (`q`) that matches no line, so
the tail scans back as far as it may (logs.MAX_SCAN_BYTES).

    .venv/bin/python bench/log_tail.py [--size-mb 1024] [--repeat 21] [--lines 100] [--quick]

The last line printed is `RESULT {json}` (bench/common.py) for bench/run_all.py. Targets:
the same lines as GNU tail, and a median no slower than GNU tail's (spawn included).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import production  # noqa: F401  (production settings, DEBUG=0, before Django loads)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")

import django  # noqa: E402

django.setup()  # for the machine description only: this bench opens no database

import common  # noqa: E402

from agents.runtime.logs import tail  # noqa: E402

VIA = "agents.runtime.logs.tail() in process; GNU tail -n as a subprocess (spawn included)"

LEVELS = ["INFO"] * 90 + ["DEBUG"] * 6 + ["WARNING"] * 3 + ["ERROR"]
MESSAGES = [
    "step {n} ok: {sym} close={px:.2f} volume={vol:.4f} lag_ms={lag}",
    "published bar {sym} close={px:.2f} to stream agent:{agent}",
    "order o-{n:08d} {sym} buy 0.0100 filled at {px:.2f} fee 0.65",
    "directive {sym} target_weight=0.25 confidence=0.{lag:02d} from decision-0",
    "heartbeat lease renewed token={n} worker=celery@bench",
    "no new bars for {sym} in 2.0 s; source simulated, waiting",
]


def write_log(path: Path, size: int) -> int:
    """Write about `size` bytes of log lines, each one distinct (a counter and a clock
    that moves on); returns the bytes written."""
    rng = random.Random(5)
    clock = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    written = 0
    n = 0
    with open(path, "w", encoding="ascii", newline="\n") as f:
        while written < size:
            chunk = []
            # One formatted second at a time: strftime once per second, not per line.
            for _ in range(2000):
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(clock))
                for ms in range(0, 1000, 200):
                    n += 1
                    agent = f"market_data-{n % 7}"
                    message = MESSAGES[n % len(MESSAGES)].format(
                        n=n,
                        sym="BTC-USD" if n % 3 else "ETH-USD",
                        px=65000 + (n % 997) * 1.37,
                        vol=(n % 89) / 7,
                        lag=n % 97,
                        agent=agent,
                    )
                    chunk.append(f"{stamp}.{ms:03d}Z {rng.choice(LEVELS)} agents.agent.{agent}: {message}\n")
                clock += 1
            text = "".join(chunk)
            f.write(text)
            written += len(text)
    return written


def drop_from_cache(path: Path) -> None:
    """Evict the file's pages (clean pages; no root needed) so the next read hits the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def summary(samples: list[float]) -> dict[str, float]:
    return {k: v for k, v in common.summary(samples).items() if k != "n"}


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the log file in MiB")
    parser.add_argument("--repeat", type=int, default=21, help="timed calls of each, per cache state")
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a 64 MiB file, 5 runs")
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.repeat = 64, 5
    gnu_tail = shutil.which("tail")
    true_bin = shutil.which("true")
    if gnu_tail is None or true_bin is None:
        raise SystemExit("log_tail: GNU tail (coreutils) is not on PATH")
    version = subprocess.run([gnu_tail, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    info = common.print_header(
        f"log tail: last {args.lines} lines of a {args.size_mb} MiB log, beside {version}"
    )
    info["database"] = "none"

    work = Path(tempfile.mkdtemp(prefix="pt-bench-logtail-"))
    try:
        path = work / "market_data-0.log"
        started = time.perf_counter()
        size = write_log(path, args.size_mb * 1024 * 1024)
        print(f"wrote {size / 2**20:.0f} MiB of log lines in {time.perf_counter() - started:.1f} s: {path}")

        def ours() -> list[str]:
            return tail(path, args.lines).lines

        def gnu() -> list[str]:
            command = [gnu_tail, "-n", str(args.lines), str(path)]
            out = subprocess.run(command, capture_output=True, check=True)
            return out.stdout.decode("utf-8").splitlines()

        def spawn_only() -> None:
            subprocess.run([true_bin], check=True)

        same = ours() == gnu()
        if not same:  # a wrong answer is a failed benchmark, not a slow one
            raise SystemExit("log_tail: the project's tail and GNU tail returned different lines")
        if len(ours()) != args.lines:
            raise SystemExit(f"log_tail: expected {args.lines} lines")
        results: dict[str, dict[str, float]] = {}
        for cache in ("warm", "cold"):
            samples: dict[str, list[float]] = {"project": [], "gnu": [], "spawn": []}
            for _ in range(args.repeat):
                # Alternating, so a noisy moment of the machine hits all three alike.
                for name, fn in (("project", ours), ("gnu", gnu), ("spawn", spawn_only)):
                    if cache == "cold":
                        drop_from_cache(path)
                    elapsed, _ = timed(fn)
                    samples[name].append(elapsed)
            for name, values in samples.items():
                results[f"{name}_{cache}"] = summary(values)

        print(f"last {args.lines} lines of a {size / 2**30:.2f} GiB file; same lines from both: {same}")
        print(f"{'':34}{'warm p50':>10}{'p95':>9}{'cold p50':>10}{'p95':>9}   (ms, {args.repeat} runs)")
        figures: dict[str, float] = {
            "file_bytes_count": size,
            "lines_count": args.lines,
            "different_lines_count": 0,
        }
        for name, label in (
            ("project", "project tail() (in process)"),
            ("gnu", "GNU tail -n (subprocess)"),
            ("spawn", "spawn of `true` (subprocess)"),
        ):
            row = []
            for cache in ("warm", "cold"):
                for stat in ("p50", "p95"):
                    figures[f"{name}_{cache}_{stat}_ms"] = results[f"{name}_{cache}"][stat]
                    row.append(results[f"{name}_{cache}"][stat])
            print(f"  {label:32}" + "".join(f"{v:{w}.2f}" for v, w in zip(row, (10, 9, 10, 9), strict=True)))
        # The endpoint's worst case: a filter that matches nothing scans up to
        # logs.MAX_SCAN_BYTES from the end (no GNU counterpart; grep would read it all).
        nomatch = [timed(lambda: tail(path, args.lines, q="no line says this"))[0] for _ in range(5)]
        figures["project_filter_nomatch_warm_p50_ms"] = worst = common.percentile(nomatch, 0.5)
        print(f"  project tail(q=<matches nothing>), warm, 5 runs: p50 {worst:.0f} ms")
        for cache in ("warm", "cold"):
            figures[f"project_over_gnu_{cache}_p50_ratio"] = (
                figures[f"project_{cache}_p50_ms"] / figures[f"gnu_{cache}_p50_ms"]
            )
        limits = {"different_lines_count": 0, "project_over_gnu_warm_p50_ratio": 1.0}
        common.emit_result("log_tail", args.quick, info, VIA, figures, limits)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

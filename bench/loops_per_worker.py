"""How many agent loops one worker process sustains at 1 tick/s, and their tick lag.

Starts one real Celery worker (threads pool) on a database and Redis prefix of its own,
creates N simulated market_data agents (one symbol, 1 s tick), starts them through the
control services, waits until all run, then samples every loop's `tick_lag_ms` (how late
its tick started against schedule) for a while and prints p50/p95/max per N.

    .venv/bin/python bench/loops_per_worker.py [N ...] [--seconds 20]

Defaults: N = 100 300 500 1000. Run on a quiet machine; it prints the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import production  # noqa: F401  (production settings, DEBUG=0, before Django loads)

ROOT = Path(__file__).resolve().parent.parent
RUN = uuid.uuid4().hex[:8]
WORK = Path(tempfile.mkdtemp(prefix=f"pt-bench-{RUN}-"))
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "tradingsite.settings",
        "REDIS_PREFIX": f"bench-{RUN}:",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{WORK / 'bench.sqlite3'}"),
        "LOG_DIR": str(WORK / "logs"),
        "LOG_LEVEL": "WARNING",
    }
)
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from agents.models import Agent  # noqa: E402
from agents.runtime import keys  # noqa: E402
from agents.runtime.redis import get_redis  # noqa: E402
from agents.states import Status  # noqa: E402
from control import services  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_worker(concurrency: int) -> subprocess.Popen:
    hostname = f"bench{RUN}@%h"
    queues = f"{settings.LOOP_QUEUE},control"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tradingsite",
        "worker",
        "-Q",
        queues,
        "--pool",
        "threads",
    ]
    command += [
        "--concurrency",
        str(concurrency),
        "--hostname",
        hostname,
        "--without-mingle",
        "--without-gossip",
    ]
    return subprocess.Popen(
        [*command, "-l", "warning"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def measure(n: int, seconds: float) -> dict[str, float]:
    Agent.objects.all().delete()
    Agent.objects.bulk_create(
        Agent(
            agent_id=f"bench_{i:04d}",
            name=f"Bench {i}",
            kind="market_data",
            role="data_feed",
            symbols=["BTC-USD"],
            config={"source": "simulated", "tick_seconds": 1.0, "seed": i},
        )
        for i in range(n)
    )
    worker = start_worker(n + 10)
    client = get_redis()
    try:
        wait_until(lambda: client.exists(keys.worker(f"bench{RUN}@{platform.node()}")), 60, "the worker")
        services.start_system()
        wait_until(
            lambda: Agent.objects.filter(status=Status.RUNNING).count() == n, 120, f"{n} loops running"
        )
        time.sleep(3)  # let start-up settle before sampling
        lags: list[float] = []
        ids = [f"bench_{i:04d}" for i in range(n)]
        end = time.monotonic() + seconds
        steps_before = sum(int(client.hget(keys.metrics("agent", a), "steps") or 0) for a in ids)
        started = time.monotonic()
        while time.monotonic() < end:
            pipe = client.pipeline(transaction=False)
            for agent_id in ids:
                pipe.hget(keys.metrics("agent", agent_id), "tick_lag_ms")
            lags.extend(float(v) for v in pipe.execute() if v is not None)
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        steps_after = sum(int(client.hget(keys.metrics("agent", a), "steps") or 0) for a in ids)
        services.stop_system()
        wait_until(
            lambda: not Agent.objects.exclude(status=Status.STOPPED).exists(), 60, "every loop to stop"
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    return {
        "loops": n,
        "steps_per_s": (steps_after - steps_before) / elapsed,
        "lag_p50_ms": statistics.median(lags),
        "lag_p95_ms": percentile(lags, 0.95),
        "lag_max_ms": max(lags),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="*", type=int, default=[100, 300, 500, 1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"# loops per worker: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"database {engine}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"# command: {' '.join(sys.argv)}")
    print("loops  steps/s  tick-lag p50 ms  p95 ms  max ms")
    try:
        for n in args.n:
            r = measure(n, args.seconds)
            print(
                f"{r['loops']:5d}  {r['steps_per_s']:7.1f}  {r['lag_p50_ms']:15.1f}  "
                f"{r['lag_p95_ms']:6.1f}  {r['lag_max_ms']:6.1f}",
                flush=True,
            )
    finally:
        client = get_redis()
        for key in client.scan_iter(match=settings.REDIS_PREFIX + "*", count=1000):
            client.delete(key)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()

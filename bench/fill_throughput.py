"""Trading throughput: fills per second through the paper broker and the database.

Times `sessions.broker.fill_market_order`, the call the execution agent makes for every
order it fills (sessions/execution.py), on SQLite and on PostgreSQL, each on a database
of its own (a SQLite file under a temporary directory; a `bench_<random>` database
created on the PostgreSQL server and dropped afterwards). The orders are placed first
(alternating buys and sells of 0.01 BTC, as a session trades), then filled:

* by 1 writer process;
* by --writers processes at once, each filling the orders of its own session (several
  execution agents, several sessions: fills of one session queue on its row lock by
  design, fills of different sessions only on the database's own write lock);
* by --writers processes at once racing through the same session's orders, one
  forwards and one backwards, so every order is fought over (the worst case).

Writers are started and connected first, then released together; fills/s is the fills
made divided by the time from the first writer's start to the last one's end. Every
run checks the ledger afterwards: each order filled once, cash equal to the starting
cash plus the fills' cash deltas. Prints medians over --runs runs.

    .venv/bin/python bench/fill_throughput.py [--fills 400] [--writers 4] [--runs 5]
        [--pg postgres://postgres@127.0.0.1:5432/test | --no-pg] [--quick]

PostgreSQL is skipped, with the reason printed, when it does not answer. The last line
printed is `RESULT {json}` (bench/common.py) for bench/run_all.py. The issue sets no
target for throughput; the figures are for comparison between databases and commits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import production  # noqa: F401  (production settings, DEBUG=0, before Django loads)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402

PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/test"
MARK = "100"
VIA = "writer processes calling sessions.broker.fill_market_order on orders placed beforehand"


def setup_django(database_url: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tradingsite.settings",
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- writer: a separate OS process filling a list of orders ------------------------------


def writer(order_ids: list[str]) -> None:
    """Connect, say "ready", wait for "go" on stdin, fill each order, print the timings."""
    from django.db import connection

    from sessions.broker import fill_market_order

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    latencies = []
    outcomes: dict[str, int] = {}
    started = time.time()
    for order_id in order_ids:
        t0 = time.perf_counter()
        outcome = str(fill_market_order(order_id, MARK).outcome)
        latencies.append((time.perf_counter() - t0) * 1000)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    ended = time.time()
    print(
        json.dumps({"start": started, "end": ended, "latencies": latencies, "outcomes": outcomes}), flush=True
    )


# --- coordinator: one database, every scenario, every run --------------------------------


def place(session_id: str, count: int, sides: tuple[str, ...] = ("buy", "sell")) -> list[str]:
    """A fresh running session and `count` market orders, cycling through `sides`."""
    from decimal import Decimal

    from agents.states import Desired, Status
    from sessions import broker
    from sessions.models import TradingSession

    TradingSession.objects.create(
        session_id=session_id,
        name=session_id,
        symbols=["BTC-USD"],
        starting_cash=Decimal("1000000"),
        desired_state=Desired.RUNNING,
        status=Status.RUNNING,
        fee_bps=Decimal("10"),
        slippage_bps=Decimal("5"),
    )
    return [
        broker.place_order(session_id, "BTC-USD", sides[i % len(sides)], Decimal("0.01")).pk
        for i in range(count)
    ]


def check_ledger(session_ids: list[str], expected_fills: int) -> None:
    """Each order filled exactly once, and cash moved by exactly the fills' cash deltas."""
    from decimal import Decimal

    from django.db.models import Count

    from sessions.models import Fill, Order, TradingSession

    fills = Fill.objects.filter(session_id__in=session_ids)
    assert fills.count() == expected_fills, (fills.count(), expected_fills)
    assert not fills.values("order_id").annotate(n=Count("pk")).filter(n__gt=1).exists()
    assert not Order.objects.filter(session_id__in=session_ids).exclude(status="filled").exists()
    for session in TradingSession.objects.filter(pk__in=session_ids):
        # Summed in Python: SQLite's SUM() of decimal columns is floating point.
        delta = sum(
            (
                -(n + f) if side == "buy" else n - f
                for side, n, f in fills.filter(session=session).values_list("side", "notional", "fee")
            ),
            start=Decimal(0),
        )
        assert session.cash == session.starting_cash + delta, (session.pk, session.cash, delta)


def run_writers(order_lists: list[list[str]], env: dict[str, str]) -> dict[str, Any]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--role", "writer", *orders],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for orders in order_lists
    ]
    try:
        for proc in procs:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a writer failed to start: {line}{proc.stderr.read()}")
        for proc in procs:  # all connected and waiting: release them together
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"a writer failed (exit {proc.returncode}): {err[-2000:]}")
            reports.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outcomes: dict[str, int] = {}
    for report in reports:
        for outcome, n in report["outcomes"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    latencies = [ms for r in reports for ms in r["latencies"]]
    return {"elapsed": elapsed, "outcomes": outcomes, "latencies": latencies}


def coordinate(fills: int, writers: int, runs: int) -> None:
    """Migrate this process's database, then time each scenario `runs` times."""
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    scenarios: dict[str, list[float]] = {
        "1 writer": [],
        f"{writers} writers, own sessions": [],
        f"{writers} writers, one session (racing)": [],
    }
    latencies: dict[str, list[float]] = {name: [] for name in scenarios}
    for run in range(runs):
        tag = uuid.uuid4().hex[:6]
        for name in scenarios:
            if name == "1 writer":
                ids = [f"one-{tag}"]
                lists = [place(ids[0], fills)]
            elif "own sessions" in name:
                ids = [f"own{w}-{tag}" for w in range(writers)]
                lists = [place(sid, fills // writers) for sid in ids]
            else:
                ids = [f"race-{tag}"]
                # Buys only: a writer going backwards would otherwise meet sells before their buys.
                orders = place(ids[0], fills, sides=("buy",))
                lists = [orders if w % 2 == 0 else orders[::-1] for w in range(writers)]
            connection.close()  # the writers must not wait behind this process's connection
            result = run_writers(lists, env)
            made = result["outcomes"].get("filled", 0)
            expected = sum(len(orders) for orders in lists) if "racing" not in name else fills
            if made != expected:
                raise RuntimeError(f"{name}: {made} fills, expected {expected}: {result['outcomes']}")
            check_ledger(ids, expected)
            scenarios[name].append(made / result["elapsed"])
            latencies[name].extend(result["latencies"])
            print(
                f"    run {run + 1}: {name}: {made / result['elapsed']:.0f} fills/s",
                file=sys.stderr,
                flush=True,
            )
    summary = {
        name: {
            "fills_per_s_p50": round(statistics.median(rates), 1),
            "fills_per_s_min": round(min(rates), 1),
            "fills_per_s_max": round(max(rates), 1),
            "fill_ms_p50": round(statistics.median(latencies[name]), 2),
            "fill_ms_p95": round(common.percentile(latencies[name], 0.95), 2),
            "runs": len(rates),
        }
        for name, rates in scenarios.items()
    }
    print(json.dumps({"vendor": connection.vendor, "version": _server_version(), "scenarios": summary}))


def _server_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("select sqlite_version()")
            return "SQLite " + cursor.fetchone()[0]
        cursor.execute("show server_version")
        return "PostgreSQL " + cursor.fetchone()[0]


# --- main: one coordinator per database ---------------------------------------------------


def pg_database(url: str) -> tuple[str | None, str]:
    """Create bench_<random> on the server `url` points at; (its URL, "") or (None, why not)."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return url.rsplit("/", 1)[0] + "/" + name, ""
        except psycopg.errors.ObjectInUse:
            # template1 is in use by another CREATE DATABASE (a test run making its own):
            # that one finishes within moments.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        except psycopg.Error as exc:
            return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"


def drop_pg_database(admin_url: str, bench_url: str) -> None:
    import psycopg

    name = bench_url.rsplit("/", 1)[1]
    assert name.startswith("bench_")  # never anything but the database made above
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_coordinator(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--role", "coordinator", "--fills", str(args.fills)]
    command += ["--writers", str(args.writers), "--runs", str(args.runs)]
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"fill_throughput: the run on {database_url} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


SLUGS = {"1 writer": "1_writer", "own sessions": "writers_own_sessions", "racing": "writers_racing"}


def slug(name: str) -> str:
    return next(value for key, value in SLUGS.items() if key in name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=400, help="orders filled per scenario and run")
    parser.add_argument("--writers", type=int, default=4, help="processes in the concurrent scenarios")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", PG_DEFAULT), help="PostgreSQL server")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--quick", action="store_true", help="100 fills, 2 runs")
    parser.add_argument(
        "--role", choices=["main", "coordinator", "writer"], default="main", help=argparse.SUPPRESS
    )
    args, rest = parser.parse_known_args()
    if args.role == "writer":
        setup_django(os.environ["DATABASE_URL"])
        writer(rest)
        return
    if args.role == "coordinator":
        setup_django(os.environ["DATABASE_URL"])
        coordinate(args.fills, args.writers, args.runs)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.quick:
        args.fills, args.runs = 100, 2

    with tempfile.TemporaryDirectory(prefix="pt-bench-fills-") as work:
        sqlite_url = f"sqlite:///{Path(work) / 'bench.sqlite3'}"
        setup_django(sqlite_url)  # for the machine description; the runs are subprocesses
        info = common.print_header(
            "fill throughput: sessions.broker.fill_market_order, SQLite and PostgreSQL"
        )
        print("SQLite ...", flush=True)
        results: dict[str, Any] = {"sqlite": run_coordinator(sqlite_url, args)}
    if args.no_pg:
        print("note: PostgreSQL left out (--no-pg)")
    else:
        bench_url, why = pg_database(args.pg)
        if bench_url is None:
            print(f"note: PostgreSQL skipped: {args.pg} does not answer ({why})", flush=True)
        else:
            print(f"PostgreSQL ({bench_url.rsplit('/', 1)[1]}) ...", flush=True)
            try:
                results["postgresql"] = run_coordinator(bench_url, args)
            finally:
                drop_pg_database(args.pg, bench_url)

    info["database"] = ", ".join(results)
    figures: dict[str, float] = {
        "fills_count": args.fills,
        "writers_count": args.writers,
        "runs_count": args.runs,
    }
    print(f"{'':46}{'fills/s p50':>12}{'min':>8}{'max':>8}{'fill ms p50':>13}{'p95':>8}")
    for db, result in results.items():
        print(f"{result['version']} ({args.fills} fills per scenario, {args.runs} runs)")
        for name, s in result["scenarios"].items():
            rates = f"{s['fills_per_s_p50']:12.0f}{s['fills_per_s_min']:8.0f}{s['fills_per_s_max']:8.0f}"
            print(f"  {name:44}{rates}{s['fill_ms_p50']:13.2f}{s['fill_ms_p95']:8.2f}")
            key = f"{db}_{slug(name)}"
            figures |= {
                f"{key}_p50_fills_per_s": s["fills_per_s_p50"],
                f"{key}_min_fills_per_s": s["fills_per_s_min"],
                f"{key}_fill_p50_ms": s["fill_ms_p50"],
                f"{key}_fill_p95_ms": s["fill_ms_p95"],
            }
    versions = "; ".join(result["version"] for result in results.values())
    common.emit_result("fill_throughput", args.quick, info, f"{VIA} ({versions})", figures, {})


if __name__ == "__main__":
    main()

"""Shared pieces of the fault-injection suite: a trading graph that keeps trading on its
own, the checks every fault test ends with (ledger and states against the database),
Celery beat, a private redis-server, and worker settings that make recovery fast.

Worker processes come from tests/conftest.py (`spawn_worker`: each test has its own
loop and control queues, so the session's shared worker never takes its loops).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from agents.models import Agent
from agents.runtime import keys
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from control import services
from sessions.models import OPEN_STATUSES, Fill, Order, OrderStatus, Position, TradingSession
from tests.conftest import ROOT, WorkerProcess, database_url, wait_for

D = Decimal
SYMBOLS = ("BTC-USD", "ETH-USD")

# A crashed loop is replaced once its lease lapses: max(2 ticks + LEASE_EXTRA_SECONDS,
# STEP_TIMEOUT_SECONDS + 2), 12 s at the production defaults. tests/isolation.py already
# shortens LEASE_EXTRA_SECONDS (2 s) and the ticks for the whole run; workers and beat
# started here also get a 5 s step timeout (a 7 s lease: still well above a step on a
# loaded 2-core machine, where SQLite waits for its write lock) and the reconciler every
# second, so a takeover costs seconds.
FAST_RECOVERY_ENV = {
    "STEP_TIMEOUT_SECONDS": "5",
    "RECONCILE_SECONDS": "1",
}


@pytest.fixture
def fast_recovery(monkeypatch) -> None:
    """Workers and beat started by this test (they copy os.environ) recover in seconds."""
    for name, value in FAST_RECOVERY_ENV.items():
        monkeypatch.setenv(name, value)


# --- the trading graph -----------------------------------------------------------------


@dataclass
class Market:
    """A simulated market -> technical analysis, and a paper broker fed by the market.
    The decision agent exists but does not run: `DirectiveDriver` writes its stream, so
    sessions trade every second or so instead of a few times a minute."""

    agent_ids: list[str]
    decision_id: str
    execution_id: str
    session_ids: list[str] = field(default_factory=list)

    def add_session(self, session_id: str, symbols: tuple[str, ...] = SYMBOLS) -> TradingSession:
        session = services.create_session(
            {
                "session_id": session_id,
                "name": session_id.upper(),
                "symbols": list(symbols),
                "decision_agent": self.decision_id,
                "execution_agent": self.execution_id,
                "starting_cash": "10000",
                "max_orders_per_minute": 600,
            }
        )
        self.session_ids.append(session_id)
        return session

    def start_everything(self) -> None:
        for agent_id in self.agent_ids:
            services.start_agent(agent_id)
        for session_id in self.session_ids:
            services.start_session(session_id)
        wait_for(self.all_live, timeout=30, what="every agent and session running")

    def runnables(self) -> list[tuple[str, str]]:
        return [("agent", a) for a in self.agent_ids] + [("session", s) for s in self.session_ids]

    def states(self) -> dict[tuple[str, str], tuple[str, str, str]]:
        """(kind, id) -> (desired_state, status, run_id) from the database."""
        out = {
            ("agent", a): (d, s, r)
            for a, d, s, r in Agent.objects.filter(pk__in=self.agent_ids).values_list(
                "agent_id", "desired_state", "status", "run_id"
            )
        }
        for sid, d, s, r in TradingSession.objects.filter(pk__in=self.session_ids).values_list(
            "session_id", "desired_state", "status", "run_id"
        ):
            out[("session", sid)] = (d, s, r)
        return out

    def all_live(self) -> bool:
        """Every runnable shows the status its desired state asks for."""
        wanted = {
            Desired.RUNNING: Status.RUNNING,
            Desired.PAUSED: Status.PAUSED,
            Desired.STOPPED: Status.STOPPED,
        }
        return all(status == wanted[desired] for desired, status, _run in self.states().values())

    def fills(self, session_id: str | None = None) -> int:
        qs = Fill.objects.filter(session_id__in=self.session_ids)
        return (qs.filter(session_id=session_id) if session_id else qs).count()


@pytest.fixture
def market(make_agent) -> Iterator[Market]:
    feed = make_agent(
        "fx_feed", symbols=list(SYMBOLS), config={"source": "simulated", "tick_seconds": 0.5, "seed": 5}
    )
    technical = make_agent(
        "fx_tech", kind="technical", role="specialized_technical", symbols=list(SYMBOLS),
        config={"tick_seconds": 0.5},
    )  # fmt: skip
    technical.inputs_from.add(feed)
    execution = make_agent(
        "fx_exec", kind="execution", role="execution", symbols=list(SYMBOLS), config={"tick_seconds": 0.2}
    )
    execution.inputs_from.add(feed)
    make_agent("fx_decision", kind="decision", role="decision", symbols=list(SYMBOLS))
    yield Market([feed.agent_id, technical.agent_id, execution.agent_id], "fx_decision", execution.agent_id)
    # The agents' log files outlive the test (one LOG_DIR per run) under the same ids: a
    # loop this test fenced on purpose must not count against the next test's checks.
    for agent_id in (feed.agent_id, technical.agent_id, execution.agent_id, "fx_decision"):
        (settings.LOG_DIR / f"{agent_id}.log").unlink(missing_ok=True)


class DirectiveDriver:
    """Publishes a buy or sell directive per symbol on the decision agent's stream every
    `period` seconds (as the decision kind does), so running sessions keep trading."""

    def __init__(self, decision_id: str, period: float = 0.3, seed: int = 1) -> None:
        self.stream = keys.stream("agent", decision_id)
        self.period = period
        self.random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="directive-driver", daemon=True)
        self.sent = 0

    def __enter__(self) -> DirectiveDriver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        client = get_redis()
        while not self._stop.wait(self.period):
            for symbol in SYMBOLS:
                buy = self.random.random() < 0.6
                payload = {
                    "type": "directive",
                    "ts": time.time(),
                    "symbol": symbol,
                    "action": "buy" if buy else "sell",
                    "target_weight": round(self.random.uniform(0.2, 0.45), 2) if buy else 0.0,
                    "score": 0.5 if buy else -0.5,
                    "reason": "fault-suite driver",
                    "source": "test",
                }
                try:
                    client.xadd(self.stream, {"data": json.dumps(payload)}, maxlen=1000)
                    self.sent += 1
                except Exception:  # Redis may be down on purpose; the next period retries
                    pass


@pytest.fixture
def directives(market) -> Callable[..., DirectiveDriver]:
    return lambda **kwargs: DirectiveDriver(market.decision_id, **kwargs)


def wait_for_new_fills(market: Market, session_ids: list[str], timeout: float = 30, what: str = "") -> None:
    """Each session fills at least one more order than it has now."""
    before = {s: market.fills(s) for s in session_ids}
    try:
        wait_for(
            lambda: all(market.fills(s) > n for s, n in before.items()),
            timeout=timeout,
            interval=0.1,
            what=what or f"new fills in {session_ids}",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis(market)}") from None


def diagnosis(market: Market) -> str:
    """What a failed wait needs to be understood: states, errors, open orders, agent logs."""
    lines = [f"states: {market.states()}"]
    errors = dict(Agent.objects.exclude(error_message="").values_list("agent_id", "error_message"))
    lines.append(f"agent errors: {errors}")
    open_orders = Order.objects.filter(session_id__in=market.session_ids, status__in=OPEN_STATUSES)
    lines.append(f"open orders: {list(open_orders.values_list('session_id', 'symbol', 'status')[:10])}")
    for agent_id in market.agent_ids:
        path = settings.LOG_DIR / f"{agent_id}.log"
        if path.exists():
            lines.append(f"--- {agent_id}.log (tail)\n" + "\n".join(path.read_text().splitlines()[-8:]))
    return "\n".join(lines)


# --- the checks every fault test ends with ---------------------------------------------


def assert_ledger_consistent(session_ids: list[str]) -> None:
    """No order filled twice or lost: every fill's order is filled and every filled
    order has one fill; no order is still open; cash and positions are what the fills say."""
    for session_id in session_ids:
        session = TradingSession.objects.get(pk=session_id)
        fills = list(Fill.objects.filter(session_id=session_id))
        per_order = Counter(f.order_id for f in fills)
        assert not [o for o, n in per_order.items() if n > 1], "an order filled twice"
        filled = set(
            Order.objects.filter(session_id=session_id, status=OrderStatus.FILLED).values_list(
                "pk", flat=True
            )
        )
        assert filled == set(per_order), f"{session_id}: filled orders and fills differ"
        stuck = list(
            Order.objects.filter(session_id=session_id, status__in=OPEN_STATUSES).values_list("pk", "status")
        )
        assert not stuck, f"{session_id}: orders left open (lost): {stuck[:5]}"
        assert session.cash == session.starting_cash + sum((f.cash_delta for f in fills), D(0)), session_id
        for symbol in session.symbols:
            held = sum(
                (f.quantity if f.side == "buy" else -f.quantity for f in fills if f.symbol == symbol), D(0)
            )
            position = Position.objects.filter(session_id=session_id, symbol=symbol).first()
            assert (position.quantity if position else D(0)) == held, (session_id, symbol)


def assert_one_live_loop_each(market: Market, *, allow_handover: bool = False) -> None:
    """Each live runnable's lease is held by its current run (the database's run_id), and
    no loop was superseded while alive (a twin would have been fenced), unless the test
    lets the reconciler hand a loop over (its lease vanished with Redis)."""
    client = get_redis()
    for (kind, rid), (_desired, status, run_id) in market.states().items():
        holder = client.get(keys.lease(kind, rid))
        if status in (Status.RUNNING, Status.PAUSED):
            assert holder and holder.split(":")[0] == run_id, (kind, rid, holder, run_id)
    if allow_handover:
        return
    for agent_id in market.agent_ids:
        path = settings.LOG_DIR / f"{agent_id}.log"
        assert "superseded; exiting" not in path.read_text(errors="replace"), path


def assert_no_loop_superseded(workers: list[WorkerProcess]) -> None:
    """Session loops log to their worker's output; a fenced one says so there."""
    for worker in workers:
        assert "superseded; exiting" not in worker.output(), worker.log_path


def stop_sessions_and_check(
    market: Market, workers: list[WorkerProcess], *, allow_handover: bool = False
) -> None:
    """Stop every session (open orders are cancelled) and check the ledger and states."""
    for session_id in market.session_ids:
        if TradingSession.objects.get(pk=session_id).desired_state != Desired.STOPPED:
            services.stop_session(session_id)
    wait_for(
        lambda: (
            set(TradingSession.objects.filter(pk__in=market.session_ids).values_list("status", flat=True))
            == {Status.STOPPED}
        ),
        timeout=20,
        what="every session stopped",
    )
    assert_ledger_consistent(market.session_ids)
    if not allow_handover:
        assert_no_loop_superseded(workers)


# --- which worker holds which loop -----------------------------------------------------


def loops_held_by(worker: WorkerProcess) -> set[tuple[str, str]]:
    """(kind, id) of the loop tasks running in `worker` now, asked through Celery's
    remote control (the worker's own answer, not the database's)."""
    from tradingsite.celery import app

    replies = app.control.inspect(destination=[worker.hostname], timeout=3).active() or {}
    held = set()
    for task in replies.get(worker.hostname, []):
        kind = {"agents.tasks.run_agent": "agent", "sessions.tasks.run_session": "session"}.get(task["name"])
        if kind:
            held.add((kind, task["args"][0]))
    return held


# --- Celery beat -------------------------------------------------------------------------


class BeatProcess:
    """A real `celery beat` sending the reconciler to this test's control queue."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None

    def start(self) -> BeatProcess:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "REDIS_PREFIX": settings.REDIS_PREFIX,
            "LOG_DIR": str(settings.LOG_DIR),
            "LOOP_QUEUE": settings.LOOP_QUEUE,
            "CONTROL_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        }
        cmd = [sys.executable, "-m", "celery", "-A", "tradingsite", "beat", "-l", "info",
               "--schedule", str(self.log_dir / "beat-schedule")]  # fmt: skip
        with open(self.log_dir / "beat.out", "wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def beat(spawn_worker, tmp_path) -> Iterator[Callable[[], BeatProcess]]:
    """Start beat (after `spawn_worker` chose this test's queues); stopped after the test."""
    started: list[BeatProcess] = []

    def start() -> BeatProcess:
        started.append(BeatProcess(tmp_path).start())
        return started[-1]

    yield start
    for process in started:
        process.stop()


# --- a private redis-server (never restart the shared one) ------------------------------


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    fallback = ROOT / ".venv" / "redis-server" / "bin" / "redis-server"  # scripts/ensure_redis.sh
    return str(fallback) if fallback.exists() else None


class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence: a restart
    comes back empty, as a Redis without AOF/RDB does after a crash."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(answers, timeout=10, what="the private redis-server")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path, settings) -> Iterator[PrivateRedis]:
    """A private redis-server; this process's Redis clients point at it during the test."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary (make test installs one under .venv/redis-server)")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    settings.REDIS_URL = server.url
    yield server
    server.kill()

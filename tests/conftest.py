"""Shared fixtures: real Redis (under this run's prefix), real Celery workers, users."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import connection

from agents.models import Agent
from agents.runtime import keys, lifecycle
from agents.runtime.redis import get_redis
from agents.states import Desired

ROOT = Path(__file__).resolve().parent.parent

# Real password hashing costs ~0.3 s per user; tests need users, not strong hashes.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
RUNTIME_KEY_KINDS = ("lease", "flags", "hb", "metrics", "stream", "cursor", "orders", "status")


def wait_for(
    predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> object:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def _redis_prefix_guard() -> Iterator[None]:
    """Refuse to run against the default prefix; delete this run's keys at the end."""
    prefix = settings.REDIS_PREFIX
    assert prefix.startswith("test-"), f"tests must run under a test-* Redis prefix, not {prefix!r}"
    yield
    client = get_redis()
    batch = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)
    for folder in (settings.LOG_DIR, settings.MARKET_DATA_DIR):
        if folder.name.startswith("pt-test-"):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def redis_client():
    return get_redis()


def delete_runtime_keys() -> None:
    """Delete loop keys (leases, flags, streams...) but not Celery's queues and bindings."""
    client = get_redis()
    for kind in RUNTIME_KEY_KINDS:
        found = list(client.scan_iter(match=f"{settings.REDIS_PREFIX}{kind}:*", count=1000))
        if found:
            client.delete(*found)


@pytest.fixture(autouse=True)
def _clean_runtime_keys() -> Iterator[None]:
    delete_runtime_keys()
    yield


# --- users -------------------------------------------------------------------------


@pytest.fixture
def operator(django_user_model):
    """A user with the control permission (can act)."""
    user = django_user_model.objects.create_user("operator", password="pw-operator")
    user.user_permissions.add(Permission.objects.get(codename="control", content_type__app_label="control"))
    return django_user_model.objects.get(pk=user.pk)  # fresh, so the permission cache is empty


@pytest.fixture
def viewer(django_user_model):
    """A logged-in user without the control permission (can watch, not act)."""
    return django_user_model.objects.create_user("viewer", password="pw-viewer")


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


# --- agents ------------------------------------------------------------------------


@pytest.fixture
def make_agent(db) -> Callable[..., Agent]:
    def make(agent_id: str = "feed", **fields) -> Agent:
        defaults = {
            "name": agent_id.replace("_", " ").title(),
            "kind": "market_data",
            "role": "data_feed",
            "symbols": ["BTC-USD"],
            "config": {"source": "simulated", "tick_seconds": 0.2, "seed": 7},
        }
        defaults.update(fields)
        return Agent.objects.create(agent_id=agent_id, **defaults)

    return make


# --- real Celery workers -------------------------------------------------------------


def database_url() -> str:
    """The URL of the test database this process uses, for worker subprocesses."""
    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or ""
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"


class WorkerProcess:
    """A real `celery worker` subprocess on this run's Redis prefix and test database."""

    def __init__(self, log_dir: Path, queues: str | None = None, concurrency: int = 100) -> None:
        self.hostname = f"w{uuid.uuid4().hex[:8]}@pytest"
        self.log_path = log_dir / f"{self.hostname}.out"
        self.queues = queues or f"{settings.LOOP_QUEUE},{settings.CELERY_TASK_DEFAULT_QUEUE}"
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None

    def start(self, env_extra: dict[str, str] | None = None) -> WorkerProcess:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_PREFIX": settings.REDIS_PREFIX,
            "LOG_DIR": str(settings.LOG_DIR),
            "MARKET_DATA_DIR": str(settings.MARKET_DATA_DIR),
            "LOOP_QUEUE": settings.LOOP_QUEUE,
            "CONTROL_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "PYTHONUNBUFFERED": "1",
            **(env_extra or {}),
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tradingsite",
                "worker",
                "-Q",
                self.queues,
                "--pool",
                "threads",
                "--concurrency",
                str(self.concurrency),
                "--hostname",
                self.hostname,
                "--without-mingle",
                "--without-gossip",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        wait_for(self._ready, timeout=60, what=f"worker {self.hostname} to start (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
        # Ready once its heartbeat key exists (written on celery's worker_ready signal).
        return bool(get_redis().exists(keys.worker(self.hostname)))

    def kill(self) -> None:
        """SIGKILL the whole worker process group: a crash, no cleanup."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), killing it if it does not exit in time."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        get_redis().delete(keys.worker(self.hostname))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def stop_all_loops(timeout: float = 15.0) -> None:
    """Ask every loop to stop and wait until no lease is held (before tables are flushed)."""
    client = get_redis()
    from sessions.models import TradingSession

    # Sessions first: a stopping session may still hand orders to its execution agent.
    for model, kind in ((TradingSession, "session"), (Agent, "agent")):
        for rid, run_id in model.objects.values_list("pk", "run_id"):
            lifecycle.write_flags(kind, rid, Desired.STOPPED, run_id)
        model.objects.update(desired_state=Desired.STOPPED)
    wait_for(
        lambda: not list(client.scan_iter(match=f"{settings.REDIS_PREFIX}lease:*", count=1000)),
        timeout=timeout,
        what="every loop to release its lease",
    )


@pytest.fixture(scope="session")
def worker_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="session")
def _session_worker(django_db_setup, django_db_blocker, worker_log_dir) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(worker_log_dir)
    with django_db_blocker.unblock():
        worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker(transactional_db, _session_worker, settings, tmp_path) -> Iterator[WorkerProcess]:
    """A real worker shared by the session; loops are stopped before the test's data goes."""
    yield _session_worker
    stop_all_loops()
    delete_runtime_keys()


@pytest.fixture
def spawn_worker(transactional_db, worker_log_dir, settings) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers of this test's own (to kill them); all are gone after the test.

    Loops of this test go to a queue of its own, so the session's shared worker does
    not take them.
    """
    own = uuid.uuid4().hex[:8]
    settings.LOOP_QUEUE = f"loops-{own}"
    settings.CELERY_TASK_DEFAULT_QUEUE = f"control-{own}"
    started: list[WorkerProcess] = []

    def spawn(loops_only: bool = True, env: dict[str, str] | None = None, **kwargs) -> WorkerProcess:
        queues = (
            settings.LOOP_QUEUE
            if loops_only
            else f"{settings.LOOP_QUEUE},{settings.CELERY_TASK_DEFAULT_QUEUE}"
        )
        worker = WorkerProcess(worker_log_dir, queues=queues, **kwargs).start(env)
        started.append(worker)
        return worker

    yield spawn
    try:
        if any(w.proc and w.proc.poll() is None for w in started):
            stop_all_loops()
    finally:
        for worker in started:
            worker.stop()
        delete_runtime_keys()

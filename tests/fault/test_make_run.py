"""`make run`'s supervisor (scripts/supervise.py): a killed process comes back, the others
keep running, and Ctrl-C stops every process and exits 0.

The stack is started as scripts/run.sh starts it (the Procfile through the supervisor),
on its own port, SQLite file, var folder, Redis prefix and queues, so it meets neither a
running `make run` nor the rest of the suite.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agents.runtime.redis import get_redis
from tests.conftest import ROOT, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthz(port: int) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status
        finally:
            conn.close()
    except OSError:
        return None


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.prefix = f"test-run-{uuid.uuid4().hex[:10]}:"
        self.loop_queue = f"loops-{uuid.uuid4().hex[:8]}"
        self.log = tmp / "supervise.out"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "VAR_DIR": str(tmp / "var"),
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "LOG_DIR": str(tmp / "logs"),
            "REDIS_PREFIX": self.prefix,
            "LOOP_QUEUE": self.loop_queue,
            "CONTROL_QUEUE": f"control-{uuid.uuid4().hex[:8]}",
            "LOOP_CONCURRENCY": "20",
            "SECRET_KEY": "test-make-run-" + uuid.uuid4().hex,
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "scripts/supervise.py", "--procfile", "Procfile"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def loop_worker_pid(self) -> int | None:
        """The pid in the heartbeat of the worker that takes this stack's loop queue."""
        client = get_redis()
        for key in client.scan_iter(match=f"{self.prefix}worker:*"):
            value = client.get(key)
            if value and self.loop_queue in json.loads(value).get("queues", ()):
                pid = json.loads(value)["pid"]
                if psutil.pid_exists(pid):
                    return pid
        return None

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        client = get_redis()
        found = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
        if found:
            client.delete(*found)


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    started = Stack(tmp_path)
    try:
        started.start()
        yield started
    finally:
        started.cleanup()


def test_a_killed_loop_worker_is_restarted_and_the_rest_keeps_running(stack):
    wait_for(lambda: healthz(stack.port) == 200, timeout=60, what=f"the web server ({stack.log})")
    first = wait_for(stack.loop_worker_pid, timeout=60, what=f"the loop worker's heartbeat ({stack.log})")
    others = {p.pid for p in psutil.Process(stack.proc.pid).children()} - {first}
    assert len(others) == 3  # web, control, beat

    os.kill(first, signal.SIGKILL)

    wait_for(
        lambda: "worker died (killed by SIGKILL)" in stack.output(), timeout=10, what="the line saying so"
    )
    assert "restarting it in 1 s (restart 1)" in stack.output()
    second = wait_for(
        lambda: (pid := stack.loop_worker_pid()) and pid != first and pid,
        timeout=60,
        what=f"a new loop worker ({stack.log})",
    )
    assert second != first
    # Web, control and beat never stopped: the same processes, still serving.
    assert healthz(stack.port) == 200
    assert all(psutil.pid_exists(pid) for pid in others), stack.output()[-3000:]
    assert "web died" not in stack.output() and "beat died" not in stack.output()


def test_ctrl_c_stops_every_process_and_exits_0(stack):
    wait_for(lambda: healthz(stack.port) == 200, timeout=60, what=f"the web server ({stack.log})")
    wait_for(stack.loop_worker_pid, timeout=60, what=f"the loop worker's heartbeat ({stack.log})")
    children = psutil.Process(stack.proc.pid).children(recursive=True)
    assert len(children) >= 4

    os.killpg(stack.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C

    assert stack.proc.wait(timeout=20) == 0, stack.output()[-3000:]
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, [p.cmdline() for p in alive]
    assert "SIGINT received: stopping every process" in stack.output()
    assert healthz(stack.port) is None

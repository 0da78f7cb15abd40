"""A loop rides out a Redis restart: it neither dies nor goes to error, and takes its
lease back. Uses a private redis-server of its own (never the shared one)."""

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from django.db import connection

from agents.models import Agent
from agents.runtime import flags, keys
from agents.runtime.agent_loop import AgentLoop
from agents.runtime.redis import get_redis
from agents.states import Desired, Status
from tests.conftest import ROOT, wait_for


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    fallback = ROOT / ".venv" / "redis-server" / "bin" / "redis-server"  # scripts/ensure_redis.sh
    return str(fallback) if fallback.exists() else None


class PrivateRedis:
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
def private_redis(tmp_path, settings):
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary (make test installs one under .venv/redis-server)")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    settings.REDIS_URL = server.url
    yield server
    server.kill()


def test_a_loop_survives_a_redis_restart_and_takes_its_lease_back(
    private_redis, make_agent, transactional_db
):
    agent = make_agent("outage_feed")
    Agent.objects.filter(pk=agent.pk).update(
        desired_state=Desired.RUNNING, status=Status.STARTING, run_id="run-1"
    )
    flags.write("agent", agent.agent_id, Desired.RUNNING, "run-1", "1")
    outcome: dict = {}

    def target():
        outcome["reason"] = AgentLoop(agent.agent_id, "run-1").run()
        connection.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    client = get_redis()
    heartbeat = keys.heartbeat("agent", agent.agent_id)
    try:
        wait_for(lambda: client.exists(heartbeat), what="a first heartbeat")
        private_redis.kill()
        private_redis.start()  # same port, empty: as after a restart
        wait_for(lambda: client.exists(heartbeat), timeout=20, what="heartbeats after the restart")
        assert client.get(keys.lease("agent", agent.agent_id)).startswith("run-1:")
        assert Agent.objects.get(pk=agent.pk).status == Status.RUNNING
        assert thread.is_alive()
    finally:
        Agent.objects.filter(pk=agent.pk).update(desired_state=Desired.STOPPED)
        flags.write("agent", agent.agent_id, Desired.STOPPED, "run-1")
        thread.join(timeout=15)
    assert outcome["reason"] == "stop requested"

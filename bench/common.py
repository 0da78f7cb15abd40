"""Shared pieces of the latency benchmarks: a private stack, percentiles, the machine, the
result line.

A benchmark script calls `workspace(name)` before anything imports Django models: it
gives the run a Redis key prefix (`bench-<name>-<random>:`) and a temporary folder with
its own SQLite file and log folder (`BENCH_DATABASE_URL` points it at another database,
e.g. PostgreSQL), sets Django up and migrates. `Workspace.close()` deletes only the keys
under that prefix and the folder. Processes (a Celery worker, daphne) are started in
their own process groups on the same database and prefix, and stopped by the script's
`finally`, so an error leaves nothing running.

Output contract (read by bench/run_all.py): besides the human-readable lines, each
script ends with exactly one line

    RESULT {"bench": "<name>", "quick": false, "machine": {...}, "database": "sqlite",
            "commit": "<git describe>", "via": "<how it was measured>",
            "figures": {"<figure>": <number>, ...},
            "targets": {"<figure>": {"limit": <number>, "met": true}, ...}}

on stdout, as one line of JSON after the word RESULT and a space. Figures are flat
numbers whose name ends in their unit (`_ms`, `_per_s`, `_count`); `p50`/`p95`/`max`
are over the samples the script says. `targets` names the figures the issue sets a limit
on (the figure must be <= limit). The exit code is 0 when the run completed, whether or
not the targets were met (a missed target is a finding, not a crash); non-zero when the
benchmark itself failed.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- the private workspace ------------------------------------------------------------


@dataclass
class Workspace:
    name: str
    prefix: str
    folder: Path

    def env(self) -> dict[str, str]:
        """The environment for a process of this run (worker, daphne): same database,
        prefix and folders, without the browser's DJANGO_ALLOW_ASYNC_UNSAFE."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        return env

    def close(self) -> None:
        """Delete this run's Redis keys (only those under its prefix) and its folder."""
        from agents.runtime.redis import get_redis

        try:
            client = get_redis()
            batch: list[str] = []
            for key in client.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def workspace(name: str) -> Workspace:
    """Set the environment of a private run, set Django up and migrate its database."""
    run = uuid.uuid4().hex[:8]
    folder = Path(tempfile.mkdtemp(prefix=f"pt-bench-{name}-{run}-"))
    prefix = f"bench-{name}-{run}:"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tradingsite.settings",
            "REDIS_PREFIX": prefix,
            "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{folder / 'bench.sqlite3'}"),
            "LOG_DIR": str(folder / "logs"),
            "MARKET_DATA_DIR": str(folder / "market_data"),
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return Workspace(name=name, prefix=prefix, folder=folder)


def make_operator(username: str = "bench-operator"):
    """A user with the control permission (can act, like the `operator` test fixture)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username, password=uuid.uuid4().hex)
    user.user_permissions.add(Permission.objects.get(codename="control", content_type__app_label="control"))
    return get_user_model().objects.get(pk=user.pk)


def session_cookie(user) -> str:
    """The `sessionid` of a logged-in browser session of `user` (stored in the database,
    so a server process on the same database accepts it)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def api_token(user) -> str:
    """A bearer token for `user` (what `manage.py issue_token` prints)."""
    from control.models import ApiToken

    return ApiToken.issue(user)[1]


# --- processes --------------------------------------------------------------------------


def _stop_group(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        proc.wait(timeout=timeout)


class Worker:
    """A real `celery worker` (threads pool) on this run's database, prefix and queues."""

    def __init__(self, ws: Workspace, concurrency: int = 50) -> None:
        self.ws = ws
        self.hostname = f"bench{uuid.uuid4().hex[:8]}@{platform.node()}"
        self.concurrency = concurrency
        self.log_path = ws.folder / f"worker-{self.hostname}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Worker:
        from django.conf import settings

        from agents.runtime import keys
        from agents.runtime.redis import get_redis

        queues = f"{settings.LOOP_QUEUE},{settings.CELERY_TASK_DEFAULT_QUEUE}"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tradingsite", "worker", "-Q", queues]
                + ["--pool", "threads", "--concurrency", str(self.concurrency), "--hostname", self.hostname]
                + ["--without-mingle", "--without-gossip", "-l", "warning"],
                cwd=ROOT,
                env=self.ws.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = get_redis()

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{self.output()[-3000:]}")
            return bool(client.exists(keys.worker(self.hostname)))

        try:
            wait_until(ready, timeout, "the worker to start")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop_group(self.proc, timeout=30)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def daphne(ws: Workspace):
    """daphne serving the project on a free port of 127.0.0.1 (tests/e2e/stack.py), ready."""
    from tests.e2e.stack import DaphneServer

    return DaphneServer(ws.env(), ws.folder / "daphne.log").start()


# --- measuring ----------------------------------------------------------------------------


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.01) -> object:
    """Poll `predicate` until it is truthy; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def percentile(values: Iterable[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def summary(values: list[float]) -> dict[str, float]:
    """p50, p95, max and count, rounded for printing."""
    return {
        "p50": round(percentile(values, 0.5), 3),
        "p95": round(percentile(values, 0.95), 3),
        "max": round(max(values), 3) if values else float("nan"),
        "n": len(values),
    }


def redis_ping_ms(n: int = 200) -> list[float]:
    """Round trips of PING to the project's Redis (the floor of any Redis-woken action)."""
    from agents.runtime.redis import get_redis

    client = get_redis()
    client.ping()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        client.ping()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    from django.conf import settings
    from django.db import connection

    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "database": connection.vendor,
        # The project's default (a developer's checkout); servers started here inherit it.
        "debug": settings.DEBUG,
        "load_1min": round(load[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def commit() -> str:
    """The code measured: `git describe`, "-dirty" when the working tree had changes."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def print_header(title: str) -> dict[str, Any]:
    info = machine()
    print(f"# {title}")
    print(
        f"# machine: {info['host']}, {info['cpus']} cpus, {info['system']}, Python {info['python']}, "
        f"database {info['database']}, DEBUG {info['debug']}, load {info['load_1min']}, {info['date']}, "
        f"code {commit()}"
    )
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}", flush=True)
    return info


def emit_result(
    bench: str,
    quick: bool,
    info: dict[str, Any],
    via: str,
    figures: dict[str, float],
    limits: dict[str, float],
) -> None:
    """Print the one machine-readable line (see the module docstring)."""
    targets = {
        name: {"limit": limit, "met": bool(figures.get(name, float("inf")) <= limit)}
        for name, limit in limits.items()
    }
    result = {
        "bench": bench,
        "quick": quick,
        "machine": info,
        "database": info["database"],
        "commit": commit(),
        "via": via,
        "figures": {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()},
        "targets": targets,
    }
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)


# --- a websocket client -------------------------------------------------------------------


class WebSocketClosed(Exception):
    pass


class WebSocket:
    """A minimal RFC 6455 client over a plain socket: enough to read a server's text
    messages with a deadline and nothing in between (no extra event loop, no library
    latency in the figures). Sends only pong and close; masks them as a client must."""

    def __init__(self, url: str, cookie: str = "", origin: str = "", timeout: float = 10.0) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port or 80), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {parsed.path or '/'} HTTP/1.1",
            f"Host: {parsed.hostname}:{parsed.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin:
            lines.append(f"Origin: {origin}")
        if cookie:
            lines.append(f"Cookie: {cookie}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WebSocketClosed(f"the server closed the connection during the handshake: {head!r}")
            head += chunk
        head, _, self._buf = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise WebSocketClosed(f"handshake refused: {head.decode(errors='replace')}")
        self._parts: list[bytes] = []

    def recv(self, timeout: float) -> str | None:
        """The next text message, or None when none arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None:
                fin, opcode, payload = frame
                if opcode == 0x9:  # ping
                    self._send(0xA, payload)
                elif opcode == 0x8:
                    raise WebSocketClosed(f"closed by the server: {payload[:2].hex()} {payload[2:]!r}")
                elif opcode in (0x0, 0x1, 0x2):
                    self._parts.append(payload)
                    if fin:
                        data, self._parts = b"".join(self._parts), []
                        return data.decode()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                return None
            if not chunk:
                raise WebSocketClosed("the server closed the connection")
            self._buf += chunk

    def _frame(self) -> tuple[bool, int, bytes] | None:
        """Take one whole frame off the buffer, if it holds one."""
        buf = self._buf
        if len(buf) < 2:
            return None
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
        masked, length = bool(buf[1] & 0x80), buf[1] & 0x7F
        at = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, at = struct.unpack("!H", buf[2:4])[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, at = struct.unpack("!Q", buf[2:10])[0], 10
        mask = b""
        if masked:
            mask, at = buf[at : at + 4], at + 4
        if len(buf) < at + length:
            return None
        payload = buf[at : at + length]
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._buf = buf[at + length :]
        return fin, opcode, payload

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        # Control frames only (pong, close): always under 126 bytes.
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        try:
            self._send(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()

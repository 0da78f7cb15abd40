"""The processes a browser needs: daphne serving the project, and how to launch Chromium.

Shared by the e2e fixtures (tests/e2e/conftest.py) and `make screenshots`
(scripts/screenshots.py); nothing here imports Django, so a script can use it before it
sets Django up.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Debian's Chromium (scripts/ensure_chromium.sh installs it); Playwright's own browser
# download is never used.
CHROMIUM = Path("/usr/bin/chromium")
# Headless in a container as root (no sandbox, no GPU). The rest keep Chromium off the
# network: without them it keeps trying to reach Google's services (and QUIC) here.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 900}


def launch_chromium(playwright):
    """Launch Debian's Chromium headless through Playwright (sync API)."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(
            f"{CHROMIUM} is missing: the browser tests use Debian's Chromium. "
            "Run scripts/ensure_chromium.sh (as root it installs it: apt-get install -y chromium)."
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


class ServerError(RuntimeError):
    pass


class DaphneServer:
    """`daphne tradingsite.asgi:application` in a subprocess (its own process group).

    The listening socket is bound here, on a free port the kernel picks, and handed to
    daphne with --fd: the port is known before daphne starts and no other process can
    take it in between. Ready once GET /healthz answers 200 (the database and Redis answer
    from inside the server); if daphne exits or the deadline passes first, the error
    carries its output.
    """

    def __init__(self, env: dict[str, str], log_path: Path, host: str = "127.0.0.1") -> None:
        self.env = env
        self.log_path = log_path
        self.host = host
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> DaphneServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, 0))
            sock.listen(128)
            self.port = sock.getsockname()[1]
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "wb") as out:
                self.proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "daphne",
                        "--fd",
                        str(sock.fileno()),
                        "--application-close-timeout",
                        "5",
                        "tradingsite.asgi:application",
                    ],
                    cwd=ROOT,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    pass_fds=(sock.fileno(),),
                    start_new_session=True,
                )
        finally:
            sock.close()  # daphne has its own copy
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"daphne exited with code {self.proc.returncode} before it served a request; "
                    f"its output ({self.log_path}):\n{self.output()[-4000:]}"
                )
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
                try:
                    conn.request("GET", "/healthz")
                    response = conn.getresponse()
                    body = response.read(2000).decode(errors="replace")
                finally:
                    conn.close()
                if response.status == 200:
                    return
                last = f"GET /healthz answered {response.status}: {body}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"GET /healthz failed: {exc!r}"
            if time.monotonic() > deadline:
                raise ServerError(
                    f"daphne did not become ready within {timeout}s ({last}); "
                    f"its output ({self.log_path}):\n{self.output()[-4000:]}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group; SIGKILL it if daphne has not exited after `timeout`."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
            except ProcessLookupError:
                proc.wait(timeout=timeout)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

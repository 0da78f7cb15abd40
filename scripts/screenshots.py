#!/usr/bin/env python
"""`make screenshots`: photograph the panel as a person sees it, into docs/screenshots/.

Sets up a throwaway stack of its own, so it touches nothing of a running `make run` or
test run: a SQLite file under a temporary folder, a Redis key prefix of its own
(shots-<pid>-<random>:), migrate, seed_demo, a Celery worker and daphne, start_all; waits
until every agent runs, logs in through the form as a user of its own, and saves

    docs/screenshots/main-light.png    docs/screenshots/main-dark.png
    docs/screenshots/session-details.png

at 1440x900 (the dark one through Chromium's prefers-color-scheme emulation; the session
details page, light, of the demo session that has traded most, once it has a few fills
and its charts have data). Then it
stops the loops, the worker and the server, deletes its Redis keys (only those under its
prefix) and its temporary folder.

    REDIS_URL=redis://... .venv/bin/python scripts/screenshots.py   (make screenshots sets it)
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.stack import VIEWPORT, DaphneServer, launch_chromium  # noqa: E402

OUT_DIR = ROOT / "docs" / "screenshots"
SCHEMES = ("light", "dark")
USERNAME = "operator"


def say(message: str) -> None:
    print(f"screenshots: {message}", file=sys.stderr, flush=True)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Worker:
    """A `celery worker` on the loop and control queues, in its own process group."""

    def __init__(self, log_path: Path) -> None:
        self.hostname = f"shots-{uuid.uuid4().hex[:8]}@screenshots"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        from django.conf import settings

        from agents.runtime import keys
        from agents.runtime.redis import get_redis

        queues = f"{settings.LOOP_QUEUE},{settings.CELERY_TASK_DEFAULT_QUEUE}"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tradingsite", "worker", "-Q", queues,
                 "--pool", "threads", "--concurrency", "20", "--hostname", self.hostname,
                 "--without-mingle", "--without-gossip", "-l", "info"],
                cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{self.log_path.read_text()[-3000:]}")
            return bool(get_redis().exists(keys.worker(self.hostname)))

        wait_until(ready, 60, f"worker {self.hostname} to start (log: {self.log_path})")
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        except ProcessLookupError:
            self.proc.wait(timeout=timeout)


def make_user() -> str:
    """A user of this throwaway database with the control permission; returns its password."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    password = secrets.token_urlsafe(16)
    user = get_user_model().objects.create_user(USERNAME, password=password)
    user.user_permissions.add(Permission.objects.get(codename="control", content_type__app_label="control"))
    return password


def everything_running() -> bool:
    """Every agent (and session) start_all started runs and has sent a heartbeat."""
    from agents.models import Agent
    from agents.states import Desired, Status
    from sessions.models import TradingSession

    wanted = [m.objects.filter(desired_state=Desired.RUNNING) for m in (Agent, TradingSession)]
    if not wanted[0].exists():
        return False
    return not any(qs.exclude(status=Status.RUNNING, last_heartbeat__isnull=False).exists() for qs in wanted)


def stop_loops(timeout: float = 20.0) -> None:
    """Stop every agent through the control plane and wait until no loop holds a lease."""
    from django.conf import settings

    from agents.runtime.redis import get_redis
    from control import services
    from control.errors import ServiceError

    try:
        services.stop_system()
    except ServiceError:
        pass  # nothing was running
    client = get_redis()
    wait_until(
        lambda: not any(True for _ in client.scan_iter(match=f"{settings.REDIS_PREFIX}lease:*", count=1000)),
        timeout,
        "every loop to release its lease",
    )


def delete_own_keys(prefix: str) -> int:
    from agents.runtime.redis import get_redis

    assert prefix.startswith("shots-") and prefix.endswith(":"), prefix
    client = get_redis()
    found = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(found), 500):
        client.delete(*found[start : start + 500])
    return len(found)


def log_in(page, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


SESSION_SHOT = "session-details.png"
SESSION_MIN_FILLS = 2
# The demo trades a few times a minute per symbol (control/demo.py), the first within a minute.
SESSION_FILLS_TIMEOUT = 300.0
# Two minutes of 10 s candles, so the picture shows some history, not a few bars.
SESSION_MIN_CANDLES = 12
SESSION_CANDLES_TIMEOUT = 240.0


def most_traded_session(page) -> str | None:
    """The id of the demo session with the most fills, once it has SESSION_MIN_FILLS.

    Asked of the API through the logged-in browser: this process cannot use the ORM while
    Playwright's sync API runs (its event loop makes Django refuse synchronous queries).
    """
    response = page.request.get("/api/paper-trading/sessions")
    if not response.ok:
        detail = response.text()[:300]
        raise RuntimeError(f"GET /api/paper-trading/sessions answered {response.status}: {detail}")
    sessions = response.json()
    if not sessions:
        raise RuntimeError("the demo has no sessions (seed_demo should have made two)")
    best = max(sessions, key=lambda s: s["trades"])
    return best["session_id"] if best["trades"] >= SESSION_MIN_FILLS else None


def shoot_session_details(page, scheme: str) -> Path | None:
    """The details page of the demo session that has traded most, light only: once it has
    SESSION_MIN_FILLS fills and SESSION_MIN_CANDLES candles, after its charts have drawn
    candles, markers and equity."""
    if scheme != "light":
        return None
    from playwright.sync_api import expect

    say(f"waiting (up to {SESSION_FILLS_TIMEOUT:.0f}s) for a demo session with {SESSION_MIN_FILLS} fills")
    session_id = wait_until(
        lambda: most_traded_session(page),
        SESSION_FILLS_TIMEOUT,
        f"a demo session with {SESSION_MIN_FILLS} fills",
        interval=1.0,
    )
    page.goto(f"/sessions/{session_id}/")
    say(f"waiting (up to {SESSION_CANDLES_TIMEOUT:.0f}s) for {SESSION_MIN_CANDLES} candles on {session_id}")
    page.wait_for_function(
        "n => [...document.querySelectorAll('[data-chart=candles]')].every(e => +e.dataset.candles >= n)",
        arg=SESSION_MIN_CANDLES,
        timeout=SESSION_CANDLES_TIMEOUT * 1000,
    )
    nonzero = re.compile(r"^[1-9][0-9]*$")
    for chart in page.locator('[data-chart="candles"]').all():
        expect(chart).to_have_attribute("data-markers", nonzero)
    expect(page.locator('[data-chart="equity"]')).to_have_attribute("data-points", nonzero)
    expect(page.locator("#fills-table tr.fill-row")).not_to_have_count(0)
    # The charts paint on the next animation frame after their data arrive.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    path = OUT_DIR / SESSION_SHOT
    page.screenshot(path=str(path))
    return path


def take_screenshots(base_url: str, password: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for scheme in SCHEMES:
                context = browser.new_context(base_url=base_url, viewport=VIEWPORT, color_scheme=scheme)
                context.set_default_timeout(15_000)
                try:
                    page = context.new_page()
                    log_in(page, password)
                    page.wait_for_load_state("networkidle")
                    assert page.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches"), scheme
                    # The details first: it waits for trades, so the main page then shows
                    # sessions with fills and P&L rather than a system just started.
                    session_shot = shoot_session_details(page, scheme)
                    if session_shot:
                        saved.append(session_shot)
                    page.goto("/")
                    page.wait_for_load_state("networkidle")
                    page.locator("#live-indicator", has_text="Live").wait_for()
                    path = OUT_DIR / f"main-{scheme}.png"
                    page.screenshot(path=str(path))
                    saved.append(path)
                finally:
                    context.close()
        finally:
            browser.close()
    return saved


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="pt-screenshots-"))
    prefix = f"shots-{os.getpid()}-{secrets.token_hex(4)}:"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tradingsite.settings",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "REDIS_PREFIX": prefix,
            "LOG_DIR": str(tmp / "logs"),
            "MARKET_DATA_DIR": str(tmp / "market_data"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "TEST_RUN_ID"):
        os.environ.pop(name, None)
    # SIGTERM (or a closed terminal) tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from agents.net.redact import redact_url

    say(f"throwaway stack in {tmp}, Redis {redact_url(settings.REDIS_URL)} under prefix {prefix}")
    worker = server = None
    loops_started = False
    try:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo", verbosity=0)
        password = make_user()
        worker = Worker(tmp / "worker.log").start()
        server = DaphneServer(dict(os.environ), tmp / "daphne.log").start()
        say(f"daphne at {server.url}, worker {worker.hostname}; starting the agents")
        loops_started = True
        call_command("start_all", verbosity=0)
        wait_until(everything_running, 60, "every demo agent and session to run")
        for path in take_screenshots(server.url, password):
            say(f"saved {path.relative_to(ROOT)}")
        return 0
    except Exception:
        for proc in (server, worker):
            if proc is not None:
                say(f"--- {proc.log_path.name} (last lines) ---")
                print(proc.log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        say("tearing down")
        try:
            if loops_started:
                stop_loops()
        finally:
            if server is not None:
                server.stop()
            if worker is not None:
                worker.stop()
            say(f"deleted {delete_own_keys(prefix)} Redis keys under {prefix}")
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; the throwaway stack is gone")
        sys.exit(130)

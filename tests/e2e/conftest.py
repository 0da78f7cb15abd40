"""Browser tests: Chromium (through Playwright) against a real stack.

`live_stack` runs daphne serving tradingsite.asgi:application in a subprocess, on a free
port, against this test's own database (pytest-django's test database: a file for
SQLite, test_<name>_<run> for PostgreSQL) and this run's Redis URL and prefix, next to the
session's real Celery worker (tests/conftest.py). Such tests are transactional: the server
is another process and sees committed rows only.

Every test under tests/e2e is marked `e2e` (`-m "not e2e"` leaves them out).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import WorkerProcess, database_url
from tests.e2e.stack import VIEWPORT, DaphneServer, launch_chromium

E2E_DIR = Path(__file__).resolve().parent
# The `operator` fixture's password (tests/conftest.py).
OPERATOR_PASSWORD = "pw-operator"


def pytest_collection_modifyitems(config, items):
    # A conftest's hook sees every collected item, not only this folder's.
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


# --- the stack -----------------------------------------------------------------------


@dataclass
class LiveStack:
    url: str
    server: DaphneServer
    worker: WorkerProcess


def server_env() -> dict[str, str]:
    """The environment of the server: this test's database, Redis prefix, queues, folders."""
    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3") and (
        str(conf["NAME"]) == ":memory:" or "mode=memory" in str(conf["NAME"])
    ):
        pytest.fail(
            "the test database is in memory; a server process cannot share it. "
            "settings.DATABASES['default']['TEST']['NAME'] must name a file."
        )
    env = {
        **os.environ,
        # The project's settings, plus the test process's fast password hasher.
        "DJANGO_SETTINGS_MODULE": "tests.e2e.live_settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_PREFIX": settings.REDIS_PREFIX,
        "LOG_DIR": str(settings.LOG_DIR),
        "MARKET_DATA_DIR": str(settings.MARKET_DATA_DIR),
        "LOOP_QUEUE": settings.LOOP_QUEUE,
        "CONTROL_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "PYTHONUNBUFFERED": "1",
    }
    # Set in this process only while the browser is open (see `browser`).
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


@pytest.fixture
def live_stack(transactional_db, celery_worker, tmp_path) -> Iterator[LiveStack]:
    """daphne on a free port + the session's Celery worker, on this test's DB and Redis keys."""
    server = DaphneServer(server_env(), tmp_path / "daphne.log").start()
    try:
        yield LiveStack(url=server.url, server=server, worker=celery_worker)
    finally:
        server.stop()
        # Shown by pytest only when the test failed.
        print(f"--- daphne output ({server.log_path}) ---\n{server.output()[-6000:]}")


# --- the browser -----------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """One headless Chromium for all of tests/e2e.

    Package-scoped, not session-scoped: Playwright's sync API marks an asyncio loop as
    running in the main thread for as long as it is started, which makes Django refuse
    ORM calls (SynchronousOnlyOperation) and breaks asyncio.run/async_to_sync. So the
    browser lives only while tests/e2e runs, and only then is the ORM allowed despite
    that loop (DJANGO_ALLOW_ASYNC_UNSAFE; the e2e tests call Django from the main thread
    only, never from inside the loop).
    """
    from playwright.sync_api import sync_playwright

    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        try:
            chromium = launch_chromium(playwright)
        except Exception as exc:
            pytest.fail(f"could not launch Chromium: {exc}", pytrace=False)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def page(browser, live_stack) -> Iterator:
    """A fresh browser context (no cookies) on the live stack, 1440x900.

    Relative URLs resolve against the server (`page.goto("/")`). Console errors and
    uncaught page errors are printed at teardown (shown when the test fails).
    """
    context = browser.new_context(base_url=live_stack.url, viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    new_page = context.new_page()
    problems: list[str] = []

    def on_console(message) -> None:
        if message.type == "error":
            problems.append(f"console.error: {message.text}")

    new_page.on("console", on_console)
    new_page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    try:
        yield new_page
    finally:
        context.close()
        if problems:
            print("--- browser console ---\n" + "\n".join(problems))


def log_in(page, username: str, password: str) -> None:
    """Log in through the real login form, as a person would."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def logged_in_page(page, operator, live_stack):
    """`page`, logged in through the form as `operator` (has the control permission), on /."""
    log_in(page, operator.username, OPERATOR_PASSWORD)
    page.wait_for_url(f"{live_stack.url}/")
    return page

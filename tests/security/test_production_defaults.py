"""Production defaults: no URL list for strangers, no silent secret key, private files, a
Content-Security-Policy, `check --deploy` clean when configured as documented, and 431 for
oversized request headers (over a real socket to daphne)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.conftest import ROOT, database_url
from tests.e2e.stack import DaphneServer

pytestmark = pytest.mark.django_db

MISSING = "/no-such-page-anywhere"


# --- the technical 404 -------------------------------------------------------------------------


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True


def assert_plain_404(response) -> None:
    assert response.status_code == 404
    body = response.content.decode()
    for telltale in ("URLconf", "Django tried these URL patterns", "admin/", "api/", "healthz"):
        assert telltale not in body, f"the 404 shows {telltale!r}"


def test_an_anonymous_404_lists_no_url_with_debug_on(client, debug_on):
    assert_plain_404(client.get(MISSING))
    assert_plain_404(client.get("/admin-not-really/x"))


def test_a_logged_in_non_staff_404_lists_no_url_with_debug_on(viewer_client, debug_on):
    assert_plain_404(viewer_client.get(MISSING))


def test_a_staff_user_still_gets_the_technical_404_with_debug_on(client, debug_on, django_user_model):
    staff = django_user_model.objects.create_user("dev", password="pw-dev", is_staff=True)
    client.force_login(staff)
    response = client.get(MISSING)
    assert response.status_code == 404
    assert "Django tried these URL patterns" in response.content.decode()


def test_a_view_s_own_404_answer_is_left_alone(viewer_client, debug_on):
    # The session page answers an unknown id with its own page (a sentence, a way back).
    response = viewer_client.get("/sessions/no-such-session/")
    assert response.status_code == 404
    assert "no-such-session" in response.content.decode()


# --- the Content-Security-Policy header -------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/login/", "/healthz", MISSING, "/api/system/status"])
def test_every_answer_carries_the_policy(viewer_client, path):
    policy = viewer_client.get(path)["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


# --- settings read at start, in a process of their own --------------------------------------


def start_django(tmp_path: Path, env_extra: dict[str, str], code: str = "") -> subprocess.CompletedProcess:
    """`django.setup()` (then `code`) in a fresh process under umask 022, with var/ in tmp."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "LOG_DIR", "SECRET_KEY", "DEBUG", "VAR_DIR")
    }
    env.update(
        {"VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "tradingsite.settings", **env_extra}
    )
    script = f"import django\ndjango.setup()\n{code}"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o022),
    )


def test_debug_off_without_a_secret_key_refuses_to_start(tmp_path):
    result = start_django(tmp_path, {"DEBUG": "0"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DEBUG=0 needs SECRET_KEY" in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


def test_debug_off_with_a_secret_key_starts(tmp_path):
    result = start_django(tmp_path, {"DEBUG": "0", "SECRET_KEY": "k" * 50})
    assert result.returncode == 0, result.stderr


MODES = """
import json, os, stat
from django.conf import settings
from django.db import connection
with connection.cursor() as cur:  # a write: SQLite creates the -wal and -shm files
    cur.execute("CREATE TABLE IF NOT EXISTS probe (x)")
    cur.execute("INSERT INTO probe VALUES (1)")
    db = settings.DATABASES["default"]["NAME"]
    paths = {"var": settings.VAR_DIR, "logs": settings.LOG_DIR, "db": db, "wal": db + "-wal",
             "shm": db + "-shm", "secret_key": settings.VAR_DIR / "secret_key"}
    print(json.dumps({k: oct(stat.S_IMODE(os.stat(p).st_mode)) for k, p in paths.items()}))
"""
PRIVATE = {
    "var": "0o700",
    "logs": "0o700",
    "db": "0o600",
    "wal": "0o600",
    "shm": "0o600",
    "secret_key": "0o600",
}


def test_var_its_database_wal_key_and_logs_are_created_private(tmp_path):
    result = start_django(tmp_path, {}, MODES)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == PRIVATE


def test_an_older_checkout_s_readable_files_are_made_private(tmp_path):
    var = tmp_path / "var"
    (var / "logs").mkdir(parents=True)
    for name in ("db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm"):
        (var / name).touch()
    for path in (var, var / "logs"):
        path.chmod(0o755)
    for name in ("db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm"):
        (var / name).chmod(0o644)
    result = start_django(tmp_path, {}, MODES)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == PRIVATE


# --- manage.py check --deploy -----------------------------------------------------------------


def check_deploy(tmp_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    key = secrets.token_urlsafe(50)
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var"), "DEBUG": "0", "SECRET_KEY": key, **env_extra}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_is_clean_when_configured_as_documented(tmp_path):
    https_only = {"HSTS_SECONDS": "31536000", "HSTS_INCLUDE_SUBDOMAINS": "1", "HSTS_PRELOAD": "1"}
    result = check_deploy(tmp_path, {"BEHIND_TLS_PROXY": "1", **https_only})
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_names_only_the_documented_warnings_over_plain_http(tmp_path):
    """Served over plain HTTP (no TLS proxy): the documented four, and nothing else."""
    result = check_deploy(tmp_path, {})
    found = {code for code in ("W004", "W008", "W012", "W016") if f"security.{code}" in result.stderr}
    assert found == {"W004", "W008", "W012", "W016"}
    assert result.stderr.count("(security.") == 4, result.stderr
    documented = (ROOT / "docs" / "operations.md").read_text()
    for code in found:
        assert f"security.{code}" in documented


# --- oversized request headers over a real socket ---------------------------------------------


@pytest.fixture
def daphne(transactional_db, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "REDIS_PREFIX": django_settings.REDIS_PREFIX,
        "LOG_DIR": str(django_settings.LOG_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    server = DaphneServer(env, tmp_path / "daphne.log").start()
    try:
        yield server
    finally:
        server.stop()


def raw_request(server: DaphneServer, headers: list[str]) -> bytes:
    """Send GET / with these header lines over a plain socket; return all it answers."""
    request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request.encode())
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"Connection: close" not in b"".join(chunks) and b"\r\n\r\n" in b"".join(chunks):
                break  # a kept-alive answer: its head is enough here
    return b"".join(chunks)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([f"Cookie: big={'x' * 20_000}"], id="one 20 KB line"),
        pytest.param([f"X-Pad-{i}: {'y' * 400}" for i in range(50)], id="50 lines of 400 bytes"),
        pytest.param([f"X-N-{i}: 1" for i in range(600)], id="600 short lines"),
    ],
)
def test_oversized_request_headers_answer_431_with_a_reason(daphne, headers):
    answer = raw_request(daphne, headers)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert b"headers are too large" in answer


def test_headers_under_the_limit_are_served(daphne):
    answer = raw_request(daphne, [f"Cookie: fine={'z' * 8_000}"])
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]

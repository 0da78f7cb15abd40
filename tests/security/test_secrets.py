"""SECRET_KEY, bearer tokens and passwords never reach a log line or an error report, and
tokens are stored hashed."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.views.debug import ExceptionReporter

from control import presenters
from control.models import ApiToken

pytestmark = pytest.mark.django_db


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, sql: bool = True) -> str:
        """Every record as a handler could write it: message, traceback and attributes
        (a JSON formatter would write those too), and the error report Django would mail
        for records that carry a request."""
        formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
        out = []
        for record in self.records:
            if not sql and record.name == "django.db.backends":
                continue
            out.append(formatter.format(record))
            out.append(repr({k: v for k, v in record.__dict__.items() if k not in ("exc_info", "request")}))
            request = getattr(record, "request", None)
            if record.exc_info and request is not None:
                # Text as mailed to ADMINS, HTML as mailed with include_html (it lists
                # every frame's local variables).
                reporter = ExceptionReporter(request, *record.exc_info, is_email=True)
                out += [reporter.get_traceback_text(), reporter.get_traceback_html()]
        return "\n".join(out)


@pytest.fixture
def captured() -> Iterator[Capture]:
    """Everything logged at DEBUG and up, SQL included."""
    handler = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    sql = logging.getLogger("django.db.backends")
    old_sql = sql.level
    sql.setLevel(logging.DEBUG)
    connection.force_debug_cursor = True
    try:
        yield handler
    finally:
        connection.force_debug_cursor = False
        sql.setLevel(old_sql)
        root.setLevel(old_level)
        root.removeHandler(handler)


def issue_token(username: str) -> str:
    out = io.StringIO()
    call_command("issue_token", username, stdout=out)
    return out.getvalue().strip()


def assert_secret_free(text: str, *secrets: str) -> None:
    for secret in (settings.SECRET_KEY, *secrets):
        assert secret and secret not in text


def test_typical_flows_log_no_secret_key_token_or_password(graph, operator, captured, monkeypatch):
    raw = issue_token("operator")
    assert raw.startswith("pt_")
    client = Client()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    client.post("/login/", {"username": "operator", "password": "wrong-pw-operator"})
    client.post("/login/", {"username": "operator", "password": "pw-operator"})
    client.get("/")
    client.post("/logout/")
    assert Client().get("/api/agents", **bearer).status_code == 200
    assert Client().post("/api/agents/feed/start", **bearer).status_code == 200
    assert Client().get("/api/agents", HTTP_AUTHORIZATION=f"Bearer {raw}x").status_code == 401
    assert Client().get("/system/agents/feed/logs", **bearer).status_code == 404

    # A 500 with DEBUG off: Django logs it with the request (what an error mail shows).
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(presenters, "agent_dicts", broken)
    failing = Client(raise_request_exception=False)
    assert failing.get("/api/agents", **bearer).status_code == 500
    assert failing.get("/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code in (302, 500)
    # ...and for a logged-in browser: its session cookie is a credential too.
    failing.force_login(operator)
    session_key = failing.cookies[settings.SESSION_COOKIE_NAME].value
    assert failing.get("/api/agents").status_code == 500

    assert any(r.levelno >= logging.ERROR and getattr(r, "request", None) for r in captured.records)
    sql = [r.getMessage() for r in captured.records if r.name == "django.db.backends"]
    assert any("control_apitoken" in line for line in sql)
    assert_secret_free(captured.text(), raw, "pw-operator")
    # The session key is in the django_session queries that Django logs at DEBUG with
    # DEBUG on (a developer's machine); nowhere else, error reports included.
    assert_secret_free(captured.text(sql=False), session_key)


def test_an_error_while_checking_a_token_does_not_report_the_token(graph, operator, captured, monkeypatch):
    """The error report lists the local variables of every frame: the frames that hold
    the raw token must hide them."""
    raw = issue_token("operator")

    def database_down(*args, **kwargs):
        raise RuntimeError("database down")

    # Fails inside ApiToken.user_for, below every frame that holds the token.
    monkeypatch.setattr(ApiToken.objects, "select_related", database_down)
    response = Client(raise_request_exception=False).get("/api/agents", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 500
    report = captured.text()
    assert "database down" in report and "user_for" in report and "bearer_user" in report
    assert_secret_free(report, raw)


def test_tokens_are_stored_as_their_sha256_only(operator):
    raw = issue_token("operator")
    row = ApiToken.objects.filter(user=operator).values().get()
    assert row["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert not any(raw in str(value) for value in row.values())
    assert len(row["prefix"]) <= 8  # enough to tell tokens apart, far from enough to use one

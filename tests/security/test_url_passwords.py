"""No error, log line, health answer, page or script shows a URL's password.

REDIS_URL and DATABASE_URL may carry credentials; with a password in REDIS_URL and
nothing listening at its port (127.0.0.1:1), every place that reports Redis down is
asked, and the password must not appear in what it says.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from agents.net.redact import RedactingFormatter, redact_text, redact_url
from control import health
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db

PASSWORD = "hunter2-Pa55word"
DEAD_REDIS_WITH_PASSWORD = f"redis://default:{PASSWORD}@127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://default:{PASSWORD}@127.0.0.1:6379/0", "redis://default:***@127.0.0.1:6379/0"),
        (f"redis://:{PASSWORD}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (f"rediss://user:{PASSWORD}@cache.example:6380/1", "rediss://user:***@cache.example:6380/1"),
        (f"redis://127.0.0.1:6379/0?password={PASSWORD}&db=2", "redis://127.0.0.1:6379/0?password=***&db=2"),
        ("postgres://app:p%40ss:w@rd@db.example:5432/app", "postgres://app:***@db.example:5432/app"),
        (f"unix://:{PASSWORD}@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        (f"redis://u:{PASSWORD}@h:99999999/0", "redis://u:***@h:99999999/0"),  # a malformed port
    ],
)
def test_a_url_password_is_masked_wherever_it_sits(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://user@cache.example/0", "sqlite:////srv/app/db.sqlite3", "nope"],
)
def test_a_url_without_a_password_is_unchanged(url):
    assert redact_url(url) == url


def test_passwords_in_free_text_are_masked():
    text = f"Error connecting to redis://default:{PASSWORD}@127.0.0.1:1/0 and postgres://a:{PASSWORD}@db/x"
    assert PASSWORD not in redact_text(text)
    assert "redis://default:***@127.0.0.1:1/0" in redact_text(text)


def test_scripts_print_urls_without_their_password():
    out = subprocess.run(
        [sys.executable, "-m", "agents.net.redact", DEAD_REDIS_WITH_PASSWORD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "redis://default:***@127.0.0.1:1/0"
    for script in ("scripts/run.sh", "scripts/test.sh", "scripts/ensure_redis.sh"):
        text = (ROOT / script).read_text()
        assert "agents.net.redact" in text, f"{script} prints a Redis URL without masking it"


# --- with a password in REDIS_URL and Redis down -------------------------------------------------


@pytest.fixture
def redis_with_password(settings):
    settings.REDIS_URL = DEAD_REDIS_WITH_PASSWORD


def test_the_api_503_for_redis_down_names_redis_without_the_password(
    operator_client, make_agent, redis_with_password
):
    make_agent("feed")
    response = operator_client.post("/api/agents/feed/start")
    assert response.status_code == 503
    body = response.content.decode()
    assert PASSWORD not in body
    assert "redis://default:***@127.0.0.1:1/0" in response.json()["detail"]


def test_the_health_report_and_the_panel_show_no_password(operator_client, redis_with_password):
    report = operator_client.get("/api/system/health")
    assert report.status_code == 200
    assert report.json()["checks"]["redis"]["ok"] is False
    assert PASSWORD not in report.content.decode()
    assert PASSWORD not in str(health.health())
    page = operator_client.get("/")
    assert page.status_code == 200
    assert PASSWORD not in page.content.decode()


def test_anonymous_healthz_says_up_or_down_and_nothing_else(client, redis_with_password):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"ok": False}


def test_anonymous_healthz_when_up_names_no_vendor(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_a_management_command_names_redis_down_without_the_password(redis_with_password):
    with pytest.raises(CommandError) as raised:
        call_command("status")
    assert PASSWORD not in str(raised.value)
    assert "redis://default:***@127.0.0.1:1/0" in str(raised.value)


def test_the_console_log_format_masks_url_passwords():
    from django.conf import settings

    formatter_conf = settings.LOGGING["formatters"]["plain"]
    assert formatter_conf["()"] == "agents.net.redact.RedactingFormatter"
    record = logging.LogRecord(
        "celery", logging.ERROR, __file__, 1, "cannot reach %s", (DEAD_REDIS_WITH_PASSWORD,), None
    )
    line = RedactingFormatter(formatter_conf["format"]).format(record)
    assert PASSWORD not in line and "redis://default:***@" in line


def test_django_error_pages_mask_url_passwords_in_settings_and_frames(client, settings):
    """DEBUG pages (a bad Host's 400, a crash's 500) list the settings and each frame's
    variables: a password inside REDIS_URL, the broker URL or a cache's location
    must not show, although their names do not look secret to Django."""
    settings.DEBUG = True
    settings.REDIS_URL = DEAD_REDIS_WITH_PASSWORD
    settings.CELERY_BROKER_URL = DEAD_REDIS_WITH_PASSWORD
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS_WITH_PASSWORD,
        }
    }
    client.raise_request_exception = False

    bad_host = client.get("/", headers={"host": "evil.example"})
    assert bad_host.status_code == 400
    assert PASSWORD not in bad_host.content.decode()

    from django.views import debug

    # The whole report, as staff and the error mails get it.
    reporter = debug.ExceptionReporter(None, *_raised_with_a_url_in_a_local(), is_email=True)
    for report in (reporter.get_traceback_html(), reporter.get_traceback_text()):
        assert "redis://default:***@127.0.0.1:1/0" in report
        assert PASSWORD not in report


def _raised_with_a_url_in_a_local():
    url = DEAD_REDIS_WITH_PASSWORD  # noqa: F841 - a frame variable the report shows
    try:
        raise ConnectionError("Redis is unreachable")
    except ConnectionError as exc:
        return type(exc), exc, exc.__traceback__


def test_django_technical_error_pages_are_for_staff_only(client, settings, django_user_model):
    """An anonymous caller (a bad Host header needs no login) gets a plain error page, not
    the settings and source of the technical one; a staff user still gets it."""
    settings.DEBUG = True
    client.raise_request_exception = False
    anonymous = client.get("/", headers={"host": "evil.example"}).content.decode()
    assert "DisallowedHost" not in anonymous and "INSTALLED_APPS" not in anonymous
    assert "details are in the server's log" in anonymous

    from django.test import RequestFactory
    from django.views import debug

    request = RequestFactory().get("/")
    request.user = django_user_model.objects.create_user("staffer", password="x", is_staff=True)
    staff = debug.technical_500_response(request, *_raised_with_a_url_in_a_local()).content.decode()
    assert "INSTALLED_APPS" in staff and PASSWORD not in staff

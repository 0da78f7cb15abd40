"""Passwords out of URLs before a URL (or a message that may hold one) is shown.

`REDIS_URL` and `DATABASE_URL` may carry credentials (`redis://default:secret@host`,
`postgres://user:secret@host/db`, `redis://host?password=secret`). Every error, log line,
health answer, page or script banner that names such a URL passes it through here first,
so there is one rule for what counts as secret.

    python -m agents.net.redact URL    prints the URL without its password (for scripts)
"""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

MASK = "***"
# Query parameters that carry a credential (redis-py reads `password` from the query).
SECRET_PARAMS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token", "key", "api_key"})
# scheme://user:password@  anywhere in a text (the password part runs to the last '@'
# before the host, so a password holding '@' or ':' is masked whole).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s/]*)@")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)(?P<secret>[^&\s#]*)", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """`url` with any password (in its user info or its query) replaced by ***.

    A URL without a password comes back unchanged; so does text that is not a URL,
    except that anything shaped like `scheme://user:secret@` in it is still masked.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed netloc
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*")
    # Put back only the parts that changed: rebuilding the whole URL would normalise the
    # rest (`sqlite:////abs/path` loses two slashes).
    if netloc != parts.netloc:
        url = url.replace(parts.netloc, netloc, 1)
    if query != parts.query:
        url = url.replace(f"?{parts.query}", f"?{query}", 1)
    return url


def redact_text(text: str) -> str:
    """`text` (an exception's message, a log line) with every URL password in it masked."""
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks URL passwords in the whole line, traceback included
    (a connection error's message may quote the URL it failed on)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's error reports (the DEBUG pages, the error mails) without URL passwords.

    Django hides settings whose *names* look secret (KEY, PASS, TOKEN...), but REDIS_URL,
    CELERY_BROKER_URL (and any other URL setting) carry a password inside a URL, and a
    frame's local variables may hold one too: every text value is masked here."""

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        return redact_text(value) if isinstance(value, str) else value

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, redact_text(value) if isinstance(value, str) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]


class StaffOnlyExceptionReporter(ExceptionReporter):
    """With DEBUG on, Django answers an error (a crash, a bad Host header) with its
    technical page: settings, source and frame variables. Like the technical 404
    (control.middleware.PlainNotFoundUnlessStaff), only a logged-in staff user sees it;
    anyone else gets a plain page. Error mails (is_email) keep the whole report."""

    PLAIN = (
        "<!doctype html><title>Error</title><h1>Error</h1><p>The server could not answer this "
        "request. The details are in the server's log, and shown to staff users.</p>"
    )

    def _for_staff(self) -> bool:
        user = getattr(self.request, "user", None)
        return self.is_email or bool(user is not None and user.is_active and user.is_staff)

    def get_traceback_html(self):
        return super().get_traceback_html() if self._for_staff() else self.PLAIN

    def get_traceback_text(self):
        return super().get_traceback_text() if self._for_staff() else "Error: see the server's log."


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m agents.net.redact URL")
    print(redact_url(sys.argv[1]))

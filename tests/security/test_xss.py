"""User data (agent names, session names, log lines, audit messages) carrying HTML or
JavaScript renders inert everywhere the panel shows it: escaped in HTML, JSON in JSON,
text (never HTML) where the browser inserts it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agents.models import Agent, LogEntry
from control.live.hub import Hub
from sessions.models import TradingSession

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(1)"
# A name a person could type, with a line break that must not split an HTTP header.
PAYLOAD = f"{SCRIPT}{IMG}\r\n{JS_URL}"
# What must never reach a page as markup.
LIVE_MARKUP = ["<script>alert", "<img src=x", "onerror=alert(1)>", 'href="javascript:', 'src="javascript:']
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
STATIC_JS = Path(__file__).resolve().parents[2] / "static" / "js"


@pytest.fixture
def hostile(graph, settings, tmp_path):
    """The agent, the session and the log with hostile text everywhere a person can type."""
    Agent.objects.filter(pk="feed").update(name=PAYLOAD[:120])
    TradingSession.objects.filter(pk="runner").update(name=PAYLOAD[:120])
    LogEntry.objects.create(agent_id="feed", source="control", message=f"renamed to {PAYLOAD}")
    LogEntry.objects.create(session_id="runner", source="session", message=f"note {PAYLOAD}")
    settings.LOG_DIR = tmp_path
    (tmp_path / "feed.log").write_text(f"2026-01-01T00:00:00Z INFO agents.agent.feed: {PAYLOAD}\n")
    return graph


def assert_inert(html: str, *, rendered: bool = True) -> None:
    for markup in LIVE_MARKUP:
        assert markup not in html, markup
    if rendered:  # the text was on the page (escaped), so the check above means something
        assert ESCAPED in html


def test_the_main_page_escapes_names_and_feed_messages(hostile, viewer_client):
    html = viewer_client.get("/").content.decode()
    assert_inert(html)
    assert html.count(ESCAPED) >= 3  # the card, the session row, the feed


@pytest.mark.parametrize("path", ["/ui/panel", "/ui/feed"])
def test_the_htmx_partials_escape_them(hostile, viewer_client, path):
    assert_inert(viewer_client.get(path).content.decode())


def test_the_session_page_escapes_the_name(hostile, viewer_client):
    assert_inert(viewer_client.get("/sessions/runner/").content.decode())


def test_the_log_viewer_page_escapes_the_agent_name(hostile, viewer_client):
    assert_inert(viewer_client.get("/system/agents/feed/logs/view").content.decode())


def test_the_log_tail_is_json_and_never_sniffed_as_html(hostile, viewer_client):
    response = viewer_client.get("/system/agents/feed/logs")
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.json()["lines"][0].endswith(SCRIPT + IMG)  # the data itself, intact


def test_the_live_fragments_escape_and_the_events_are_json(hostile):
    hub = Hub()
    frame = hub.sweep({True, False}, {True}, with_events=True)
    for parts in frame.full.values():
        assert_inert("".join(parts))
    # An error whose message is hostile (exception text can quote user data) is pushed.
    Agent.objects.filter(pk="feed").update(status="error", error_message=PAYLOAD)
    frame = hub.sweep({True, False}, set(), with_events=True)
    for parts in frame.html.values():
        assert_inert("".join(parts))
    events = json.dumps(frame.events)
    assert json.loads(events) == frame.events  # plain JSON data, for programs
    assert SCRIPT in events


def test_a_toast_carries_the_name_as_json_text_in_one_header(graph, operator_client):
    # A line break is refused in a name (tests/security/test_refused_input.py); one stored
    # before that rule is still shown as text (above).
    form = {
        "name": PAYLOAD.replace("\r\n", " "),
        "symbols": "BTC-USD",
        "decision_agent": "decider",
        "starting_cash": "100",
    }
    response = operator_client.post("/ui/sessions/new", form, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content[:500]
    header = response["HX-Trigger"]
    assert header.isascii() and "\r" not in header and "\n" not in header
    message = json.loads(header)["toast"]["message"]
    assert SCRIPT + IMG in message  # data, shown by app.js as a text node
    assert_inert(response.content.decode())


def test_a_refusal_toast_with_a_hostile_action_name_is_json_text(graph, operator_client):
    response = operator_client.post("/ui/sessions/runner/%3Cimg%20src=x%20onerror=alert(1)%3E")
    assert response.status_code == 404
    assert "<img src=x onerror=alert(1)>" in json.loads(response["HX-Trigger"])["toast"]["message"]
    assert_inert(response.content.decode(), rendered=False)


def test_the_page_scripts_insert_user_data_as_text_only():
    """Toasts, log lines and the viewer's labels go in with textContent or text nodes;
    the HTML the scripts insert is literal markup or server-rendered (escaped) partials."""
    sinks = re.compile(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML\(|document\.write")
    found = []
    for script in sorted(STATIC_JS.glob("*.js")):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            if sinks.search(line):
                found.append((script.name, number, line.strip()))
    for name, number, line in found:
        literal = re.search(r"(innerHTML|outerHTML)\s*=\s*'[^']*';\s*$", line)
        server_partial = "insertAdjacentHTML" in line and "server-rendered" in line
        assert literal or server_partial, f"{name}:{number}: {line}"
    app = (STATIC_JS / "app.js").read_text()
    assert "document.createTextNode(message)" in app

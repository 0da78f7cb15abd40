"""RSS/Atom for the live demo: conditional GET (ETag and Last-Modified; a 304 publishes
nothing new) and per-feed errors on the agent's card (which URL, what, since when;
cleared when the feed recovers). Feeds come from a local HTTP server on 127.0.0.1
(FETCH_ALLOWED_HOSTS), never the internet."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.template.loader import render_to_string

from agents.kinds import validate_config
from agents.kinds.base import StepContext
from agents.kinds.sentiment import Sentiment
from agents.runtime import keys
from agents.runtime.agent_loop import AgentLoop
from control.web import dashboard_context as page

LAST_MODIFIED = "Wed, 01 May 2024 12:00:00 GMT"


def atom(*titles: str) -> bytes:
    entries = "".join(
        f"<entry><id>urn:{i}</id><title>{t}</title><updated>2024-05-01T12:0{i}:00Z</updated></entry>"
        for i, t in enumerate(titles)
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
        f"<title>Desk</title><id>urn:desk</id><updated>2024-05-01T12:00:00Z</updated>{entries}</feed>"
    ).encode()


@dataclass
class Fixture:
    body: bytes = b""
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Server:
    base: str
    files: dict[str, Fixture]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def headers_of(self, name: str) -> list[dict[str, str]]:
        return [h for path, h in self.requests if path == f"/{name}"]


@pytest.fixture
def server(settings: Any) -> Iterator[Server]:
    """Answers from `files` like a feed host: ETag/Last-Modified, 304 to a matching
    If-None-Match or If-Modified-Since, any status a fixture says."""
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    state = Server("", {})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers)))
            fixture = state.files.get(self.path.lstrip("/"))
            if fixture is None:
                self.send_error(404)
                return
            validators = {"ETag": fixture.etag, "Last-Modified": fixture.last_modified}
            same_tag = fixture.etag is not None and self.headers.get("If-None-Match") == fixture.etag
            same_date = fixture.last_modified is not None and (
                self.headers.get("If-Modified-Since") == fixture.last_modified
            )
            if fixture.status == 200 and (same_tag or (same_date and "If-None-Match" not in self.headers)):
                self.send_response(304)
                for name, value in validators.items():
                    if value:
                        self.send_header(name, value)
                self.end_headers()
                return
            self.send_response(fixture.status)
            self.send_header("Content-Type", "application/atom+xml")
            self.send_header("Content-Length", str(len(fixture.body)))
            for name, value in validators.items():
                if value and fixture.status == 200:
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(fixture.body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sentiment(urls: list[str]) -> tuple[Sentiment, list[dict[str, Any]], list[Any], Clock]:
    published: list[dict[str, Any]] = []
    reports: list[Any] = []
    ctx = StepContext(
        agent_id="news",
        symbols=["BTC-USD"],
        publish=lambda msg: published.append(msg) or f"{len(published)}-0",
        last_published=lambda: None,
        log=logging.getLogger("tests.feed_status"),
        report_status=reports.append,
    )
    config = validate_config(
        "sentiment", {"sources": ["rss"], "feeds": [{"url": u} for u in urls], "feed_poll_seconds": 30}
    )
    clock = Clock()
    return Sentiment(ctx, config, clock=clock), published, reports, clock


# --- conditional GET ---------------------------------------------------------------------


def test_an_etag_and_a_date_are_sent_back_and_a_304_publishes_nothing(server: Server) -> None:
    server.files["desk.atom"] = Fixture(atom("Bitcoin surges"), etag='"v1"', last_modified=LAST_MODIFIED)
    kind, published, reports, clock = sentiment([server.url("desk.atom")])
    assert kind.step().counters == {"headlines": 1, "feed_errors": 0}
    assert len(published) == 1

    clock.now += 30
    result = kind.step()
    assert result.counters == {"headlines": 0, "feed_errors": 0} and result.published == 0
    assert len(published) == 1  # the 304 reused what was read: nothing new published
    second = server.headers_of("desk.atom")[1]
    assert second["If-None-Match"] == '"v1"' and second["If-Modified-Since"] == LAST_MODIFIED

    server.files["desk.atom"] = Fixture(atom("Bitcoin surges", "Bitcoin rallies"), etag='"v2"')
    clock.now += 30
    assert kind.step().counters == {"headlines": 1, "feed_errors": 0}  # only the new entry
    assert published[-1]["headline"] == "Bitcoin rallies"
    clock.now += 30
    kind.step()
    assert server.headers_of("desk.atom")[3]["If-None-Match"] == '"v2"'
    assert "If-Modified-Since" not in server.headers_of("desk.atom")[3]  # v2 has no date
    assert reports == []  # never failed: nothing reported


def test_a_malformed_answer_does_not_keep_its_validators(server: Server) -> None:
    """Else the next poll would be "not modified" and the broken copy would stand."""
    server.files["desk.atom"] = Fixture(b"<feed><entry><title>Bitcoin", etag='"broken"')
    kind, published, _reports, clock = sentiment([server.url("desk.atom")])
    assert kind.step().counters["feed_errors"] == 1
    clock.now += 30
    kind.step()
    assert "If-None-Match" not in server.headers_of("desk.atom")[1]


# --- per-feed errors ----------------------------------------------------------------------


def test_a_failing_feed_is_reported_with_its_url_error_and_since_until_it_recovers(server: Server) -> None:
    server.files["good.atom"] = Fixture(atom("Bitcoin surges"), etag='"g"')
    server.files["down.atom"] = Fixture(b"oops", status=503)
    kind, _published, reports, clock = sentiment([server.url("good.atom"), server.url("down.atom")])
    kind.wall_clock = lambda: 1_714_564_800.0  # 2024-05-01T12:00:00Z
    kind.step()  # good.atom: fine, nothing to report
    assert reports == []
    kind.step()  # down.atom: 503
    assert reports == [
        {
            "feed_errors": [
                {
                    "url": server.url("down.atom"),
                    "error": "the server answered HTTP 503",
                    "since": "2024-05-01T12:00:00+00:00",
                }
            ]
        }
    ]

    # Still failing later, another way: the same spell (its start kept), the new reason.
    server.files["down.atom"] = Fixture(b"nope", status=500)
    kind.wall_clock = lambda: 1_714_565_000.0
    clock.now += 30
    kind.step()  # good.atom again (304)
    kind.step()
    assert reports[-1]["feed_errors"][0]["error"] == "the server answered HTTP 500"
    assert reports[-1]["feed_errors"][0]["since"] == "2024-05-01T12:00:00+00:00"
    count = len(reports)

    server.files["down.atom"] = Fixture(atom("Bitcoin rallies"))
    clock.now += 30
    kind.step()
    assert len(reports) == count  # the good feed's 304 changes nothing
    kind.step()
    assert reports[-1] is None  # recovered: cleared


def test_the_card_shows_each_failing_feed_and_clears_it(make_agent, redis_client) -> None:
    make_agent("news", kind="sentiment", role="specialized_sentiment", config={})
    loop = AgentLoop("news", "run-1")
    since = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).isoformat()
    loop._report_status(
        {
            "feed_errors": [
                {"url": "https://feeds.example/rss", "error": "the server answered HTTP 503", "since": since}
            ]
        }
    )
    (card,) = page.agent_cards()
    assert card.problems == [
        {
            "url": "https://feeds.example/rss",
            "error": "the server answered HTTP 503",
            "since": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        }
    ]
    html = render_to_string("control/index.html#agent-card", {"card": card, "can_control": True})
    assert "Feed https://feeds.example/rss failing since" in html
    assert 'datetime="2024-05-01T12:00:00+00:00"' in html and "the server answered HTTP 503" in html

    loop._report_status(None)
    assert redis_client.get(keys.status("agent", "news")) is None
    (card,) = page.agent_cards()
    html = render_to_string("control/index.html#agent-card", {"card": card, "can_control": True})
    assert card.problems == [] and "data-feed-error" not in html


def test_a_garbled_status_shows_nothing_rather_than_failing(make_agent, redis_client) -> None:
    make_agent("news", kind="sentiment", role="specialized_sentiment", config={})
    for value in ("not json", "[1, 2]", '{"feed_errors": "x"}', '{"feed_errors": [1, {"since": "when"}]}'):
        redis_client.set(keys.status("agent", "news"), value)
        (card,) = page.agent_cards()
        render_to_string("control/index.html#agent-card", {"card": card, "can_control": True})
        assert all(isinstance(p, dict) for p in card.problems)


def test_the_live_page_pushes_the_card_when_a_feed_starts_and_stops_failing(make_agent, redis_client) -> None:
    from control.live.hub import Hub
    from tests.control.test_live import pushed

    make_agent("news", kind="sentiment", role="specialized_sentiment", config={})
    hub = Hub()
    pushed(hub)  # the first sweep: the whole grid
    assert "agent-news" not in pushed(hub)
    loop = AgentLoop("news", "run-1")
    problem = {"url": "https://feeds.example/rss", "error": "timed out", "since": "2024-05-01T12:00:00+00:00"}
    loop._report_status({"feed_errors": [problem]})
    assert "agent-news" in pushed(hub)
    assert "agent-news" not in pushed(hub)  # unchanged: not pushed again
    loop._report_status(None)
    assert "agent-news" in pushed(hub)

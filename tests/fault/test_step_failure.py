"""An agent step that raises, or hangs (issue 5, item 6): the agent goes to `error` with
the reason, the rest of the system keeps running (the other agents tick, a session keeps
trading), the panel and the API raise an alert, and a restart works.

Both faults are real ones in real kinds, in a worker of the test's own:
* raises: a CSV market feed replaying its file in a loop; the file is deleted, and the
  step that rewinds to the top fails to open it (FileNotFoundError);
* hangs: a sentiment agent whose RSS feed is a server on 127.0.0.1 (allowed through
  FETCH_ALLOWED_HOSTS) that does not answer, so the step waits for the download's own
  time limit (5 s); the step watchdog (agents/runtime/watchdog.py) abandons it after the
  agent's shorter step_timeout_seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from agents.models import Agent
from agents.runtime import keys
from agents.runtime.redis import get_redis
from agents.states import Status
from control import services
from control.web import dashboard_context as page
from sessions.models import TradingSession
from tests.conftest import wait_for
from tests.fault.conftest import Market, assert_ledger_consistent, wait_for_new_fills

ONE_BAR = "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,100,101,99,100.5,10\n"
FEED = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
    "<item><guid>1</guid><title>Bitcoin surges to a record</title></item></channel></rss>"
)

EMPTY_FEED = '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


def steps(agent_id: str) -> int:
    return int(get_redis().hget(keys.metrics("agent", agent_id), "steps") or 0)


def agent_row(agent_id: str) -> Agent:
    return Agent.objects.get(pk=agent_id)


def in_error(agent_id: str) -> Agent | None:
    agent = agent_row(agent_id)
    return agent if agent.status == Status.ERROR else None


def assert_the_rest_keeps_running(market: Market) -> None:
    """Every other agent keeps stepping and the session keeps trading."""
    before = {agent_id: steps(agent_id) for agent_id in market.agent_ids}
    wait_for_new_fills(market, market.session_ids, what="the session to keep trading")
    wait_for(
        lambda: all(steps(a) > n for a, n in before.items()), what=f"every other agent to step: {before}"
    )
    assert market.all_live()


def assert_alerted(client, reasons: dict[str, str]) -> None:
    """The system panel (first render and live pushes) and the API say so."""
    texts = [alert["text"] for alert in page.system_panel()["alerts"]]
    html = client.get("/").content.decode()
    for agent_id, reason in reasons.items():
        assert any(t.startswith(f"Agent {agent_id} is in error: ") and reason in t for t in texts), texts
        assert f"Agent {agent_id} is in error" in html
    status = client.get("/api/system/status").json()
    assert status["status"] == "error" and status["agents"]["error"] == len(reasons), status


class FeedServer:
    """Serves FEED at /feed.xml; /hang.xml answers only once release() is called, and then
    with no items, so the abandoned step returns without anything to publish."""

    def __init__(self) -> None:
        self.released = threading.Event()
        released = self.released

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                feed = FEED.encode()
                if self.path == "/hang.xml":
                    released.wait(timeout=60)
                    feed = EMPTY_FEED.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(feed)))
                self.end_headers()
                self.wfile.write(feed)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def feed_server(monkeypatch, settings) -> Iterator[FeedServer]:
    """A feed host on 127.0.0.1, allowed here and in the workers this test starts (they copy
    os.environ), as an operator allows a private feed host."""
    monkeypatch.setenv("FETCH_ALLOWED_HOSTS", "127.0.0.1")
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    server = FeedServer()
    try:
        yield server
    finally:
        server.close()


def stop_and_check_the_ledger(market: Market) -> None:
    """Stopped first: read while it trades, fills and orders come from two moments."""
    for session_id in market.session_ids:
        services.stop_session(session_id)
    wait_for(
        lambda: all(
            status == Status.STOPPED
            for status in TradingSession.objects.filter(pk__in=market.session_ids).values_list(
                "status", flat=True
            )
        ),
        what="the sessions stopped",
    )
    assert_ledger_consistent(market.session_ids)


def test_a_step_that_raises_or_hangs_puts_its_agent_in_error_while_the_rest_trades_on(
    feed_server, spawn_worker, market, directives, make_agent, operator_client
):
    worker = spawn_worker()
    csv = Path(settings.MARKET_DATA_DIR) / "sf_replay.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text(ONE_BAR)
    make_agent(
        "sf_csv",
        config={"source": "csv", "csv_path": csv.name, "loop_at_end": True, "tick_seconds": 0.2},
    )
    news_config = {
        "sources": ["rss"],
        "feeds": [{"url": f"{feed_server.base}/hang.xml", "symbols": ["BTC-USD"]}],
        "tick_seconds": 0.5,
        "step_timeout_seconds": 1.0,
    }
    make_agent("sf_news", kind="sentiment", role="specialized_sentiment", config=news_config)
    market.add_session("sf")
    market.start_everything()
    try:
        with directives():
            services.start_agent("sf_csv")
            services.start_agent("sf_news")
            wait_for(lambda: steps("sf_csv") >= 2, what="the replay to step")
            csv.unlink()  # the next rewind cannot open it

            failed = wait_for(lambda: in_error("sf_csv"), what="the failing step to put it in error")
            assert failed.error_message.startswith("FileNotFoundError: ")
            assert csv.name in failed.error_message
            hung = wait_for(lambda: in_error("sf_news"), what="the watchdog to abandon the hung step")
            assert hung.error_message.startswith("step timed out after "), hung.error_message
            assert "(limit 1 s)" in hung.error_message
            # The abandoned loop releases its lease (just after writing the error): a
            # restart need not wait the lease out.
            wait_for(
                lambda: not get_redis().exists(keys.lease("agent", "sf_news")),
                timeout=2,
                what="the abandoned loop's lease to be released",
            )
            assert_alerted(operator_client, {"sf_csv": "FileNotFoundError", "sf_news": "step timed out"})
            assert_the_rest_keeps_running(market)

            # The causes are fixed: start works from error.
            csv.write_text(ONE_BAR)
            services.update_agent_config(
                "sf_news",
                {**news_config, "feeds": [{"url": f"{feed_server.base}/feed.xml", "symbols": ["BTC-USD"]}]},
            )
            restarted_at = {a: steps(a) for a in ("sf_csv", "sf_news")}
            services.start_agent("sf_csv")
            services.start_agent("sf_news")
            wait_for(
                lambda: (
                    all(steps(a) > n for a, n in restarted_at.items())
                    and Agent.objects.filter(pk__in=restarted_at, status=Status.RUNNING).count() == 2
                ),
                what="both restarted and stepping",
            )
            restarted = agent_row("sf_news")
            assert restarted.run_id != hung.run_id

            # The hung download returns at last: the abandoned loop ends without writing.
            feed_server.release()
            log = Path(settings.LOG_DIR) / "sf_news.log"
            wait_for(
                lambda: "step returned after the watchdog abandoned it" in log.read_text(errors="replace"),
                what="the abandoned loop to end",
            )
            after = agent_row("sf_news")
            assert (after.status, after.run_id, after.error_message) == (Status.RUNNING, restarted.run_id, "")
        stop_and_check_the_ledger(market)
    finally:
        feed_server.release()
    assert worker.proc.poll() is None

"""`seed_demo --live <exchange id>` (and DEMO_LIVE): the exchange must answer one request
before anything is created; with no network it fails in one sentence, exit code 1, no
traceback, nothing changed. Nothing here reaches the internet: the exchange is a
loopback port that refuses connections, or a local HTTP server."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import Agent
from control import demo_live
from sessions.models import TradingSession

ROOT = Path(__file__).resolve().parents[2]


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli-live")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "REDIS_PREFIX": django_settings.REDIS_PREFIX,
        "LOG_DIR": str(folder / "logs"),
        "FETCH_ALLOWED_HOSTS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DEMO_LIVE", None)
    assert manage("migrate", "--noinput", env=env).returncode == 0
    env["DB_FILE"] = str(folder / "db.sqlite3")
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def rows(env: dict[str, str]) -> tuple[int, int]:
    with sqlite3.connect(env["DB_FILE"]) as db:
        agents = db.execute("SELECT count(*) FROM agents_agent").fetchone()[0]
        sessions = db.execute("SELECT count(*) FROM trading_sessions_tradingsession").fetchone()[0]
    return agents, sessions


@pytest.mark.parametrize("how", ["--live", "DEMO_LIVE"])
def test_with_no_network_it_says_so_in_one_sentence_and_creates_nothing(cli_env, how):
    base = f"http://127.0.0.1:{refused_port()}/"
    if how == "--live":
        result = manage("seed_demo", "--live", "binance", "--base-url", base, env=cli_env)
        name = "Binance"
    else:
        result = manage("seed_demo", "--base-url", base, env={**cli_env, "DEMO_LIVE": "kraken"})
        name = "Kraken"
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"CommandError: Cannot reach {name} at {base} (could not connect to the server); the live "
        "demo needs network access to the exchange, so nothing was created."
    )
    assert rows(cli_env) == (0, 0)  # not even the simulated demo: nothing changed


def test_an_unknown_exchange_id_is_refused_naming_what_exists(db):
    with pytest.raises(CommandError, match=r"ccxt knows no exchange 'nowhere'; use its id, e\.g\. binance"):
        call_command("seed_demo", live="nowhere")
    assert not Agent.objects.exists()


@pytest.fixture
def exchange(settings: Any) -> Iterator[str]:
    """A local server that answers every request (404): an exchange that is reachable."""
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_error(404)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_a_reachable_exchange_passes_the_check_with_one_request(exchange):
    assert demo_live.check_reachable("kraken", exchange) == "Kraken"


def test_a_config_the_kinds_refuse_creates_nothing(db, exchange):
    """Reachable, but a feed URL the policy refuses: refused before anything is written."""
    with pytest.raises(CommandError, match=r"^The live demo's config is refused: "):
        call_command("seed_demo", live="kraken", base_url=exchange, feed=["file:///etc/passwd"])
    assert not Agent.objects.exists() and not TradingSession.objects.exists()


def test_the_live_graph_names_its_exchange_and_maps_symbols_explicitly():
    assert demo_live.live_symbols("binance") == {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"}
    assert demo_live.live_symbols("kraken") == {"BTC-USD": "BTC/USD", "ETH-USD": "ETH/USD"}
    assert demo_live.live_symbols("kraken", "EUR")["BTC-USD"] == "BTC/EUR"
    agents = {a["agent_id"]: a for a in demo_live.live_agents("kraken", "Kraken", base_url="http://gw/")}
    market = agents["market_data_live"]
    assert market["name"].startswith("Live: Kraken")
    assert market["config"] == {
        "source": "exchange",
        "exchange": "kraken",
        "symbols": {"BTC-USD": "BTC/USD", "ETH-USD": "ETH/USD"},
        "timeframe": "1m",
        "backfill_bars": 100,
        "base_url": "http://gw/",
    }
    feeds = agents["sentiment_live"]["config"]["feeds"]
    assert [f["url"] for f in feeds] == demo_live.DEFAULT_FEEDS
    assert agents["execution_live"]["inputs_from"] == ["market_data_live"]


def test_the_default_probe_goes_to_the_exchanges_public_api():
    assert demo_live.probe_url("kraken", None) == "https://api.kraken.com"
    assert demo_live.probe_url("kraken", "http://127.0.0.1:9/") == "http://127.0.0.1:9/"

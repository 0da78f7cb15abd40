"""`seed_demo --live EXCHANGE` switches the demo to live prices, `--simulated` back; against
the local Binance stand-in (tests/exchange_server.py), never the internet."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.kinds import exchange_markets
from agents.models import Agent
from agents.runtime import keys
from agents.runtime.redis import get_redis
from control.demo import DEMO_AGENTS
from control.live_demo import DEFAULT_NEWS_FEEDS
from tests.exchange_server import ExchangeServer

pytestmark = pytest.mark.django_db
SIMULATED = next(spec for spec in DEMO_AGENTS if spec["agent_id"] == "market_data_sim")
SIMULATED_NEWS = next(spec for spec in DEMO_AGENTS if spec["agent_id"] == "sentiment_news")


@pytest.fixture
def server(settings: Any) -> Iterator[ExchangeServer]:
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    with ExchangeServer() as running:
        yield running
    client = get_redis()
    for key in client.scan_iter(match=keys.exchange_markets("*", "*"), count=1000):
        client.delete(key)
    exchange_markets._failures.clear()


def run(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def feed() -> Agent:
    return Agent.objects.get(pk="market_data_sim")


def news() -> Agent:
    return Agent.objects.get(pk="sentiment_news")


def test_live_switches_the_demo_feed_to_the_exchange_and_simulated_switches_it_back(server) -> None:
    output = run("--live", "binance", "--base-url", server.base_url)
    agent = feed()
    assert agent.config["source"] == "exchange" and agent.config["exchange"] == "binance"
    # The local recording, like Binance, lists no BTC/USD: the dollar stablecoin, said aloud.
    assert agent.config["symbol_map"] == {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT"}
    assert agent.name == "Live market: Binance (BTC, ETH)"
    assert "demo market data: Live market: Binance (BTC, ETH)" in output
    assert "  BTC-USD trades at BTC/USDT" in output

    # Real prices come with real news: the sentiment agent reads the default feeds.
    assert news().config["sources"] == ["rss"]
    assert [f["url"] for f in news().config["feeds"]] == list(DEFAULT_NEWS_FEEDS)
    assert "demo news: 3 RSS/Atom feeds" in output

    output = run("--simulated")
    agent = feed()
    assert agent.config["source"] == "simulated" and agent.name == SIMULATED["name"]
    assert f"demo market data: {SIMULATED['name']}" in output
    assert news().config["sources"] == SIMULATED_NEWS["config"]["sources"]


def test_feeds_named_with_feed_are_read_and_a_refused_one_changes_nothing(server) -> None:
    run("--live", "binance", "--base-url", server.base_url, "--feed", "https://example.org/news.xml")
    assert [f["url"] for f in news().config["feeds"]] == ["https://example.org/news.xml"]
    run("--simulated")
    with pytest.raises(CommandError, match="The demo was not switched: .*feeds"):
        run("--live", "binance", "--base-url", server.base_url, "--feed", "ftp://example.org/news.xml")
    assert feed().config["source"] == "simulated"
    assert news().config["sources"] == SIMULATED_NEWS["config"]["sources"]


def test_a_market_named_with_map_is_used(server) -> None:
    run("--live", "binance", "--base-url", server.base_url, "--map", "BTC-USD=BTC/USDC")
    assert feed().config["symbol_map"] == {"BTC-USD": "BTC/USDC", "ETH-USD": "ETH/USDT"}
    with pytest.raises(CommandError, match="Binance has no market BTC/DAI for BTC-USD"):
        run("--live", "binance", "--base-url", server.base_url, "--map", "BTC-USD=BTC/DAI")
    with pytest.raises(CommandError, match="write OURS=THEIRS"):
        run("--live", "binance", "--map", "BTC-USD")


def test_with_no_network_the_switch_fails_with_a_sentence_and_changes_nothing(server) -> None:
    server.fault = "down"
    with pytest.raises(CommandError) as caught:
        run("--live", "binance", "--base-url", server.base_url)
    assert str(caught.value).startswith(
        "The demo was not switched: the market list of Binance could not be loaded (unreachable: "
    )
    assert feed().config["source"] == "simulated"


def test_an_unknown_exchange_is_refused_with_known_ids(server) -> None:
    with pytest.raises(CommandError, match="ccxt knows no exchange 'binanse'; ids look like binance"):
        run("--live", "binanse")
    assert feed().config["source"] == "simulated"


def test_from_the_shell_no_network_is_one_sentence_and_exit_code_1(server, tmp_path) -> None:
    """What a person at the terminal sees: the sentence, no traceback, nothing changed."""
    server.fault = "down"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_PREFIX": django_settings.REDIS_PREFIX,
        "LOG_DIR": str(tmp_path / "logs"),
        "FETCH_ALLOWED_HOSTS": "127.0.0.1",
    }
    root = Path(__file__).resolve().parents[2]
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=root, env=env, check=True, capture_output=True)
    done = subprocess.run(
        [*manage, "seed_demo", "--live", "binance", "--base-url", server.base_url],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "The demo was not switched: the market list of Binance could not be loaded" in done.stderr
    check = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        (source,) = check.execute(
            "SELECT config FROM agents_agent WHERE agent_id = 'market_data_sim'"
        ).fetchone()
    finally:
        check.close()
    assert '"simulated"' in source


def test_a_map_for_a_symbol_the_demo_does_not_trade_is_refused_before_any_request(server) -> None:
    run("--simulated")
    with pytest.raises(CommandError, match=r"it has no symbol BTC-UDS to map \(it trades BTC-USD, ETH-USD\)"):
        run("--live", "binance", "--base-url", server.base_url, "--map", "BTC-UDS=BTC/USDC")
    assert server.requests == []
    assert feed().config["source"] == "simulated"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--base-url", "http://127.0.0.1:{port}/?key=x"), "no query"),
        (("--timeframe", "1M"), "offers no '1M' bars"),
        (("--base-url", "http://10.0.0.1/"), "not a public address"),
    ],
)
def test_a_draft_the_save_would_refuse_is_refused_before_any_request(server, extra, words: str) -> None:
    run("--simulated")
    args = [a.format(port=server.base_url.rsplit(":", 1)[1]) for a in extra]
    if "--base-url" not in args:
        args += ["--base-url", server.base_url]
    with pytest.raises(CommandError, match=words):
        run("--live", "binance", *args)
    assert server.requests == []
    assert feed().config["source"] == "simulated"

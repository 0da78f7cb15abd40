"""Unit tests of the sentiment kind: no Redis, no database, no internet.

Feeds are files the tests write, served by an HTTP server on 127.0.0.1 (allowed through
FETCH_ALLOWED_HOSTS, as an operator would allow a private feed host), and the news comes
from a fake StepContext's inbox.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from agents.kinds import ConfigError, validate_config
from agents.kinds import sentiment as sentiment_module
from agents.kinds.base import StepContext
from agents.kinds.headlines import JUMP_TEMPLATES, NOISE_TEMPLATES
from agents.kinds.market_data import MarketData
from agents.kinds.sentiment import Sentiment, label_of, make_analyzer, trend_of
from agents.runtime.bus import InputMessage

SYMBOLS = ["BTC-USD", "ETH-USD"]
TS = "2024-05-01T12:00:00+00:00"


class FakeContext(StepContext):
    """A StepContext whose stream is a list and whose inputs are an inbox the test fills."""

    def __init__(self, symbols: list[str] | None = None) -> None:
        self.published: list[dict[str, Any]] = []
        self.inbox: list[InputMessage] = []
        self.reads = 0
        super().__init__(
            agent_id="s1",
            symbols=list(SYMBOLS if symbols is None else symbols),
            publish=self._publish,
            last_published=lambda: None,
            log=logging.getLogger("tests.sentiment"),
            read_inputs=self._read,
            inputs=["md"],
        )

    def _publish(self, msg: dict[str, Any]) -> str:
        self.published.append(msg)
        return f"{len(self.published)}-0"

    def _read(self) -> list[InputMessage]:
        self.reads += 1
        out, self.inbox = self.inbox, []
        return out

    def give(self, *messages: dict[str, Any]) -> None:
        self.inbox += [InputMessage("md", f"{len(self.inbox) + 1}-0", m) for m in messages]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    config: dict[str, Any] | None = None, symbols: list[str] | None = None
) -> tuple[Sentiment, FakeContext, Clock]:
    ctx, clock = FakeContext(symbols), Clock()
    return Sentiment(ctx, validate_config("sentiment", config or {}), clock=clock), ctx, clock


def news(headline: str, symbol: str = "BTC-USD", ts: str = TS, **extra: Any) -> dict[str, Any]:
    return {"type": "news", "ts": ts, "symbol": symbol, "headline": headline, "source": "simulated", **extra}


def refusal(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        validate_config("sentiment", config)
    return dict(exc.value.errors)


# --- scoring ---


@pytest.mark.parametrize("name", ["Bitcoin", "Ether", "SOL"])
def test_every_simulated_template_scores_with_its_directions_sign(name: str) -> None:
    analyzer = make_analyzer()

    def score(template: str) -> float:
        return analyzer.polarity_scores(template.format(name=name, pct="3.2"))["compound"]

    for direction, tiers in JUMP_TEMPLATES.items():
        for template in (t for templates in tiers.values() for t in templates):
            # A jump's headline is strong enough on its own to cross the default thresholds.
            assert (score(template) >= 0.05) if direction == "up" else (score(template) <= -0.05), template
    for template in NOISE_TEMPLATES["up"]:
        assert score(template) > 0, template
    for template in NOISE_TEMPLATES["down"]:
        assert score(template) < 0, template
    for template in NOISE_TEMPLATES["neutral"]:
        assert abs(score(template)) < 0.05, template


def test_the_finance_lexicon_fills_what_stock_vader_misses() -> None:
    assert SentimentIntensityAnalyzer().polarity_scores("Bitcoin surges")["compound"] == 0
    ours = make_analyzer()
    assert ours.polarity_scores("Bitcoin surges")["compound"] > 0.3
    assert ours.polarity_scores("Ether plunges in selloff")["compound"] < -0.5
    assert 20 <= len(sentiment_module.FINANCE_LEXICON) and all(
        -4 <= v <= 4 for v in sentiment_module.FINANCE_LEXICON.values()
    )


@pytest.mark.parametrize(
    ("scores", "trend"),
    [
        ([], "flat"),
        ([0.9], "flat"),
        ([-0.5, 0.5], "rising"),
        ([0.5, -0.5], "falling"),
        ([0.10, 0.11], "flat"),  # inside the dead band
        ([-0.2, 0.9, 0.2], "rising"),  # odd: the middle one belongs to neither half
        ([0.4, 0.4, 0.1, 0.1], "falling"),
    ],
)
def test_trend_compares_the_newer_half_with_the_older(scores: list[float], trend: str) -> None:
    assert trend_of(scores) == trend


def test_label_follows_the_thresholds_inclusively() -> None:
    assert [label_of(a, 0.05, -0.05) for a in (0.05, 0.049, -0.049, -0.05)] == [
        "bullish", "neutral", "neutral", "bearish",
    ]  # fmt: skip


def scripted(config: dict[str, Any] | None = None) -> tuple[Sentiment, FakeContext, Clock]:
    """A kind whose headlines say their own score ("s=0.4"), to test the arithmetic."""
    kind, ctx, clock = make(config)
    kind.score = lambda text: float(text.split("=")[1])  # type: ignore[method-assign]
    return kind, ctx, clock


def test_rolling_average_trend_and_label_over_a_known_sequence() -> None:
    kind, ctx, _ = scripted({"window": 4})
    for value in (0.2, 0.4, 0.6, 0.8, 1.0):
        ctx.give(news(f"s={value}"))
        kind.step()
    last = ctx.published[-1]
    assert (last["score"], last["average"], last["count"]) == (1.0, 0.7, 4)
    assert (last["trend"], last["label"]) == ("rising", "bullish")
    assert [m["count"] for m in ctx.published] == [1, 2, 3, 4, 4]

    for value in (-0.3, -0.6, -0.9, -0.9):
        ctx.give(news(f"s={value}"))
        kind.step()
    last = ctx.published[-1]
    assert (last["average"], last["trend"], last["label"]) == (-0.675, "falling", "bearish")

    ctx.give(news("s=0.0"), news("s=0.0"), news("s=1.0"), news("s=-1.0"))
    kind.step()
    last = ctx.published[-1]
    assert (last["average"], last["trend"], last["label"]) == (0.0, "flat", "neutral")


def test_the_average_is_rounded_to_four_places() -> None:
    kind, ctx, _ = scripted({"window": 3})
    ctx.give(news("s=0.1"), news("s=0.2"), news("s=0.2"))
    kind.step()
    assert ctx.published[-1]["average"] == 0.1667


# --- news messages ---


def test_a_news_headline_becomes_a_sentiment_message_labelled_simulated() -> None:
    kind, ctx, _ = make()
    ctx.give(news("Bitcoin surges as buyers pile in", direction="up"))
    result = kind.step()
    score = make_analyzer().polarity_scores("Bitcoin surges as buyers pile in")["compound"]
    scored_at = ctx.published[0].pop("ts")  # when it was scored (now)
    assert scored_at > TS
    assert ctx.published == [
        {
            "type": "sentiment", "kind": "sentiment", "headline_ts": TS, "symbol": "BTC-USD", "score": score,
            "average": score, "trend": "flat", "label": "bullish",
            "headline": "Bitcoin surges as buyers pile in", "count": 1, "source": "simulated",
        }
    ]  # fmt: skip
    assert result.did_work and result.published == 1
    assert result.counters == {"headlines": 1, "feed_errors": 0}
    assert result.summary == f"BTC-USD bullish +{score:.2f} (1)"


def test_news_for_other_symbols_and_other_messages_are_ignored() -> None:
    kind, ctx, _ = make(symbols=["ETH-USD"])
    ctx.give(
        news("Bitcoin crashes", symbol="BTC-USD"),
        {"type": "bar", "ts": TS, "symbol": "ETH-USD", "close": 1.0, "source": "simulated"},
        news("", symbol="ETH-USD"),
        {"type": "news", "symbol": "ETH-USD"},
        news("Ether rallies", symbol="ETH-USD"),
    )
    result = kind.step()
    assert [(m["symbol"], m["headline"]) for m in ctx.published] == [("ETH-USD", "Ether rallies")]
    assert result.counters["headlines"] == 1


def test_without_symbols_news_for_every_symbol_is_scored() -> None:
    kind, ctx, _ = make(symbols=[])
    ctx.give(news("Bitcoin crashes"), news("SOL soars", symbol="SOL-USD"))
    kind.step()
    assert {m["symbol"]: m["label"] for m in ctx.published} == {"BTC-USD": "bearish", "SOL-USD": "bullish"}


def test_several_headlines_in_a_step_give_one_message_per_symbol_with_the_latest() -> None:
    kind, ctx, _ = make()
    ctx.give(
        news("Bitcoin crashes", ts="2024-05-01T12:00:00+00:00"),
        news("Ether slides", symbol="ETH-USD"),
        news("Bitcoin rebounds", ts="2024-05-01T12:01:00+00:00"),
    )
    result = kind.step()
    assert result.published == 2 and result.counters["headlines"] == 3
    btc = next(m for m in ctx.published if m["symbol"] == "BTC-USD")
    assert (btc["headline"], btc["headline_ts"], btc["count"]) == (
        "Bitcoin rebounds",
        "2024-05-01T12:01:00+00:00",
        2,
    )
    assert btc["score"] > 0 > btc["average"]


def test_news_without_a_source_is_never_passed_off_as_real() -> None:
    kind, ctx, _ = make()
    ctx.give({"type": "news", "ts": TS, "symbol": "BTC-USD", "headline": "Bitcoin jumps"})
    kind.step()
    assert ctx.published[0]["source"] == "simulated"


def test_nothing_new_publishes_nothing() -> None:
    kind, ctx, _ = make()
    result = kind.step()
    assert not result.did_work and result.published == 0 and ctx.published == []
    assert result.summary == "no new headlines"


def test_news_is_read_but_ignored_when_simulated_news_is_not_a_source(served: Feeds) -> None:
    feed = served.put("empty.xml", RSS.replace("ITEMS", ""))
    kind, ctx, _ = make({"sources": ["rss"], "feeds": [{"url": feed}]})
    ctx.give(news("Bitcoin surges"))
    assert kind.step().counters == {"headlines": 0, "feed_errors": 0}
    assert ctx.reads == 1 and ctx.inbox == [] and ctx.published == []


def test_simulated_market_news_flows_into_sentiment_labelled_simulated() -> None:
    market_ctx = FakeContext()
    market = MarketData(
        market_ctx, validate_config("market_data", {"seed": 3, "jump_probability": 1, "news_probability": 0})
    )
    for _ in range(5):
        market.step()
    items = [m for m in market_ctx.published if m["type"] == "news"]
    assert len(items) == 10

    kind, ctx, _ = make({"window": 1})
    for item in items:
        ctx.give(item)
        kind.step()
    assert len(ctx.published) == 10 and all(m["source"] == "simulated" for m in ctx.published)
    expected = {"up": "bullish", "down": "bearish"}
    assert [m["label"] for m in ctx.published] == [expected[i["direction"]] for i in items]


# --- feeds ---

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Crypto desk</title>
  <id>urn:desk</id>
  <updated>2024-05-01T12:30:00Z</updated>
  ENTRIES
</feed>
"""


def atom_entry(key: str, title: str, updated: str, summary: str = "") -> str:
    body = f"<summary type='html'>{summary}</summary>" if summary else ""
    return f"<entry><id>urn:{key}</id><title>{title}</title><updated>{updated}</updated>{body}</entry>"


RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel>
  <title>ETH wire</title><link>https://example.invalid/</link><description>d</description>
  ITEMS
</channel></rss>
"""


def rss_item(guid: str, title: str, date: str) -> str:
    return f"<item><guid>{guid}</guid><title>{title}</title><pubDate>{date}</pubDate></item>"


class Feeds:
    """Feed files in a folder served over HTTP; put() returns the URL of one."""

    def __init__(self, folder: Path, base: str) -> None:
        self.folder, self.base = folder, base
        # Each write a second later than the last: the server's Last-Modified has whole
        # seconds, and a rewrite in the same second would be "not modified".
        self._mtimes = itertools.count(1_700_000_000)

    def put(self, name: str, text: str) -> str:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        mtime = next(self._mtimes)
        os.utime(path, (mtime, mtime))
        return f"{self.base}/{name}"


@pytest.fixture
def served(tmp_path: Path, settings: Any) -> Iterator[Feeds]:
    """A plain HTTP server on 127.0.0.1 serving `tmp_path` (honours If-Modified-Since),
    its host allowed by FETCH_ALLOWED_HOSTS."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Feeds(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def atom_feed(*entries: str) -> str:
    return ATOM.replace("ENTRIES", "\n".join(entries))


# Newest first, as feeds list them.
DESK = [
    atom_entry("4", "Bitcoin and Ether rally together", "2024-05-01T12:30:00Z"),
    atom_entry("3", "Central bank leaves rates unchanged", "2024-05-01T12:20:00Z"),
    atom_entry("2", "Ethereum slides as traders sell", "2024-05-01T12:10:00Z"),
    atom_entry("1", "BTC plunges in early trade", "2024-05-01T12:00:00Z"),
]


def by_symbol(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["symbol"]: m for m in messages}


def test_an_atom_feed_maps_entries_to_symbols_by_keywords_oldest_first(served: Feeds) -> None:
    feed = served.put("desk.atom", atom_feed(*DESK))
    kind, ctx, _ = make({"sources": ["rss"], "feeds": [{"url": feed}]})
    result = kind.step()
    # The bank headline concerns neither symbol; the rally concerns both.
    assert result.counters == {"headlines": 4, "feed_errors": 0} and result.published == 2
    msgs = by_symbol(ctx.published)
    assert msgs["BTC-USD"]["headline"] == msgs["ETH-USD"]["headline"] == "Bitcoin and Ether rally together"
    assert msgs["BTC-USD"]["headline_ts"] == "2024-05-01T12:30:00+00:00"
    assert msgs["BTC-USD"]["count"] == msgs["ETH-USD"]["count"] == 2
    assert all(m["source"] == "rss" for m in ctx.published)
    # Older bearish, newer bullish: both rising.
    assert msgs["BTC-USD"]["trend"] == msgs["ETH-USD"]["trend"] == "rising"


def test_keywords_match_whole_words_only_and_can_be_configured(served: Feeds) -> None:
    feed = served.put(
        "desk.atom",
        atom_feed(
            atom_entry("a", "Whether the rally lasts, nobody knows", "2024-05-01T12:00:00Z"),
            atom_entry("b", "Satoshi coins surge", "2024-05-01T12:01:00Z"),
            atom_entry("c", "Solana slides", "2024-05-01T12:02:00Z"),
            atom_entry("d", "SOL rallies", "2024-05-01T12:03:00Z"),
        ),
    )
    config = {"sources": ["rss"], "feeds": [{"url": feed}], "keywords": {"btc-usd": ["Satoshi coins"]}}
    kind, ctx, _ = make(config, symbols=["BTC-USD", "ETH-USD", "SOL-USD"])
    kind.step()
    # "whether" is not "ether"; ETH-USD has no keywords once they are configured, so it
    # falls back to "eth"; SOL-USD matches its base code, not "Solana".
    assert {m["symbol"]: m["headline"] for m in ctx.published} == {
        "BTC-USD": "Satoshi coins surge",
        "SOL-USD": "SOL rallies",
    }


def test_an_rss_feed_with_fixed_symbols_gives_every_item_to_them(served: Feeds) -> None:
    items = [
        rss_item("g2", "Fees hit a record low", "Wed, 01 May 2024 12:10:00 GMT"),
        rss_item("g1", "Staking demand soars", "Wed, 01 May 2024 12:00:00 GMT"),
    ]
    feed = served.put("wire.xml", RSS.replace("ITEMS", "\n".join(items)))
    kind, ctx, _ = make({"sources": ["rss"], "feeds": [{"url": feed, "symbols": ["eth-usd"]}]})
    result = kind.step()
    assert result.counters["headlines"] == 2
    (msg,) = ctx.published
    assert (msg["symbol"], msg["headline"], msg["count"]) == ("ETH-USD", "Fees hit a record low", 2)
    assert msg["headline_ts"] == "2024-05-01T12:10:00+00:00" and msg["source"] == "rss"


def test_the_summary_is_scored_with_the_title_but_only_the_title_is_shown(served: Feeds) -> None:
    entry = atom_entry(
        "x", "Bitcoin update", "2024-05-01T12:00:00Z", summary="&lt;p&gt;Prices &lt;b&gt;surge&lt;/b&gt;"
    )
    feed = served.put("desk.atom", atom_feed(entry))
    kind, ctx, _ = make({"sources": ["rss"], "feeds": [{"url": feed}]})
    kind.step()
    (msg,) = ctx.published
    assert msg["headline"] == "Bitcoin update" and msg["score"] == kind.score("Bitcoin update. Prices surge")
    assert msg["score"] > 0


def test_feeds_are_polled_every_feed_poll_seconds_and_entries_are_not_scored_twice(served: Feeds) -> None:
    feed = served.put("desk.atom", atom_feed(*DESK[2:]))
    kind, ctx, clock = make({"sources": ["rss"], "feeds": [{"url": feed}], "feed_poll_seconds": 60})
    assert kind.step().counters["headlines"] == 2

    served.put("desk.atom", atom_feed(*DESK))  # two new entries at the top
    clock.now += 59
    assert kind.step().counters["headlines"] == 0  # not due yet
    clock.now += 1
    result = kind.step()
    assert result.counters["headlines"] == 2  # the rally for both symbols; the bank for none
    assert result.published == 2
    clock.now += 60
    assert kind.step().counters["headlines"] == 0  # nothing new: all remembered
    assert by_symbol(ctx.published)["ETH-USD"]["count"] == 2


def test_the_dedupe_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentiment_module, "SEEN_LIMIT", 3)
    kind, _, _ = make()
    assert all(kind._remember(k) for k in "abcd")
    assert not kind._remember("d") and kind._remember("a")  # "a" was forgotten
    assert len(kind._seen) == 3


def test_a_broken_or_missing_feed_is_counted_and_logged_without_stopping_the_others(
    served: Feeds, caplog: pytest.LogCaptureFixture
) -> None:
    broken = served.put("broken.xml", "<rss><channel><item><title>Bitcoin surges</ti")
    garbage = served.put("garbage.xml", "this is not a feed at all")
    good = served.put("desk.atom", atom_feed(DESK[0]))
    feeds = [{"url": url} for url in (broken, f"{served.base}/missing.xml", garbage, good)]
    kind, ctx, _ = make({"sources": ["rss", "simulated_news"], "feeds": feeds})
    with caplog.at_level(logging.WARNING, logger="tests.sentiment"):
        results = [kind.step() for _ in feeds]  # one download per step
    assert [r.counters["feed_errors"] for r in results] == [1, 1, 1, 0]
    assert {m["headline"] for m in ctx.published} == {"Bitcoin and Ether rally together"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and any("missing.xml" in w and "HTTP 404" in w for w in warnings)


def test_a_feed_that_is_all_errors_still_completes_the_step(served: Feeds) -> None:
    broken = served.put("broken.xml", "<feed xmlns='http://www.w3.org/2005/Atom'><entry>")
    kind, ctx, _ = make({"sources": ["rss"], "feeds": [{"url": broken}]})
    result = kind.step()
    assert result.counters == {"headlines": 0, "feed_errors": 1} and not result.did_work
    assert result.summary == "feed errors" and ctx.published == []


def test_http_feeds_are_downloaded_one_per_step_and_not_refetched_when_unchanged(served: Feeds) -> None:
    feeds = [
        {"url": served.put("a.atom", atom_feed(DESK[3]))},
        {"url": served.put("b.atom", atom_feed(DESK[2]))},
        {"url": f"{served.base}/none.atom"},
    ]
    kind, ctx, clock = make({"sources": ["rss"], "feeds": feeds, "feed_poll_seconds": 30})
    assert kind.step().counters == {"headlines": 1, "feed_errors": 0}  # a.atom only
    assert kind.step().counters == {"headlines": 1, "feed_errors": 0}  # then b.atom
    assert kind.step().counters == {"headlines": 0, "feed_errors": 1}  # then the 404
    assert [m["symbol"] for m in ctx.published] == ["BTC-USD", "ETH-USD"]
    clock.now += 30
    # Unchanged: the server answers 304 to If-Modified-Since; no error, nothing new.
    assert kind.step().counters == {"headlines": 0, "feed_errors": 0}


# --- config ---


def test_defaults() -> None:
    config = validate_config("sentiment", {})
    assert config.sources == ["simulated_news"] and config.feeds == [] and config.window == 20
    assert config.feed_poll_seconds == 300 and config.tick_seconds == 1.0
    assert config.keywords == {"BTC-USD": ["bitcoin", "btc"], "ETH-USD": ["ethereum", "ether", "eth"]}
    assert (config.bullish_threshold, config.bearish_threshold) == (0.05, -0.05)


def test_an_unknown_config_key_is_refused() -> None:
    assert "feed" in refusal({"feed": "https://example.invalid/rss"})


@pytest.mark.parametrize(("bullish", "bearish"), [(0.1, 0.1), (-0.2, 0.2)])
def test_a_bullish_threshold_not_above_the_bearish_one_is_refused(bullish: float, bearish: float) -> None:
    errors = refusal({"bullish_threshold": bullish, "bearish_threshold": bearish})
    assert "bullish_threshold" in errors["bearish_threshold"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"window": 0}, "window"),
        ({"feed_poll_seconds": 10}, "feed_poll_seconds"),
        ({"sources": []}, "sources"),
        ({"sources": ["twitter"]}, "sources.0"),
        ({"sources": ["rss"]}, "feeds"),
        ({"feeds": [{"url": "ftp://example.invalid/feed"}]}, "feeds.0.url"),
        ({"feeds": [{"url": "http:///feed"}]}, "feeds.0.url"),
        ({"feeds": [{"url": "<rss></rss>"}]}, "feeds.0.url"),
        ({"feeds": [{"url": "file:///etc/passwd"}]}, "feeds.0.url"),
        ({"feeds": [{"url": "/var/feeds/desk.xml"}]}, "feeds.0.url"),
        ({"feeds": [{"url": "http://127.0.0.1:8000/feed"}]}, "feeds.0.url"),
        ({"feeds": [{"url": "x.xml", "tags": []}]}, "feeds.0.tags"),
        ({"keywords": {"BTC-USD": [" "]}}, "keywords"),
        ({"bullish_threshold": 2}, "bullish_threshold"),
    ],
)
def test_bad_values_are_refused_naming_their_field(config: dict[str, Any], field: str) -> None:
    assert field in refusal(config)


def test_feed_urls_and_symbols_are_normalised() -> None:
    config = validate_config(
        "sentiment",
        {
            "sources": ["rss", "rss"],
            "feeds": [{"url": " https://example.invalid/rss ", "symbols": [" btc-usd"]}],
        },
    )
    assert config.sources == ["rss"]
    assert config.feeds[0].url == "https://example.invalid/rss" and config.feeds[0].symbols == ["BTC-USD"]

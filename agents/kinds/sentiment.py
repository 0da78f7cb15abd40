"""The `sentiment` kind: scores headlines with VADER and publishes a mood per symbol.

Headlines come from the simulated market's news messages (read from the agents this one
consumes; they are invented and say so) and/or from RSS/Atom feeds the user configures.
Each headline gets VADER's compound score (-1..+1) from an analyzer whose lexicon is
extended with FINANCE_LEXICON; per symbol the last `window` scores give a rolling
average, a trend and a bullish/bearish/neutral label. A sentiment message carries the
`source` of its latest headline, so a score driven by simulated news stays labelled
"simulated" downstream.
"""

from __future__ import annotations

import calendar
import html
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from agents.kinds import register
from agents.kinds.base import AgentKind, KindConfig, StepContext, StepResult, must_be_below
from agents.kinds.feeds import FeedConfig, FeedState, describe, fetch, normalize_symbol
from agents.net.fetch import FetchError
from agents.net.url_policy import display_url
from agents.validators import MAX_AGENT_SYMBOLS

# VADER's stock lexicon is tuned to social media and misses market verbs ("surges"
# scores 0, "rally" is unknown); these valences, on VADER's -4..+4 scale, make price
# news score with the right sign. VADER matches lowercase tokens without stemming, hence
# the inflections. "crash" (stock -1.7) is strengthened: in a market it means a collapse.
FINANCE_LEXICON: dict[str, float] = {
    # up
    "surge": 2.5, "surges": 2.5, "surged": 2.5, "surging": 2.5,
    "soar": 2.5, "soars": 2.5, "soared": 2.5, "soaring": 2.5,
    "rally": 2.0, "rallies": 2.0, "rallied": 2.0, "rallying": 2.0,
    "jump": 1.5, "jumps": 1.5, "jumped": 1.5,
    "climb": 1.5, "climbs": 1.5, "climbed": 1.5,
    "rise": 1.2, "rises": 1.2, "rose": 1.2, "rising": 1.2,
    "rebound": 1.5, "rebounds": 1.5, "rebounded": 1.5,
    "higher": 1.0, "bullish": 2.0, "inflows": 1.2, "breakout": 1.5,
    "upgrade": 1.5, "upgraded": 1.5, "outperform": 1.5, "outperforms": 1.5,
    # down
    "plunge": -2.8, "plunges": -2.8, "plunged": -2.8, "plunging": -2.8,
    "plummet": -3.0, "plummets": -3.0, "plummeted": -3.0,
    "crash": -3.0, "crashes": -3.0, "crashed": -3.0,
    "slide": -1.5, "slides": -1.5, "slid": -1.5,
    "slump": -2.0, "slumps": -2.0, "slumped": -2.0,
    "tumble": -2.2, "tumbles": -2.2, "tumbled": -2.2,
    "drops": -1.1, "dropped": -1.1,
    "fall": -1.2, "falls": -1.2, "fell": -1.2, "falling": -1.2,
    "dip": -0.8, "dips": -0.8, "slip": -0.8, "slips": -0.8,
    "selloff": -2.5, "sell-off": -2.5, "rout": -2.5, "bearish": -2.0,
    "outflows": -1.2, "liquidations": -1.5, "downgrade": -1.5, "downgraded": -1.5,
    "underperform": -1.5, "underperforms": -1.5, "wary": -0.8,
}  # fmt: skip

DEFAULT_KEYWORDS: dict[str, list[str]] = {
    "BTC-USD": ["bitcoin", "btc"],
    "ETH-USD": ["ethereum", "ether", "eth"],
}
# The newer half's mean must beat the older half's by this much to be a trend, so a
# single neutral headline does not flip rising/falling.
TREND_DEAD_BAND = 0.02
# Dedupe memory: entry keys remembered across polls (oldest forgotten first).
SEEN_LIMIT = 5000
MAX_HEADLINE_CHARS = 300
MAX_SUMMARY_CHARS = 1000
SUMMARY_SYMBOLS = 5

_TAG = re.compile(r"<[^>]+>")


def make_analyzer() -> SentimentIntensityAnalyzer:
    """A VADER analyzer whose lexicon knows FINANCE_LEXICON."""
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(FINANCE_LEXICON)
    return analyzer


def trend_of(scores: list[float], dead_band: float = TREND_DEAD_BAND) -> str:
    """'rising'/'falling' when the newer half's mean beats the older half's by the dead band."""
    half = len(scores) // 2
    if half == 0:
        return "flat"
    older, newer = scores[:half], scores[len(scores) - half :]
    change = sum(newer) / half - sum(older) / half
    if change > dead_band:
        return "rising"
    if change < -dead_band:
        return "falling"
    return "flat"


def label_of(average: float, bullish: float, bearish: float) -> str:
    if average >= bullish:
        return "bullish"
    if average <= bearish:
        return "bearish"
    return "neutral"


@dataclass
class _Headline:
    symbol: str
    text: str  # what is shown: the headline
    scored: str  # what is scored: headline (+ summary for feed entries)
    ts: str
    source: str


@register
class Sentiment(AgentKind):
    """Scores headlines per symbol; publishes score, rolling average, trend and label."""

    name = "sentiment"
    description = (
        "News sentiment per symbol: scores headlines with VADER (plus a finance lexicon) "
        "from the simulated market's news (labelled 'simulated') and/or RSS/Atom feeds, "
        "and publishes the latest score with a rolling average, trend and label."
    )
    roles = ("specialized_sentiment",)

    class Config(KindConfig):
        sources: list[Literal["simulated_news", "rss"]] = Field(
            default_factory=lambda: ["simulated_news"],
            min_length=1,
            description="Where headlines come from: news messages of the input agents "
            "(the simulated market's) and/or the RSS/Atom feeds below.",
        )
        feeds: list[FeedConfig] = Field(
            default_factory=list,
            max_length=50,
            validate_default=True,
            description="RSS/Atom feeds to poll (used when sources includes 'rss').",
        )
        keywords: dict[str, list[Annotated[str, Field(max_length=100)]]] = Field(
            default_factory=lambda: {k: list(v) for k, v in DEFAULT_KEYWORDS.items()},
            max_length=MAX_AGENT_SYMBOLS,
            description="Symbol -> words tying a feed headline to it (whole words, any case); "
            "a symbol not listed matches its base code (SOL for SOL-USD).",
        )
        feed_poll_seconds: float = Field(300, ge=30, le=86_400, description="Seconds between feed polls.")
        window: int = Field(20, ge=1, le=1000, description="Headlines in the rolling average, per symbol.")
        bullish_threshold: float = Field(
            0.05, ge=-1, le=1, description="Average at or above which the label is bullish."
        )
        bearish_threshold: float = Field(
            -0.05,
            ge=-1,
            le=1,
            description="Average at or below which the label is bearish; must be below bullish_threshold.",
        )

        @field_validator("sources")
        @classmethod
        def _dedupe_sources(cls, value: list[str]) -> list[str]:
            return list(dict.fromkeys(value))

        @field_validator("feeds")
        @classmethod
        def _check_feeds(cls, value: list[FeedConfig], info: ValidationInfo) -> list[FeedConfig]:
            # A field validator (not a model one) so the error names feeds, not the whole config.
            if "rss" in (info.data.get("sources") or []) and not value:
                raise ValueError("at least one feed is required when sources includes 'rss'")
            return value

        @field_validator("keywords")
        @classmethod
        def _check_keywords(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
            cleaned: dict[str, list[str]] = {}
            for symbol, words in value.items():
                kept = [w.strip().lower() for w in words if w.strip()]
                if not kept:
                    raise ValueError(f"{symbol}: needs at least one word")
                cleaned[normalize_symbol(symbol)] = kept
            return cleaned

        _bearish_below_bullish = field_validator("bearish_threshold")(must_be_below("bullish_threshold"))

    config: Config

    def __init__(
        self, ctx: StepContext, config: KindConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(ctx, config)
        # Injectable so tests can move time past feed_poll_seconds without sleeping.
        self.clock = clock
        # When a feed started failing, as shown on the card (wall time, not monotonic).
        self.wall_clock: Callable[[], float] = time.time
        self.analyzer = make_analyzer()
        self._symbols = {normalize_symbol(s) for s in ctx.symbols}
        self._scores: dict[str, deque[float]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._feeds = [FeedState(f) for f in self.config.feeds] if "rss" in self.config.sources else []
        self._patterns = self._keyword_patterns()

    def score(self, text: str) -> float:
        """VADER's compound score of `text`, -1 (negative) .. +1 (positive)."""
        return float(self.analyzer.polarity_scores(text)["compound"])

    def step(self) -> StepResult:
        """Score new news messages and due feeds; publish one sentiment message per touched symbol."""
        headlines: list[_Headline] = []
        # Read even when simulated news is off, so the cursor moves and edges show as live.
        inputs = self.ctx.read_inputs()
        if "simulated_news" in self.config.sources:
            headlines += self._from_news([m.data for m in inputs])
        feed_errors = 0
        if self._feeds:
            feed_headlines, feed_errors = self._poll_feeds()
            headlines += feed_headlines

        latest: dict[str, tuple[_Headline, float]] = {}
        scored: dict[str, float] = {}  # a feed entry about two symbols is scored once
        for headline in headlines:
            if headline.scored not in scored:
                scored[headline.scored] = round(self.score(headline.scored), 4)
            value = scored[headline.scored]
            self._window(headline.symbol).append(value)
            latest[headline.symbol] = (headline, value)

        parts = []
        for symbol, (headline, value) in latest.items():
            msg = self._message(symbol, headline, value)
            self.ctx.publish(msg)
            parts.append(f"{symbol} {msg['label']} {msg['average']:+.2f} ({msg['count']})")
        summary = ", ".join(parts[:SUMMARY_SYMBOLS])
        if len(parts) > SUMMARY_SYMBOLS:
            summary += f", +{len(parts) - SUMMARY_SYMBOLS} more"
        return StepResult(
            did_work=bool(headlines),
            published=len(latest),
            summary=summary or ("feed errors" if feed_errors else "no new headlines"),
            counters={"headlines": len(headlines), "feed_errors": feed_errors},
        )

    # --- scoring ---

    def _window(self, symbol: str) -> deque[float]:
        if symbol not in self._scores:
            self._scores[symbol] = deque(maxlen=self.config.window)
        return self._scores[symbol]

    def _message(self, symbol: str, headline: _Headline, value: float) -> dict[str, Any]:
        scores = list(self._scores[symbol])
        average = round(sum(scores) / len(scores), 4)
        return {
            "type": "sentiment",
            "kind": "sentiment",
            # When it was scored: consumers judge freshness by this. An RSS entry may be
            # hours old when first seen and would otherwise count as stale on arrival.
            "ts": _now(),
            "headline_ts": headline.ts,
            "symbol": symbol,
            "score": value,
            "average": average,
            "trend": trend_of(scores),
            "label": label_of(average, self.config.bullish_threshold, self.config.bearish_threshold),
            "headline": headline.text,
            "count": len(scores),
            "source": headline.source,
        }

    def _wanted(self, symbol: str) -> bool:
        return not self._symbols or symbol in self._symbols

    # --- simulated (or other agents') news ---

    def _from_news(self, messages: Iterable[dict[str, Any]]) -> list[_Headline]:
        out = []
        for data in messages:
            if data.get("type") != "news":
                continue  # bars and the like travel on the same stream
            symbol, text = data.get("symbol"), data.get("headline")
            if not isinstance(symbol, str) or not isinstance(text, str) or not text.strip():
                continue
            symbol = normalize_symbol(symbol)
            if not self._wanted(symbol):
                continue
            text = text.strip()[:MAX_HEADLINE_CHARS]
            source = data.get("source")
            # Unknown provenance is never passed off as real: it counts as simulated.
            source = source if isinstance(source, str) and source else "simulated"
            ts = data.get("ts") if isinstance(data.get("ts"), str) else _now()
            out.append(_Headline(symbol, text, text, ts, source))
        return out

    # --- feeds ---

    def _keyword_patterns(self) -> dict[str, re.Pattern[str]]:
        """Symbol -> whole-word pattern of its keywords, for feeds without fixed symbols."""
        keywords = dict(self.config.keywords)
        for symbol in self._symbols:
            # A symbol without keywords matches its base code, e.g. "sol" for SOL-USD.
            keywords.setdefault(symbol, [symbol.replace("/", "-").split("-")[0].lower()])
        patterns = {}
        for symbol, words in keywords.items():
            if not self._wanted(symbol):
                continue
            alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
            patterns[symbol] = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
        return patterns

    def _poll_feeds(self) -> tuple[list[_Headline], int]:
        """Poll at most one due feed per step (the others stay due for the next steps), so
        a step holds at most one download."""
        now = self.clock()
        feed = next((f for f in self._feeds if now >= f.due), None)
        if feed is None:
            return [], 0
        feed.due = now + self.config.feed_poll_seconds
        # The log is readable by viewers: the URL without any password, and the fetcher's
        # own sentences, which never tell whether a refused internal address exists.
        shown = display_url(feed.config.url)
        before = [f.problem() for f in self._feeds]
        try:
            headlines, errors = self._poll(feed, shown)
        finally:
            after = [f.problem() for f in self._feeds]
            if after != before:
                failing = [p for p in after if p is not None]
                self.ctx.report_status({"feed_errors": failing} if failing else None)
        return headlines, errors

    def _poll(self, feed: FeedState, shown: str) -> tuple[list[_Headline], int]:
        try:
            entries = fetch(feed)
        except FetchError as exc:
            self.ctx.log.warning("feed %s failed: %s", shown, exc)
            feed.failed(str(exc), self.wall_clock())
            return [], 1
        except Exception as exc:  # a bad feed (any way it is bad) must never stop the agent
            self.ctx.log.warning("feed %s failed: %s", shown, describe(exc))
            feed.failed(describe(exc), self.wall_clock())
            return [], 1
        if entries is None:
            feed.recovered()  # 304: it answers, and nothing is new
            return [], 0
        parsed_entries, bozo = entries
        errors = 0
        if bozo is not None:
            self.ctx.log.warning("feed %s is malformed: %s", shown, bozo)
            feed.failed(f"malformed: {bozo}", self.wall_clock())
            errors = 1
        else:
            feed.recovered()
        return self._from_entries(feed.config, parsed_entries), errors

    def _from_entries(self, feed: FeedConfig, entries: list[Any]) -> list[_Headline]:
        """New entries as headlines, oldest first, each for the symbols it concerns."""
        fresh = []
        for index, entry in enumerate(entries):
            title = _plain(entry.get("title") or "")[:MAX_HEADLINE_CHARS]
            key = entry.get("id") or entry.get("link") or title
            if not key or not self._remember(str(key)) or not title:
                continue
            summary = _plain(entry.get("summary") or "")[:MAX_SUMMARY_CHARS]
            when = entry.get("published_parsed") or entry.get("updated_parsed")
            fresh.append((when, index, title, summary))
        # Feeds list newest first; score oldest first so a symbol's latest is the newest.
        if all(when is not None for when, *_ in fresh):
            fresh.sort(key=lambda item: (calendar.timegm(item[0]), -item[1]))
        else:
            fresh.reverse()

        out = []
        for when, _index, title, summary in fresh:
            text = f"{title}. {summary}" if summary else title
            ts = datetime.fromtimestamp(calendar.timegm(when), UTC).isoformat() if when else _now()
            for symbol in self._symbols_of(feed, text):
                out.append(_Headline(symbol, title, text, ts, "rss"))
        return out

    def _symbols_of(self, feed: FeedConfig, text: str) -> list[str]:
        if feed.symbols:
            return [s for s in feed.symbols if self._wanted(s)]
        return [symbol for symbol, pattern in self._patterns.items() if pattern.search(text)]

    def _remember(self, key: str) -> bool:
        """True the first time `key` is seen; memory is bounded to SEEN_LIMIT keys."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)
        return True


def _plain(value: str) -> str:
    """Text without HTML tags, entities or runs of whitespace."""
    return " ".join(html.unescape(_TAG.sub(" ", value)).split())


def _now() -> str:
    return datetime.now(UTC).isoformat()

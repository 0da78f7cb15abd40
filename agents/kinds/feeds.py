"""Fetching RSS/Atom feeds for the sentiment agent, bounded in time and size.

Kept apart from scoring: this is the only part that touches the network. Feeds are
fetched by agents.net.fetch, under the policy every operator-given URL follows (http or
https to a public host, or one in FETCH_ALLOWED_HOSTS; no local files), and feedparser
only parses the bytes: given a string it would fetch URLs and open paths by itself.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Annotated, Any

import feedparser
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.net.fetch import fetch as fetch_url
from agents.net.url_policy import FetchableUrl, display_url
from agents.validators import MAX_AGENT_SYMBOLS

# A feed download must not hold the step past the loop's lease (2 ticks + LEASE_EXTRA_SECONDS,
# 12 s by default): one feed per step, the whole download (redirects included) bounded.
FETCH_DEADLINE_SECONDS = 5.0
MAX_FEED_BYTES = 5_000_000
USER_AGENT = "tradingsite-sentiment/1.0 (+paper trading)"
# feedparser flags a feed "bozo" for a missing or contradicted Content-Type/charset too;
# when the XML itself parsed, those feeds work, so they are not counted as errors.
SOFT_FEED_PROBLEMS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


def normalize_symbol(value: str) -> str:
    """Symbols compare trimmed and upper-case, so ' btc-usd' is BTC-USD."""
    return value.strip().upper()


class FeedConfig(BaseModel):
    """One RSS/Atom feed and the symbols its headlines concern."""

    model_config = ConfigDict(extra="forbid")

    url: FetchableUrl = Field(
        ...,
        max_length=2000,
        description="http(s) URL of an RSS/Atom feed on a public host (private hosts only if "
        "listed in the FETCH_ALLOWED_HOSTS setting).",
    )
    symbols: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list,
        max_length=MAX_AGENT_SYMBOLS,
        description="Symbols every headline of this feed concerns; empty matches each headline by keywords.",
    )

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        return [normalize_symbol(s) for s in value if s.strip()]


class FeedState:
    """A feed's polling state: when it is due, and the validators for a conditional GET."""

    def __init__(self, config: FeedConfig) -> None:
        self.config = config
        self.due = float("-inf")  # poll on the first step
        self.etag: str | None = None
        self.modified: str | None = None
        # What went wrong at the last poll (None: it worked), and since when (Unix
        # seconds) polls have been failing: shown on the agent's card until one works.
        self.error: str | None = None
        self.failing_since: float | None = None

    def failed(self, error: str, now: float) -> None:
        self.error = error
        if self.failing_since is None:
            self.failing_since = now

    def recovered(self) -> None:
        self.error = self.failing_since = None

    def problem(self) -> dict[str, Any] | None:
        """This feed's trouble for the card: which URL (no password), what, since when."""
        if self.error is None or self.failing_since is None:
            return None
        since = datetime.fromtimestamp(self.failing_since, UTC).isoformat()
        return {"url": display_url(self.config.url), "error": self.error, "since": since}


def fetch(feed: FeedState) -> tuple[list[Any], str | None] | None:
    """The feed's entries and a description of any parse problem; None if not modified.

    Raises agents.net.fetch.FetchError (a sentence fit for the agent's log) if the feed
    cannot be fetched, refused by the URL policy included.
    """
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5",
    }
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.modified:
        headers["If-Modified-Since"] = feed.modified
    response = fetch_url(
        feed.config.url, headers=headers, max_bytes=MAX_FEED_BYTES, timeout=FETCH_DEADLINE_SECONDS
    )
    if response.status == 304:
        return None  # the entries already read stand; nothing new to score
    # Only the validators of a feed that parsed are kept (below): a broken answer must
    # not make the next poll "not modified" and hide the feed's recovery.
    etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    # A stream, as feedparser's docs advise: a string would be taken for a URL or a path.
    parsed = feedparser.parse(
        io.BytesIO(response.body),
        response_headers={
            "content-location": response.url,
            "content-type": response.headers.get("Content-Type", ""),
        },
    )
    problem = None
    exc = parsed.get("bozo_exception")
    if not parsed.get("version") and not parsed.get("entries"):
        problem = describe(exc) or "not an RSS or Atom feed"
    elif parsed.get("bozo") and not isinstance(exc, SOFT_FEED_PROBLEMS):
        problem = describe(exc) or "not a well-formed feed"
    if problem is None:
        feed.etag, feed.modified = etag, modified
    return list(parsed.get("entries") or []), problem


def describe(exc: object) -> str:
    if exc is None:
        return ""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

"""Fetching RSS/Atom feeds for the sentiment agent, bounded in time and size.

Kept apart from scoring: this is the only part that touches the network or the disk.
"""

from __future__ import annotations

import io
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import feedparser
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.validators import MAX_AGENT_SYMBOLS

# A feed download must not hold the step past the loop's lease (2 ticks + LEASE_EXTRA_SECONDS,
# 12 s by default): one network feed per step, each socket wait and the whole read bounded.
FETCH_TIMEOUT_SECONDS = 3.0
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

    url: str = Field(
        ..., max_length=2000, description="http(s) URL, file:// URL or local file path of an RSS/Atom feed."
    )
    symbols: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list,
        max_length=MAX_AGENT_SYMBOLS,
        description="Symbols every headline of this feed concerns; empty matches each headline by keywords.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("required")
        scheme = urllib.parse.urlsplit(value).scheme.lower()
        if scheme in ("http", "https"):
            if not urllib.parse.urlsplit(value).netloc:
                raise ValueError("URL has no host")
        elif scheme not in ("", "file") and not re.fullmatch(r"[a-z]", scheme):  # "C:" is a path
            raise ValueError("must be an http(s) URL or a file path")
        if "<" in value or "\n" in value:
            raise ValueError("must be an http(s) URL or a file path, not feed text")
        return value

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


def fetch(feed: FeedState) -> tuple[list[Any], str | None] | None:
    """The feed's entries and a description of any parse problem; None if not modified."""
    url = feed.config.url
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    headers: dict[str, str] | None = None
    if scheme in ("http", "https"):
        # Fetched here rather than by feedparser.parse(url), which has no timeout: a
        # hanging server would hold the step past the lease. The bytes go to feedparser
        # in a stream, as its docs advise, so no string is taken for a URL or a path.
        request = urllib.request.Request(
            url,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5",
            },
        )
        if feed.etag:
            request.add_header("If-None-Match", feed.etag)
        if feed.modified:
            request.add_header("If-Modified-Since", feed.modified)
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
                data = _read_limited(response, time.monotonic() + FETCH_DEADLINE_SECONDS)
                feed.etag = response.headers.get("ETag")
                feed.modified = response.headers.get("Last-Modified")
                headers = {
                    "content-location": url,
                    "content-type": response.headers.get("Content-Type", ""),
                }
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None
            raise
    else:
        with _local_path(url).open("rb") as handle:
            data = handle.read(MAX_FEED_BYTES + 1)
        if len(data) > MAX_FEED_BYTES:
            raise ValueError(f"larger than {MAX_FEED_BYTES} bytes")
    parsed = feedparser.parse(io.BytesIO(data), response_headers=headers)
    problem = None
    exc = parsed.get("bozo_exception")
    if not parsed.get("version") and not parsed.get("entries"):
        problem = describe(exc) or "not an RSS or Atom feed"
    elif parsed.get("bozo") and not isinstance(exc, SOFT_FEED_PROBLEMS):
        problem = describe(exc) or "not a well-formed feed"
    return list(parsed.get("entries") or []), problem


def _read_limited(response: Any, deadline: float) -> bytes:
    """Read at most MAX_FEED_BYTES before `deadline`, so a slow or huge feed cannot stall the step."""
    chunks, size = [], 0
    while True:
        chunk = response.read(65_536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            raise ValueError(f"larger than {MAX_FEED_BYTES} bytes")
        if time.monotonic() > deadline:
            raise TimeoutError("took too long to download")


def _local_path(url: str) -> Path:
    """The file a file:// URL or a plain path names."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "file":
        return Path(urllib.request.url2pathname(parts.path))
    return Path(url).expanduser()


def describe(exc: object) -> str:
    if exc is None:
        return ""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

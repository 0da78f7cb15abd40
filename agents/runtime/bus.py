"""Reading the streams of an agent's inputs (docs/architecture.md "Data between agents").

Each producer writes `stream:agent:<id>` (fenced, see lease.py). A consumer reads the
streams of its `inputs_from` with its own cursor per producer, kept in Redis
(`cursor:agent:<consumer>`) so a restarted loop continues where it stopped instead of
replaying or skipping. Losing the cursors (Redis flushed) replays what the capped
streams still hold, which kinds must tolerate (they keep only the latest values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from agents.runtime import keys

# How much history a consumer without a cursor starts from: enough to warm indicators up.
DEFAULT_START = "0-0"


@dataclass(frozen=True)
class InputMessage:
    producer: str  # agent_id of the producer
    id: str  # stream entry id
    data: dict[str, Any]


class InputReader:
    """Non-blocking reads of every input stream, oldest first, advancing the cursors."""

    def __init__(
        self, client: redis.Redis, consumer: str, producers: list[str], consumer_kind: str = "agent"
    ) -> None:
        self.client = client
        self.consumer = consumer
        self.producers = sorted(producers)
        self._cursor_key = keys.cursor(consumer_kind, consumer)
        self._cursors: dict[str, str] = {}

    def _load_cursors(self) -> None:
        stored = self.client.hgetall(self._cursor_key) if self.producers else {}
        self._cursors = {p: stored.get(p, DEFAULT_START) for p in self.producers}

    def read(self, count: int = 1000) -> list[InputMessage]:
        """Up to `count` new messages per producer; empty when nothing is new."""
        if not self.producers:
            return []
        if not self._cursors:
            self._load_cursors()
        streams = {keys.stream("agent", p): self._cursors[p] for p in self.producers}
        reply = self.client.xread(streams, count=count)
        out: list[InputMessage] = []
        by_key = {keys.stream("agent", p): p for p in self.producers}
        for stream_key, entries in reply:
            producer = by_key[stream_key]
            for entry_id, fields in entries:
                try:
                    data = json.loads(fields["data"])
                except (KeyError, ValueError):
                    continue  # not ours to interpret; skip rather than stall on it
                out.append(InputMessage(producer, entry_id, data))
            if entries:
                self._cursors[producer] = entries[-1][0]
        if out:
            self.client.hset(self._cursor_key, mapping=self._cursors)
        return out


def newest_messages(client: redis.Redis, producers: list[str], count: int) -> dict[str, list[dict[str, Any]]]:
    """The newest `count` messages of each producer's stream, newest first, in one round
    trip (entries that are not a JSON object are skipped). Raises redis.RedisError."""
    if not producers:
        return {}
    pipe = client.pipeline(transaction=False)
    for producer in producers:
        pipe.xrevrange(keys.stream("agent", producer), count=count)
    out: dict[str, list[dict[str, Any]]] = {}
    for producer, entries in zip(producers, pipe.execute(), strict=True):
        messages = []
        for _id, fields in entries:
            try:
                data = json.loads(fields["data"])
            except (KeyError, TypeError, ValueError):
                continue
            if isinstance(data, dict):
                messages.append(data)
        out[producer] = messages
    return out


def edge_counts(messages: list[InputMessage]) -> dict[str, int]:
    """Messages per producer, as metrics counters `in.<producer>` (the page's edge rates)."""
    counts: dict[str, int] = {}
    for message in messages:
        name = f"in.{message.producer}"
        counts[name] = counts.get(name, 0) + 1
    return counts

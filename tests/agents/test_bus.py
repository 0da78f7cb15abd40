"""Reading input streams with persistent cursors (real Redis)."""

import json

from agents.runtime import keys
from agents.runtime.bus import InputReader, edge_counts


def publish(client, producer: str, **data) -> str:
    return client.xadd(keys.stream("agent", producer), {"data": json.dumps(data)})


def test_reads_every_input_oldest_first_and_only_new_messages_after(redis_client):
    publish(redis_client, "feed_a", n=1)
    publish(redis_client, "feed_b", n=2)
    reader = InputReader(redis_client, "tech", ["feed_a", "feed_b"])
    first = reader.read()
    assert sorted((m.producer, m.data["n"]) for m in first) == [("feed_a", 1), ("feed_b", 2)]
    assert reader.read() == []
    publish(redis_client, "feed_a", n=3)
    assert [m.data["n"] for m in reader.read()] == [3]


def test_a_restarted_consumer_continues_from_its_cursor(redis_client):
    publish(redis_client, "feed_a", n=1)
    InputReader(redis_client, "tech", ["feed_a"]).read()
    publish(redis_client, "feed_a", n=2)
    assert [m.data["n"] for m in InputReader(redis_client, "tech", ["feed_a"]).read()] == [2]


def test_an_agent_without_inputs_reads_nothing(redis_client):
    assert InputReader(redis_client, "feed", []).read() == []


def test_edge_counts_are_per_producer(redis_client):
    for n in range(3):
        publish(redis_client, "feed_a", n=n)
    publish(redis_client, "feed_b", n=9)
    messages = InputReader(redis_client, "tech", ["feed_a", "feed_b"]).read()
    assert edge_counts(messages) == {"in.feed_a": 3, "in.feed_b": 1}

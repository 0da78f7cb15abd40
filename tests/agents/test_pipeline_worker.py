"""The demo pipeline in a real worker: market data -> technical + sentiment -> decision (-> execution)."""

import json

from agents.models import Agent
from agents.runtime import keys
from agents.states import Status
from control import services
from control.demo import seed_agents
from tests.conftest import wait_for


def messages(client, agent_id: str) -> list[dict]:
    return [json.loads(f["data"]) for _id, f in client.xrange(keys.stream("agent", agent_id))]


def test_the_demo_graph_turns_simulated_prices_into_directives(celery_worker, redis_client):
    seed_agents()
    for agent in Agent.objects.all():
        # Fast ticks, and news on most steps, so the test sees every edge carry data.
        config = {**agent.config, "tick_seconds": 0.1}
        if agent.kind == "market_data":
            config["news_probability"] = 0.5
        services.update_agent_config(agent.agent_id, config)
    started = services.start_system()
    assert started.changed[0] == "market_data_sim"  # upstream first
    assert set(started.changed) == {
        "market_data_sim",
        "technical_sim",
        "sentiment_news",
        "decision_main",
        "execution_paper",
    }
    wait_for(lambda: Agent.objects.filter(status=Status.RUNNING).count() == 5, what="all five running")

    # Sentiment may speak first; technical joins once its indicators have warmed up.
    with_technical = wait_for(
        lambda: [d for d in messages(redis_client, "decision_main") if "technical_sim" in d["reason"]],
        timeout=30,
        what="a directive based on the technical signal",
    )
    directive = with_technical[0]
    assert directive["type"] == "directive" and directive["action"] in ("buy", "sell", "hold")
    assert directive["source"] == "simulated"  # simulated prices stay labelled all the way down
    assert directive["price"] is not None
    assert {m["type"] for m in messages(redis_client, "sentiment_news")} == {"sentiment"}
    # Every edge carried messages: the consumers counted them per producer.
    edges = {
        "technical_sim": "in.market_data_sim",
        "sentiment_news": "in.market_data_sim",
        "decision_main": "in.technical_sim",
    }
    for consumer, counter in edges.items():
        wait_for(
            lambda c=consumer, k=counter: int(redis_client.hget(keys.metrics("agent", c), k) or 0) > 0,
            what=f"{consumer} to count {counter}",
        )
    wait_for(
        lambda: int(redis_client.hget(keys.metrics("agent", "decision_main"), "in.sentiment_news") or 0) > 0,
        timeout=30,
        what="sentiment to reach the decision",
    )

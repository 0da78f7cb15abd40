"""The example kind of docs/agent-kinds.md, registered through AGENT_KIND_MODULES in a real
worker, runs in the graph like a built-in kind: it reads bars and publishes signals."""

import json

from agents.kinds import kind_names
from agents.models import Agent
from agents.runtime import keys
from agents.states import Status
from control import services
from tests.conftest import wait_for


def test_a_kind_named_in_agent_kind_modules_registers_and_runs_in_a_worker(
    spawn_worker, make_agent, redis_client
):
    # Not a built-in: only a process whose settings name its module knows it.
    assert "momentum" not in kind_names()
    spawn_worker(env={"AGENT_KIND_MODULES": "agents.kinds.examples.momentum"})
    feed = make_agent("feed", config={"source": "simulated", "tick_seconds": 0.1, "seed": 3})
    momentum = make_agent(
        "momentum_btc",
        kind="momentum",
        role="specialized_technical",
        config={"window": 3, "full_scale": 0.001, "tick_seconds": 0.1},
    )
    momentum.inputs_from.set([feed])

    services.start_agent("feed")
    services.start_agent("momentum_btc")

    def signals() -> list[dict]:
        entries = redis_client.xrange(keys.stream("agent", "momentum_btc"))
        return [json.loads(fields["data"]) for _id, fields in entries]

    found = wait_for(signals, timeout=20, what="a signal from the example kind")
    assert Agent.objects.get(pk="momentum_btc").status == Status.RUNNING
    first = found[0]
    assert first["type"] == "signal" and first["kind"] == "technical" and first["symbol"] == "BTC-USD"
    assert -1 <= first["signal"] <= 1
    assert first["source"] == "simulated"

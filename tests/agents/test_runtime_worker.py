"""Agent loops in a real Celery worker against real Redis and the test database."""

import json
import time

from django.conf import settings

from agents.models import Agent
from agents.runtime import keys
from agents.states import Status
from control import services
from tests.conftest import wait_for


def status_of(agent_id: str) -> Agent:
    return Agent.objects.get(pk=agent_id)


def running(agent_id: str, run_id: str | None = None):
    def check():
        agent = status_of(agent_id)
        if agent.status == Status.RUNNING and (run_id is None or agent.run_id == run_id):
            return agent
        return None

    return check


def test_started_agent_heartbeats_and_publishes_bars(celery_worker, make_agent, redis_client):
    agent = make_agent("hb_feed", symbols=["BTC-USD", "ETH-USD"])
    services.start_agent(agent.agent_id)
    wait_for(running(agent.agent_id), what="status running")
    beat = wait_for(lambda: redis_client.get(keys.heartbeat("agent", agent.agent_id)), what="a heartbeat")
    assert time.time() - float(beat) < 5
    stream = keys.stream("agent", agent.agent_id)
    wait_for(lambda: redis_client.xlen(stream) >= 4, what="bars on the stream")
    messages = [json.loads(fields["data"]) for _id, fields in redis_client.xrange(stream)]
    assert {m["symbol"] for m in messages} == {"BTC-USD", "ETH-USD"}
    assert all(m["source"] == "simulated" for m in messages)
    # The database heartbeat and metrics snapshot follow (at most every HEARTBEAT_DB_SECONDS).
    snapshot = wait_for(
        lambda: status_of(agent.agent_id).metrics.get("steps"), what="metrics in the database"
    )
    assert snapshot >= 1


def test_stop_is_confirmed_by_the_loop_within_one_tick(celery_worker, make_agent):
    tick = 2.0
    agent = make_agent("stop_feed", config={"source": "simulated", "tick_seconds": tick})
    services.start_agent(agent.agent_id)
    wait_for(running(agent.agent_id), what="status running")
    asked = time.monotonic()
    # The loop may confirm before the service even re-reads the row.
    assert services.stop_agent(agent.agent_id).status in (Status.STOPPING, Status.STOPPED)
    wait_for(lambda: status_of(agent.agent_id).status == Status.STOPPED, timeout=tick, interval=0.005)
    confirmed_after = time.monotonic() - asked
    assert confirmed_after < tick, f"stop took {confirmed_after:.3f}s, more than one tick ({tick}s)"
    assert (
        (settings.LOG_DIR / f"{agent.agent_id}.log").read_text().rstrip().endswith("stopped: stop requested")
    )


def test_a_failing_step_puts_the_agent_in_error_and_others_keep_running(celery_worker, make_agent, tmp_path):
    healthy = make_agent("ok_feed")
    broken = make_agent("bad_feed", kind="no_such_kind")
    services.start_agent(healthy.agent_id)
    services.start_agent(broken.agent_id)
    failed = wait_for(
        lambda: (a := status_of(broken.agent_id)).status == Status.ERROR and a, what="error status"
    )
    assert "no_such_kind" in failed.error_message
    assert wait_for(running(healthy.agent_id))
    # Start works again from error once the cause is fixed.
    Agent.objects.filter(pk=broken.agent_id).update(kind="market_data")
    services.start_agent(broken.agent_id)
    assert wait_for(running(broken.agent_id), what="restart from error")

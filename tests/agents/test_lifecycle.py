"""agents.runtime.lifecycle: every state write is conditional on the run (and status) read."""

import pytest

from agents.models import Agent
from agents.runtime import keys, lifecycle
from agents.states import Desired, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(make_agent) -> Agent:
    make_agent("feed")
    Agent.objects.filter(pk="feed").update(desired_state=Desired.RUNNING, status=Status.RUNNING, run_id="r1")
    return Agent.objects.get(pk="feed")


def state() -> tuple[str, str, str]:
    return Agent.objects.values_list("desired_state", "status", "run_id").get(pk="feed")


def test_a_write_for_another_run_or_status_changes_nothing(running):
    stale = Agent.objects.get(pk="feed")
    stale.run_id = "r0"  # what a caller read before the row moved on
    refused = [
        lifecycle.claim_start(stale, "r2", Desired.RUNNING),
        lifecycle.request_stop(stale),
        lifecycle.set_desired(stale, Desired.PAUSED),
        lifecycle.record_task(Agent, "feed", "r0", "task"),
        lifecycle.claim_relaunch(Agent, "feed", Status.RUNNING, "r0", "r2"),
        lifecycle.claim_relaunch(Agent, "feed", Status.STOPPED, "r1", "r2"),
        lifecycle.mark_status(Agent, "feed", "r1", Status.STOPPING, Status.STOPPED),
        lifecycle.fence(Agent, "feed", "r1", "r2", "fenced"),  # fences only a stopping loop
        lifecycle.loop_status(Agent, "feed", "r0", Status.ERROR, "late"),
        lifecycle.loop_heartbeat(Agent, "feed", "r0", {"metrics": {"steps": 1}}),
    ]
    assert refused == [False] * len(refused)
    assert state() == (Desired.RUNNING, Status.RUNNING, "r1")
    assert Agent.objects.get(pk="feed").task_id == ""


def test_a_write_for_the_current_run_is_made(running):
    assert lifecycle.loop_status(Agent, "feed", "r1", Status.PAUSED)
    assert lifecycle.request_stop(Agent.objects.get(pk="feed"))
    assert state() == (Desired.STOPPED, Status.STOPPING, "r1")
    assert lifecycle.fence(Agent, "feed", "r1", "r2", "fenced")
    assert state() == (Desired.STOPPED, Status.STOPPED, "r2")
    # A row that says its loop ended takes no heartbeat from it.
    assert not lifecycle.loop_heartbeat(Agent, "feed", "r2", {"metrics": {}})


def test_the_flags_have_one_format(redis_client):
    lifecycle.write_flags("agent", "feed", Desired.RUNNING, "r1", "3")
    pipe = redis_client.pipeline()
    lifecycle.queue_flags(pipe, "agent", "other", Desired.RUNNING, "r1", 3)
    lifecycle.queue_flags(pipe, "session", "alpha", Desired.PAUSED, "r9", None)
    pipe.execute()
    written, queued = (redis_client.hgetall(keys.flags("agent", rid)) for rid in ("feed", "other"))
    assert written == queued == {"desired": Desired.RUNNING, "run_id": "r1", "config_rev": "3"}
    assert redis_client.hgetall(keys.flags("session", "alpha")) == {
        "desired": Desired.PAUSED,
        "run_id": "r9",
        "config_rev": "",
    }

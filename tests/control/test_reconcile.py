"""The reconciler: desired vs observed, against real Redis and the database (no worker)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Agent, LogEntry
from agents.runtime import keys
from agents.states import Desired, Status
from control.reconcile import reconcile, stale_heartbeats
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


def put(make_agent, agent_id="feed", *, status, desired, age_seconds=0.0, run_id="run-1"):
    agent = make_agent(agent_id)
    Agent.objects.filter(pk=agent.pk).update(
        status=status,
        desired_state=desired,
        run_id=run_id,
        status_changed_at=timezone.now() - timedelta(seconds=age_seconds),
    )
    return Agent.objects.get(pk=agent.pk)


def hold_lease(redis_client, agent_id, token="run-1:abc"):
    redis_client.set(keys.lease("agent", agent_id), token, px=60_000)


def test_a_lost_running_loop_is_relaunched_with_a_new_run(make_agent, django_capture_on_commit_callbacks):
    put(make_agent, status=Status.RUNNING, desired=Desired.RUNNING)
    with django_capture_on_commit_callbacks() as launches:
        report = reconcile()
    agent = Agent.objects.get(pk="feed")
    assert report.restarted == ["feed"]
    assert (agent.status, agent.desired_state) == (Status.STARTING, Desired.RUNNING)
    assert agent.run_id != "run-1"
    assert len(launches) == 1
    assert LogEntry.objects.filter(source="reconciler", message__contains="was lost").exists()


def test_a_live_loop_is_left_alone(make_agent, redis_client, django_capture_on_commit_callbacks):
    put(make_agent, status=Status.RUNNING, desired=Desired.RUNNING)
    hold_lease(redis_client, "feed")
    with django_capture_on_commit_callbacks() as launches:
        report = reconcile()
    assert report.restarted == [] and launches == []
    assert Agent.objects.get(pk="feed").run_id == "run-1"


def test_a_recent_start_is_given_time_to_reach_a_worker(make_agent, django_capture_on_commit_callbacks):
    put(make_agent, status=Status.STARTING, desired=Desired.RUNNING, age_seconds=1)
    with django_capture_on_commit_callbacks():
        assert reconcile().restarted == []
        # restore (no grace) relaunches it: after a restart the queued task may be gone.
        assert reconcile(start_grace_seconds=0).restarted == ["feed"]


def test_an_agent_in_error_waits_for_a_person(make_agent, django_capture_on_commit_callbacks):
    put(make_agent, status=Status.ERROR, desired=Desired.RUNNING)
    with django_capture_on_commit_callbacks():
        assert reconcile().restarted == []
    assert Agent.objects.get(pk="feed").status == Status.ERROR


def test_a_stopped_agent_without_a_loop_is_marked_stopped(make_agent):
    put(make_agent, status=Status.STOPPING, desired=Desired.STOPPED)
    assert reconcile().marked_stopped == ["feed"]
    assert Agent.objects.get(pk="feed").status == Status.STOPPED


def test_a_stray_loop_is_told_to_stop(make_agent, redis_client):
    put(make_agent, status=Status.RUNNING, desired=Desired.STOPPED)
    hold_lease(redis_client, "feed")
    wakeups = redis_client.pubsub(ignore_subscribe_messages=True)
    wakeups.subscribe(keys.wakeups())
    try:
        reconcile()
        assert Agent.objects.get(pk="feed").status == Status.STOPPING
        assert redis_client.hget(keys.flags("agent", "feed"), "desired") == Desired.STOPPED
        woken = wait_for(lambda: wakeups.get_message(timeout=0.1), what="the loop's wake-up")
        assert woken["data"] == "agent:feed"
    finally:
        wakeups.close()


def test_a_loop_that_does_not_confirm_its_stop_is_fenced_and_reported(make_agent, redis_client):
    put(make_agent, status=Status.STOPPING, desired=Desired.STOPPED, age_seconds=3600)
    hold_lease(redis_client, "feed")
    report = reconcile()
    agent = Agent.objects.get(pk="feed")
    assert report.fenced == ["feed"]
    assert agent.status == Status.STOPPED
    assert agent.run_id != "run-1"  # the stuck loop's writes now match nothing
    assert "did not confirm its stop" in agent.error_message
    assert not redis_client.exists(keys.lease("agent", "feed"))
    assert LogEntry.objects.filter(source="reconciler", level=40).exists()


def test_flags_are_rebuilt_from_the_database_after_redis_lost_them(make_agent, redis_client):
    put(make_agent, status=Status.RUNNING, desired=Desired.RUNNING)
    hold_lease(redis_client, "feed")
    redis_client.delete(keys.flags("agent", "feed"))
    reconcile()
    assert redis_client.hgetall(keys.flags("agent", "feed")) == {
        "desired": "running",
        "run_id": "run-1",
        "config_rev": "1",
    }


def test_reconcile_is_idempotent(make_agent, django_capture_on_commit_callbacks):
    put(make_agent, status=Status.RUNNING, desired=Desired.RUNNING)
    put(make_agent, "gone", status=Status.STOPPING, desired=Desired.STOPPED)
    with django_capture_on_commit_callbacks():
        first = reconcile()
        second = reconcile()
    assert (first.restarted, first.marked_stopped) == (["feed"], ["gone"])
    # The relaunched loop is "starting" within its grace period; nothing else to do.
    assert (second.restarted, second.marked_stopped, second.fenced) == ([], [], [])


def test_two_reconcilers_racing_start_one_incarnation(make_agent, django_capture_on_commit_callbacks):
    agent = put(make_agent, status=Status.RUNNING, desired=Desired.RUNNING)
    from control.reconcile import KINDS, _relaunch

    with django_capture_on_commit_callbacks() as launches:
        won = _relaunch(KINDS[0], agent.agent_id, Status.RUNNING, "run-1", Desired.RUNNING, 1)
        lost = _relaunch(KINDS[0], agent.agent_id, Status.RUNNING, "run-1", Desired.RUNNING, 1)
    assert (won, lost) == (True, False)
    assert len(launches) == 1


def test_stale_heartbeats_counts_running_agents_that_stopped_ticking(make_agent, redis_client):
    put(make_agent, "quiet", status=Status.RUNNING, desired=Desired.RUNNING, age_seconds=600)
    put(make_agent, "ticking", status=Status.RUNNING, desired=Desired.RUNNING, age_seconds=600)
    put(make_agent, "fresh", status=Status.STARTING, desired=Desired.RUNNING)
    redis_client.set(keys.heartbeat("agent", "ticking"), str(timezone.now().timestamp()))
    assert stale_heartbeats() == ["quiet"]


def test_a_relaunched_lost_loop_stays_stale_until_a_loop_ticks(make_agent, redis_client, settings):
    """A frozen worker: the loop's heartbeat is old, and the reconciler's relaunch (status
    starting, just now) does not make it fresh; a loop that ended cleanly (no heartbeat)
    and was started just now is not stale."""
    settings.HEARTBEAT_STALE_SECONDS = 2
    put(make_agent, "frozen", status=Status.RUNNING, desired=Desired.RUNNING, age_seconds=60)
    redis_client.set(keys.heartbeat("agent", "frozen"), str(timezone.now().timestamp() - 30))
    put(make_agent, "restarted", status=Status.STARTING, desired=Desired.RUNNING)
    assert stale_heartbeats() == ["frozen"]
    reconcile(start_grace_seconds=0)
    assert Agent.objects.get(pk="frozen").status == Status.STARTING
    assert stale_heartbeats() == ["frozen"], "the relaunch hid the stale loop"
    redis_client.set(keys.heartbeat("agent", "frozen"), str(timezone.now().timestamp()))
    assert stale_heartbeats() == []


def test_a_paused_session_is_relaunched_paused(monkeypatch, django_capture_on_commit_callbacks):
    from control import reconcile as reconcile_module
    from sessions.models import TradingSession

    launched = []
    monkeypatch.setattr(reconcile_module, "launch_session", lambda *args: launched.append(args))
    TradingSession.objects.create(
        session_id="held",
        name="Held",
        status=Status.STOPPED,
        desired_state=Desired.PAUSED,
        run_id="r1",
        starting_cash=1000,
    )
    with django_capture_on_commit_callbacks(execute=True):
        report = reconcile(start_grace_seconds=0)
    assert report.restarted == ["session:held"]
    row = TradingSession.objects.get(pk="held")
    assert (row.desired_state, row.status) == (Desired.PAUSED, Status.STARTING)
    assert launched == [("held", row.run_id, Desired.PAUSED)]

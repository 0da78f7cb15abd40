"""Agent loops in a real Celery worker against real Redis and the test database."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.db import connection
from django.test import Client

from agents.models import Agent
from agents.runtime import keys
from agents.states import Desired, Status
from control import services
from control.reconcile import reconcile
from tests.conftest import ROOT, database_url, wait_for


def status_of(agent_id: str) -> Agent:
    return Agent.objects.get(pk=agent_id)


def running(agent_id: str, run_id: str | None = None):
    def check():
        agent = status_of(agent_id)
        if agent.status == Status.RUNNING and (run_id is None or agent.run_id == run_id):
            return agent
        return None

    return check


def start_lines(agent_id: str) -> list[str]:
    path = settings.LOG_DIR / f"{agent_id}.log"
    return (
        [line for line in path.read_text().splitlines() if " started (run " in line] if path.exists() else []
    )


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


def test_twenty_concurrent_starts_give_exactly_one_live_loop(
    celery_worker, make_agent, operator, redis_client
):
    agent = make_agent("race_feed")
    answers: list[int] = []
    barrier = threading.Barrier(20)

    def press_start() -> None:
        client = Client()
        client.force_login(operator)
        barrier.wait()
        answers.append(client.post(f"/api/agents/{agent.agent_id}/start").status_code)
        connection.close()

    threads = [threading.Thread(target=press_start) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200] + [409] * 19
    current = wait_for(running(agent.agent_id), what="status running")
    holder = redis_client.get(keys.lease("agent", agent.agent_id))
    assert holder.split(":")[0] == current.run_id
    # Even a redelivered copy of the same task must not become a twin.
    from agents.tasks import run_agent

    for _ in range(3):
        run_agent.apply_async((agent.agent_id, current.run_id), queue=settings.LOOP_QUEUE)
    steps_before = int(redis_client.hget(keys.metrics("agent", agent.agent_id), "steps") or 0)
    wait_for(
        lambda: (
            int(redis_client.hget(keys.metrics("agent", agent.agent_id), "steps") or 0) >= steps_before + 10
        ),
        what="ten more ticks",
    )
    assert len(start_lines(agent.agent_id)) == 1
    assert redis_client.get(keys.lease("agent", agent.agent_id)) == holder


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


def test_restore_brings_back_a_loop_whose_worker_was_killed(spawn_worker, make_agent, redis_client):
    doomed = spawn_worker()
    agent = make_agent("killed_feed")
    services.start_agent(agent.agent_id)
    first = wait_for(running(agent.agent_id), what="running on the first worker")
    doomed.kill()
    spawn_worker()

    def restored():
        reconcile(start_grace_seconds=0)
        agent_now = status_of(agent.agent_id)
        return agent_now if agent_now.run_id != first.run_id and agent_now.status == Status.RUNNING else None

    # The old lease must expire first (2 ticks + LEASE_EXTRA_SECONDS), then restore relaunches.
    second = wait_for(restored, timeout=30, interval=0.5, what="restore to start a new run")
    assert second.desired_state == Desired.RUNNING
    holder = redis_client.get(keys.lease("agent", agent.agent_id))
    assert holder.split(":")[0] == second.run_id
    # The dead run can no longer write: its conditional update matches nothing.
    assert Agent.objects.filter(pk=agent.agent_id, run_id=first.run_id).update(status=Status.ERROR) == 0


def test_beat_reconciler_moves_a_lost_loop_to_the_surviving_worker(spawn_worker, make_agent, tmp_path):
    doomed = spawn_worker()
    agent = make_agent("beat_feed")
    services.start_agent(agent.agent_id)
    first = wait_for(running(agent.agent_id), what="running on the first worker")
    survivor = spawn_worker(loops_only=False)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_PREFIX": settings.REDIS_PREFIX,
        "RECONCILE_SECONDS": "1",
        "LOG_DIR": str(settings.LOG_DIR),
        "LOOP_QUEUE": settings.LOOP_QUEUE,
        "CONTROL_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
    }
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tradingsite",
            "beat",
            "-l",
            "info",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        doomed.kill()
        second = wait_for(
            lambda: (
                (a := status_of(agent.agent_id)).run_id != first.run_id and a.status == Status.RUNNING and a
            ),
            timeout=30,
            interval=0.2,
            what="the reconciler to restart the loop",
        )
        assert second.run_id != first.run_id
        # The surviving worker ran the reconciler. Its log line may land a moment after the
        # new loop reports running (the loop runs in another thread of the same worker).
        wait_for(lambda: "restarted 1" in survivor.output(), timeout=10, what="the reconciler's log line")
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=10)


def test_worker_shutdown_ends_loops_cleanly_and_restore_restarts_them(spawn_worker, make_agent):
    worker = spawn_worker()
    agent = make_agent("shutdown_feed")
    services.start_agent(agent.agent_id)
    wait_for(running(agent.agent_id))
    started = time.monotonic()
    worker.stop()  # SIGTERM: warm shutdown must not wait for the endless loop forever
    assert time.monotonic() - started < 10
    stopped = status_of(agent.agent_id)
    assert (stopped.status, stopped.desired_state) == (Status.STOPPED, Desired.RUNNING)
    spawn_worker()
    reconcile()
    assert wait_for(running(agent.agent_id), what="restarted after the worker came back")

"""The loop run in this process (real Redis, real database): flags, leases, reloads."""

import threading
import time

import pytest
import redis
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, ProgrammingError, connection

from agents.models import Agent
from agents.runtime import keys, lifecycle
from agents.runtime.agent_loop import AgentLoop
from agents.runtime.outage import outage_of
from agents.states import Desired, Status
from control import services
from tests.conftest import wait_for


@pytest.fixture
def run_loop(transactional_db):
    """Run an AgentLoop in a thread; returns (thread, outcome dict). Joined at teardown."""
    threads: list[tuple[threading.Thread, str]] = []

    def start(agent_id: str, run_id: str = "run-1") -> dict:
        Agent.objects.filter(pk=agent_id).update(
            desired_state=Desired.RUNNING, status=Status.STARTING, run_id=run_id
        )
        lifecycle.write_flags("agent", agent_id, Desired.RUNNING, run_id, "1")
        outcome: dict = {}

        def target():
            outcome["reason"] = AgentLoop(agent_id, run_id).run()
            connection.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        threads.append((thread, agent_id))
        outcome["thread"] = thread
        return outcome

    yield start
    for thread, agent_id in threads:
        Agent.objects.filter(pk=agent_id).update(desired_state=Desired.STOPPED)
        lifecycle.write_flags("agent", agent_id, Desired.STOPPED, "")
        thread.join(timeout=10)


def is_running(agent_id: str) -> bool:
    return Agent.objects.get(pk=agent_id).status == Status.RUNNING


def test_missing_flags_fall_back_to_the_database(make_agent, run_loop, redis_client):
    agent = make_agent("db_truth")
    outcome = run_loop(agent.agent_id)
    wait_for(lambda: is_running(agent.agent_id))
    redis_client.delete(keys.flags("agent", agent.agent_id))
    # Only the database says stop; the wake-up makes the loop look now.
    Agent.objects.filter(pk=agent.pk).update(desired_state=Desired.STOPPED)
    lifecycle.wake("agent", agent.agent_id)
    outcome["thread"].join(timeout=5)
    assert outcome["reason"] == "stop requested"
    assert Agent.objects.get(pk=agent.pk).status == Status.STOPPED


def test_a_lease_lost_with_redis_is_taken_again(make_agent, run_loop, redis_client):
    agent = make_agent("relet")
    run_loop(agent.agent_id)
    wait_for(lambda: is_running(agent.agent_id))
    lease = keys.lease("agent", agent.agent_id)
    token = redis_client.get(lease)
    redis_client.delete(lease)  # what a Redis restart does
    assert wait_for(lambda: redis_client.get(lease) == token, what="the loop to take its lease again")
    assert is_running(agent.agent_id)


def test_a_new_run_waits_for_the_old_lease_and_then_runs(make_agent, run_loop, redis_client):
    agent = make_agent("waiter")
    lease = keys.lease("agent", agent.agent_id)
    redis_client.set(lease, "run-0:old", px=30_000)  # an older incarnation still holds it
    run_loop(agent.agent_id, "run-1")
    wait_for(lambda: Agent.objects.get(pk=agent.pk).status == Status.STARTING)
    assert not is_running(agent.agent_id)
    redis_client.delete(lease)
    wait_for(lambda: is_running(agent.agent_id), what="the new run to start once the lease is free")
    assert redis_client.get(lease).startswith("run-1:")


def test_a_config_change_is_picked_up_by_the_running_loop(make_agent, run_loop):
    agent = make_agent("reloader")
    run_loop(agent.agent_id)
    wait_for(lambda: is_running(agent.agent_id))
    services.update_agent_config(agent.agent_id, {"source": "simulated", "tick_seconds": 0.5, "seed": 9})
    log_file = settings.LOG_DIR / f"{agent.agent_id}.log"
    wait_for(lambda: "config reloaded" in log_file.read_text(), what="the loop to reload its config")


def test_a_step_past_its_timeout_is_abandoned_and_the_loop_writes_nothing_after(
    make_agent, run_loop, redis_client, monkeypatch
):
    """The watchdog: error with the reason, lease freed for a restart, the hung loop fenced."""
    release = threading.Event()
    original_step = AgentLoop.step

    def hanging_step(self):
        if self.rid == "hung":
            release.wait(30)  # a read that never returns, until the test lets it go
        return original_step(self)

    monkeypatch.setattr(AgentLoop, "step", hanging_step)
    agent = make_agent("hung", config={"tick_seconds": 0.2, "step_timeout_seconds": 0.5})
    outcome = run_loop(agent.agent_id)
    failed = wait_for(
        lambda: (a := Agent.objects.get(pk=agent.pk)).status == Status.ERROR and a, what="the watchdog"
    )
    assert "step timed out after" in failed.error_message
    assert redis_client.get(keys.lease("agent", agent.agent_id)) is None
    heartbeat = failed.last_heartbeat
    release.set()  # the hung step returns at last: its loop must end without writing
    outcome["thread"].join(timeout=10)
    assert outcome["reason"].startswith("fenced")
    after = Agent.objects.get(pk=agent.pk)
    assert (after.status, after.error_message, after.last_heartbeat) == (
        Status.ERROR,
        failed.error_message,
        heartbeat,
    )


# --- outages of the database or Redis are waited out, not errors ----------------------


@pytest.mark.parametrize(
    "exc, expected",
    [
        (OperationalError("database is locked"), "database"),
        (OperationalError("database table is locked: agents_agent"), "database"),
        (OperationalError("unable to open database file"), "database"),
        (
            OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused'
            ),
            "database",
        ),  # fmt: skip
        (OperationalError("server closed the connection unexpectedly"), "database"),
        (OperationalError("terminating connection due to administrator command"), "database"),
        (OperationalError("the database system is starting up"), "database"),
        (OperationalError("canceling statement due to lock timeout"), "database"),
        (InterfaceError("connection already closed"), "database"),
        (redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379"), "redis"),
        (redis.TimeoutError("Timeout reading from socket"), "redis"),
        # Real errors: they would fail again at once.
        (IntegrityError("UNIQUE constraint failed: sessions_fill.order_id"), None),
        (OperationalError("no such table: agents_agent"), None),
        (OperationalError("no such column: foo"), None),
        (ProgrammingError("syntax error at or near SELEC"), None),
        (redis.ResponseError("WRONGTYPE Operation against a key"), None),
        (ValueError("database is locked"), None),
    ],
)
def test_an_outage_is_told_from_a_real_error(exc, expected):
    assert outage_of(exc) == expected


def waiting_for(agent_id: str, redis_client) -> str | None:
    return redis_client.hget(keys.metrics("agent", agent_id), "waiting_for") or None


@pytest.mark.parametrize(
    "failure", [OperationalError("database is locked"), redis.ConnectionError("Connection refused")]
)
def test_a_step_meeting_an_outage_waits_it_out_and_carries_on(
    make_agent, run_loop, redis_client, monkeypatch, failure
):
    """The step fails for a while (an outage): the loop stays running, says what it waits
    for in its live metrics, and carries on by itself once the outage is over."""
    outage = threading.Event()
    original_step = AgentLoop.step

    def step(self):
        if outage.is_set():
            raise failure
        return original_step(self)

    monkeypatch.setattr(AgentLoop, "step", step)
    agent = make_agent("outage", config={"tick_seconds": 0.1})
    run_loop(agent.agent_id)
    wait_for(lambda: is_running(agent.agent_id))
    outage.set()
    what = "database" if isinstance(failure, OperationalError) else "redis"
    if what == "database":  # a Redis outage here is only the step's: its tick still works
        wait_for(lambda: waiting_for(agent.agent_id, redis_client) == what, what="the wait to show")
        since = float(redis_client.hget(keys.metrics("agent", agent.agent_id), "waiting_since"))
        assert 0 < time.time() - since < 10
    else:
        time.sleep(1)  # the outage lasts a while (a fault held on purpose)
    steps = int(redis_client.hget(keys.metrics("agent", agent.agent_id), "steps") or 0)
    assert is_running(agent.agent_id)
    outage.clear()
    wait_for(
        lambda: int(redis_client.hget(keys.metrics("agent", agent.agent_id), "steps") or 0) > steps + 2,
        what="steps again",
    )
    wait_for(lambda: waiting_for(agent.agent_id, redis_client) is None, what="the wait to clear")
    row = Agent.objects.get(pk=agent.pk)
    assert (row.status, row.error_message) == (Status.RUNNING, "")


def test_a_real_error_in_a_step_is_an_error(make_agent, run_loop, monkeypatch):
    def step(self):
        raise IntegrityError("UNIQUE constraint failed: sessions_fill.order_id")

    monkeypatch.setattr(AgentLoop, "step", step)
    agent = make_agent("broken", config={"tick_seconds": 0.1})
    outcome = run_loop(agent.agent_id)
    outcome["thread"].join(timeout=10)
    row = Agent.objects.get(pk=agent.pk)
    assert row.status == Status.ERROR
    assert row.error_message == "IntegrityError: UNIQUE constraint failed: sessions_fill.order_id"


def test_a_step_blocked_on_the_database_past_its_timeout_is_not_abandoned(
    make_agent, run_loop, redis_client, monkeypatch
):
    """A call to the database that does not return for longer than the step timeout (a
    lock held elsewhere) is a wait on the database, not a hung step: the watchdog shows
    the wait and keeps the lease, and the step finishes when the call returns."""
    blocked = threading.Event()
    original_step = AgentLoop.step

    def step(self):
        if not blocked.is_set():
            blocked.set()
            slow_query(2.0)
        return original_step(self)

    monkeypatch.setattr(AgentLoop, "step", step)
    agent = make_agent("slowdb", config={"tick_seconds": 0.1, "step_timeout_seconds": 0.5})
    run_loop(agent.agent_id)
    wait_for(blocked.is_set, what="the step to block in the database")
    wait_for(lambda: waiting_for(agent.agent_id, redis_client) == "database", what="the wait to show")
    wait_for(lambda: waiting_for(agent.agent_id, redis_client) is None, what="the step to finish")
    row = Agent.objects.get(pk=agent.pk)
    assert (row.status, row.error_message) == (Status.RUNNING, "")


def slow_query(seconds: float) -> None:
    """A query that takes `seconds` in the database (what a lock wait looks like to the loop)."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            connection.connection.create_function("pause", 1, time.sleep)
            cursor.execute("SELECT pause(%s)", [seconds])
        else:
            cursor.execute("SELECT pg_sleep(%s)", [seconds])

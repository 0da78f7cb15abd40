"""GET /api/system/health and the score behind it (docs/api.md "System")."""

import json
import time
import uuid

import pytest

from agents.runtime import keys, worker_heartbeat
from control import health
from control.health import WEIGHTS, score
from control.web.dashboard_context import system_alerts
from tests.conftest import WorkerProcess, wait_for

pytestmark = pytest.mark.django_db

ALL_OK = {name: {"ok": True} for name in WEIGHTS}
CALM_HOST = {"cpu_percent": 10.0, "memory_percent": 40.0, "disk_percent": 50.0}


def get_health(client):
    response = client.get("/api/system/health")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def no_workers(settings):
    """A key prefix of its own (still under this run's), so the shared worker that other
    tests in this run may have started is not counted."""
    settings.REDIS_PREFIX = f"{settings.REDIS_PREFIX}health-{uuid.uuid4().hex[:8]}:"


def write_heartbeat(redis_client, hostname: str, queues: list[str]) -> str:
    """A worker's heartbeat key, as agents.runtime.worker_heartbeat writes it."""
    key = keys.worker(hostname)
    body = {"hostname": hostname, "pid": 1, "queues": queues, "started": time.time(), "ts": time.time()}
    redis_client.set(key, json.dumps(body), ex=30)
    return key


@pytest.fixture
def live_worker(no_workers, redis_client, settings):
    """One worker taking both queues."""
    hostname = "w-test@pytest"
    key = write_heartbeat(redis_client, hostname, [settings.LOOP_QUEUE, settings.CELERY_TASK_DEFAULT_QUEUE])
    yield hostname
    redis_client.delete(key)


# --- the report -----------------------------------------------------------------------------------


def test_health_needs_a_login(client):
    response = client.get("/api/system/health")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_health_reports_every_check_host_and_stale_heartbeats(viewer_client):
    body = get_health(viewer_client)
    assert isinstance(body["score"], int) and 0 <= body["score"] <= 100
    assert set(body["checks"]) == {"database", "redis", "workers"}
    assert all(isinstance(check["ok"], bool) for check in body["checks"].values())
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    for name in ("cpu_percent", "memory_percent", "disk_percent"):
        assert 0 <= body["host"][name] <= 100
    assert body["stale_heartbeats"] == 0


def test_the_reported_score_is_the_score_of_the_reported_checks(viewer_client):
    body = get_health(viewer_client)
    assert body["score"] == score(body["checks"], body["host"], body["stale_heartbeats"])


def test_workers_are_not_ok_when_no_worker_runs(viewer_client, no_workers):
    workers = get_health(viewer_client)["checks"]["workers"]
    assert workers["ok"] is False
    assert workers["count"] == 0


def test_a_live_worker_key_counts_as_a_worker(viewer_client, live_worker):
    workers = get_health(viewer_client)["checks"]["workers"]
    assert workers["ok"] is True
    assert workers["count"] == 1
    assert workers["hostnames"] == [live_worker]


def test_a_control_worker_alone_is_not_a_loop_worker(viewer_client, no_workers, redis_client, settings):
    key = write_heartbeat(redis_client, "control@pytest", [settings.CELERY_TASK_DEFAULT_QUEUE])
    try:
        body = get_health(viewer_client)
    finally:
        redis_client.delete(key)
    workers = body["checks"]["workers"]
    assert workers["ok"] is False
    assert workers["queues"][settings.LOOP_QUEUE] == {"ok": False, "hostnames": []}
    assert workers["queues"][settings.CELERY_TASK_DEFAULT_QUEUE] == {
        "ok": True,
        "hostnames": ["control@pytest"],
    }
    assert f"loop queue ('{settings.LOOP_QUEUE}')" in workers["error"]
    assert "control queue" not in workers["error"]
    assert body["score"] < 100


def test_a_worker_of_another_queue_counts_for_none(viewer_client, no_workers, redis_client):
    key = write_heartbeat(redis_client, "other@pytest", ["someone-elses-queue"])
    try:
        workers = get_health(viewer_client)["checks"]["workers"]
    finally:
        redis_client.delete(key)
    assert workers["ok"] is False and workers["count"] == 0


def test_health_reports_redis_down_instead_of_failing(viewer_client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    body = get_health(viewer_client)
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["workers"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["score"] <= 100 - WEIGHTS["redis"] - WEIGHTS["workers"]


# --- stale heartbeats --------------------------------------------------------------------------------


def test_an_agent_meant_to_run_without_a_heartbeat_is_stale(viewer_client, make_agent):
    make_agent("feed", desired_state="running", status="running")
    body = get_health(viewer_client)
    assert body["stale_heartbeats"] == 1
    assert body["stale_agents"] == ["feed"]


def test_an_agent_with_a_fresh_heartbeat_is_not_stale(viewer_client, make_agent, redis_client):
    make_agent("feed", desired_state="running", status="running")
    redis_client.set(keys.heartbeat("agent", "feed"), repr(time.time()), ex=30)
    assert get_health(viewer_client)["stale_heartbeats"] == 0


def test_an_agent_with_an_old_heartbeat_is_stale(viewer_client, make_agent, redis_client, settings):
    make_agent("feed", desired_state="running", status="running")
    old = time.time() - settings.HEARTBEAT_STALE_SECONDS - 5
    redis_client.set(keys.heartbeat("agent", "feed"), repr(old), ex=30)
    assert get_health(viewer_client)["stale_heartbeats"] == 1


def test_a_stopped_agent_without_a_heartbeat_is_not_stale(viewer_client, make_agent):
    make_agent("feed")
    assert get_health(viewer_client)["stale_heartbeats"] == 0


# --- the score ------------------------------------------------------------------------------------


def test_everything_ok_scores_100():
    assert score(ALL_OK, CALM_HOST, 0) == 100


def test_nothing_ok_scores_0():
    assert score({name: {"ok": False} for name in WEIGHTS}, CALM_HOST, 0) == 0


def test_a_missing_check_counts_as_failing():
    assert score({}, CALM_HOST, 0) == 0


def test_each_queue_without_a_worker_costs_its_share_of_the_workers_weight():
    loops_down = {"ok": False, "queues": {"loops": {"ok": False}, "control": {"ok": True}}}
    assert score({**ALL_OK, "workers": loops_down}, CALM_HOST, 0) == 100 - WEIGHTS["workers"] // 2
    both_down = {"ok": False, "queues": {"loops": {"ok": False}, "control": {"ok": False}}}
    assert score({**ALL_OK, "workers": both_down}, CALM_HOST, 0) == 100 - WEIGHTS["workers"]


def test_each_failing_check_costs_its_weight():
    # database 40 + redis 40 pass; workers 20 fail.
    checks = {**ALL_OK, "workers": {"ok": False}}
    assert score(checks, CALM_HOST, 0) == 80


def test_each_stale_heartbeat_costs_5():
    assert score(ALL_OK, CALM_HOST, 2) == 90


def test_stale_heartbeats_cost_at_most_20():
    assert score(ALL_OK, CALM_HOST, 10) == 80


def test_a_nearly_full_memory_and_disk_cost_5_each():
    assert score(ALL_OK, {**CALM_HOST, "memory_percent": 95.0, "disk_percent": 91.0}, 0) == 90


def test_exactly_90_percent_memory_and_disk_cost_nothing():
    assert score(ALL_OK, {**CALM_HOST, "memory_percent": 90.0, "disk_percent": 90.0}, 0) == 100


def test_the_score_never_goes_below_0():
    checks = {**{name: {"ok": False} for name in WEIGHTS}, "workers": {"ok": True}}
    assert score(checks, {"memory_percent": 99.0, "disk_percent": 99.0}, 10) == 0


# --- real workers, one per queue -------------------------------------------------------------------


def test_a_killed_loop_worker_is_reported_by_its_queue_while_the_control_worker_lives(
    spawn_worker, worker_log_dir, settings
):
    """The loop worker SIGKILLed, the control worker alive: health is not "ok" for long
    (a killed worker's key lapses within TTL_SECONDS), the score drops by the loop queue's
    share, and the alert names the loop queue."""
    loops, control = settings.LOOP_QUEUE, settings.CELERY_TASK_DEFAULT_QUEUE
    loop_worker = spawn_worker()  # takes the loop queue only
    control_worker = WorkerProcess(worker_log_dir, queues=control).start()
    try:
        workers = health.check_workers()
        assert workers["ok"] is True
        assert workers["queues"][loops]["hostnames"] == [loop_worker.hostname]
        assert workers["queues"][control]["hostnames"] == [control_worker.hostname]

        loop_worker.kill()
        workers = wait_for(
            lambda: (w := health.check_workers()) and not w["queues"][loops]["ok"] and w,
            timeout=worker_heartbeat.TTL_SECONDS + 5,
            what="the killed loop worker to drop out of health",
        )
        assert workers["ok"] is False
        assert workers["queues"][control]["ok"] is True
        report = health.health()
        assert report["score"] <= 100 - WEIGHTS["workers"] // 2
        assert report["score"] == score(report["checks"], report["host"], report["stale_heartbeats"])
        alerts = [a["text"] for a in system_alerts(report)]
        assert any(f"loop queue ('{loops}')" in text for text in alerts), alerts
        assert not any("control queue" in text for text in alerts), alerts
    finally:
        control_worker.stop()

"""The JSON API under /api/ (docs/api.md "Conventions", "System", "Agents"), /healthz and the panel.

Tests run under pytest-django's `db` fixture: transaction.on_commit callbacks never run,
so control actions record their change without sending a Celery task.
"""

import hashlib
import json
from datetime import datetime

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Agent, LogEntry
from agents.runtime import keys
from control.models import ApiToken

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"

# The agent object of docs/api.md ("Add fields freely; do not rename or drop the ones named here").
AGENT_FIELDS = {
    "agent_id",
    "name",
    "kind",
    "role",
    "enabled",
    "status",
    "desired_state",
    "symbols",
    "inputs_from",
    "outputs_to",
    "config",
    "metrics",
    "last_active",
    "last_heartbeat",
    "error_message",
}


def post_json(client, path, body, **extra):
    return client.post(path, data=json.dumps(body), content_type="application/json", **extra)


def control_audit():
    return LogEntry.objects.filter(source="control")


def snapshot():
    """Everything a control action could change, to prove that a refused one changed nothing."""
    return list(
        Agent.objects.order_by("agent_id").values_list(
            "agent_id", "desired_state", "status", "run_id", "config", "config_version", "metrics"
        )
    )


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    # A sentence a person understands, not a bare code.
    assert isinstance(body["detail"], str) and " " in body["detail"].strip()
    return body


def is_iso_with_timezone(value):
    return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None


@pytest.fixture
def running_agent(make_agent):
    return make_agent("runner", desired_state="running", status="running", run_id="r1")


# --- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/agents"), ("post", "/api/system/start"), ("get", "/api/system/status")],
)
def test_anonymous_requests_are_refused_with_401_in_json(client, make_agent, method, path):
    make_agent("feed")
    response = getattr(client, method)(path)
    assert_error(response, 401, "not_authenticated")


def test_anonymous_post_is_401_even_when_csrf_is_enforced(make_agent):
    make_agent("feed")
    response = Client(enforce_csrf_checks=True).post("/api/agents/feed/start")
    assert_error(response, 401, "not_authenticated")
    assert not control_audit().exists()


def test_a_bearer_token_authenticates(client, operator, make_agent):
    make_agent("feed")
    _token, raw = ApiToken.issue(operator)
    response = client.get("/api/agents", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert [a["agent_id"] for a in response.json()] == ["feed"]


def test_a_bearer_token_can_act_without_a_csrf_token(operator, make_agent):
    """Programs have no CSRF cookie: the CSRF check applies to browser sessions only."""
    make_agent("feed")
    _token, raw = ApiToken.issue(operator)
    response = Client(enforce_csrf_checks=True).post(
        "/api/agents/feed/start", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 200, response.content
    assert Agent.objects.get(pk="feed").desired_state == "running"


def test_a_wrong_bearer_token_is_401(client, operator, make_agent):
    make_agent("feed")
    ApiToken.issue(operator)
    response = client.get("/api/agents", HTTP_AUTHORIZATION="Bearer pt_not-a-real-token")
    assert_error(response, 401, "not_authenticated")


def test_a_token_of_an_inactive_user_is_401(client, operator, make_agent):
    _token, raw = ApiToken.issue(operator)
    operator.is_active = False
    operator.save()
    response = client.get("/api/agents", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert_error(response, 401, "not_authenticated")


def test_tokens_are_stored_hashed_never_raw(operator):
    _token, raw = ApiToken.issue(operator)
    row = ApiToken.objects.values().get()
    assert row["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert all(raw not in str(value) for value in row.values())


def test_using_a_token_records_when_it_was_last_used(client, operator, make_agent):
    token, raw = ApiToken.issue(operator)
    assert token.last_used_at is None
    client.get("/api/agents", HTTP_AUTHORIZATION=f"Bearer {raw}")
    token.refresh_from_db()
    assert token.last_used_at is not None


# --- CSRF for browser sessions ---------------------------------------------------------


def test_a_session_post_without_the_csrf_token_is_refused(operator, make_agent):
    make_agent("feed")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    before = snapshot()
    response = browser.post("/api/agents/feed/start")
    assert_error(response, 403, "csrf_failed")
    assert snapshot() == before
    assert not control_audit().exists()


def test_a_session_post_with_the_csrf_token_from_the_page_works(operator, make_agent):
    make_agent("feed")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    assert browser.get("/").status_code == 200  # the page sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    response = browser.post("/api/agents/feed/start", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content
    assert Agent.objects.get(pk="feed").desired_state == "running"


# --- a viewer watches but cannot act ----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/agents", "/api/agents/feed", "/api/system/status", "/api/agents/feed/metrics"],
)
def test_a_viewer_can_read(viewer_client, make_agent, path):
    make_agent("feed")
    assert viewer_client.get(path).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/system/start", None),
        ("/api/system/stop", None),
        ("/api/agents/feed/start", None),
        ("/api/agents/runner/stop", None),
        ("/api/agents/feed/config", {"tick_seconds": 2}),
        ("/api/agents/runner/metrics/reset", None),
    ],
)
def test_a_viewer_cannot_act_and_nothing_changes(
    viewer_client, make_agent, running_agent, redis_client, path, body
):
    # Every action here would succeed for an operator.
    make_agent("feed")
    Agent.objects.filter(pk="runner").update(metrics={"steps": 3})
    redis_client.hset(keys.metrics("agent", "runner"), mapping={"steps": 3})
    before = snapshot()
    response = post_json(viewer_client, path, body) if body else viewer_client.post(path)
    assert_error(response, 403, "permission_denied")
    assert snapshot() == before
    assert not control_audit().exists()
    assert redis_client.hgetall(keys.metrics("agent", "runner")) == {"steps": "3"}


# --- unknown ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/agents/ghost"),
        ("post", "/api/agents/ghost/start"),
        ("post", "/api/agents/ghost/stop"),
        ("get", "/api/agents/ghost/metrics"),
        ("post", "/api/agents/ghost/config"),
        ("post", "/api/agents/ghost/metrics/reset"),
    ],
)
def test_an_unknown_agent_is_404(operator_client, make_agent, method, path):
    make_agent("feed")
    if path.endswith("/config"):
        response = post_json(operator_client, path, {"tick_seconds": 2})
    else:
        response = getattr(operator_client, method)(path)
    body = assert_error(response, 404, "not_found")
    assert "ghost" in body["detail"]


# --- refused transitions (409) -----------------------------------------------------------


def test_starting_a_running_agent_is_409(operator_client, running_agent):
    before = snapshot()
    response = operator_client.post("/api/agents/runner/start")
    body = assert_error(response, 409, "invalid_transition")
    assert "already running" in body["detail"]
    assert snapshot() == before
    assert not control_audit().exists()


def test_stopping_a_stopped_agent_is_409(operator_client, make_agent):
    make_agent("feed")
    before = snapshot()
    response = operator_client.post("/api/agents/feed/stop")
    body = assert_error(response, 409, "invalid_transition")
    assert "already stopped" in body["detail"]
    assert snapshot() == before
    assert not control_audit().exists()


def test_starting_a_disabled_agent_is_409(operator_client, make_agent):
    make_agent("feed", enabled=False)
    before = snapshot()
    response = operator_client.post("/api/agents/feed/start")
    body = assert_error(response, 409, "invalid_transition")
    assert "disabled" in body["detail"]
    assert snapshot() == before


def test_stopping_the_system_when_nothing_runs_is_409(operator_client, make_agent):
    make_agent("feed")
    make_agent("other")
    before = snapshot()
    response = operator_client.post("/api/system/stop")
    body = assert_error(response, 409, "invalid_transition")
    assert "already stopped" in body["detail"]
    assert snapshot() == before
    assert not control_audit().exists()


def test_starting_the_system_when_every_enabled_agent_runs_is_409(operator_client, make_agent, running_agent):
    make_agent("spare", enabled=False)
    before = snapshot()
    response = operator_client.post("/api/system/start")
    body = assert_error(response, 409, "invalid_transition")
    assert "already running" in body["detail"]
    assert snapshot() == before
    assert not control_audit().exists()


# --- control actions ----------------------------------------------------------------------


def test_starting_an_agent_records_it_and_answers_starting(operator_client, operator, make_agent):
    make_agent("feed")
    response = operator_client.post("/api/agents/feed/start")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "starting"
    assert body["desired_state"] == "running"
    assert body["run_id"]
    assert Agent.objects.get(pk="feed").run_id == body["run_id"]
    entry = control_audit().get()
    assert entry.user == operator
    assert entry.agent_id == "feed"


def test_stopping_a_running_agent_answers_stopping(operator_client, operator, running_agent):
    response = operator_client.post("/api/agents/runner/stop")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "stopping"
    assert body["desired_state"] == "stopped"
    assert control_audit().get().user == operator


def test_starting_the_system_starts_every_enabled_agent(operator_client, make_agent):
    make_agent("feed")
    make_agent("other")
    make_agent("spare", enabled=False)
    response = operator_client.post("/api/system/start")
    assert response.status_code == 200
    assert sorted(response.json()["changed"]) == ["feed", "other"]
    desired = dict(Agent.objects.values_list("agent_id", "desired_state"))
    assert desired == {"feed": "running", "other": "running", "spare": "stopped"}


def test_stopping_the_system_stops_every_running_agent(operator_client, make_agent, running_agent):
    make_agent("feed")
    response = operator_client.post("/api/system/stop")
    assert response.status_code == 200
    body = response.json()
    assert body["changed"] == ["runner"]
    assert [s["id"] for s in body["skipped"]] == ["feed"]
    assert Agent.objects.get(pk="runner").desired_state == "stopped"


# --- config -------------------------------------------------------------------------------
# The request body IS the config object (`{"tick_seconds": 2}`), not `{"config": {...}}`.
# A valid config replaces the stored one; fields it leaves out take their defaults.


def test_an_invalid_config_is_422_naming_each_field_and_reason(operator_client, make_agent):
    agent = make_agent("feed")
    bad = {"annual_volatility": -1, "colour": "red"}
    response = post_json(operator_client, "/api/agents/feed/config", bad)
    body = assert_error(response, 422, "invalid_config")
    reasons = {e["field"]: e["reason"] for e in body["errors"]}
    assert set(reasons) == {"annual_volatility", "colour"}
    assert "greater than 0" in reasons["annual_volatility"]
    assert "not permitted" in reasons["colour"]
    stored = Agent.objects.get(pk="feed")
    assert (stored.config, stored.config_version) == (agent.config, agent.config_version)
    assert not control_audit().exists()


def test_a_valid_config_is_stored_and_bumps_the_config_version(operator_client, make_agent):
    make_agent("feed")
    response = post_json(
        operator_client, "/api/agents/feed/config", {"tick_seconds": 2, "annual_volatility": 0.8}
    )
    assert response.status_code == 200, response.content
    stored = Agent.objects.get(pk="feed")
    assert stored.config["tick_seconds"] == 2
    assert stored.config["annual_volatility"] == 0.8
    assert stored.config_version == 2
    assert response.json()["config"] == stored.config
    assert control_audit().filter(agent_id="feed").exists()


def test_a_config_wrapped_in_a_config_key_is_refused(operator_client, make_agent):
    make_agent("feed")
    response = post_json(operator_client, "/api/agents/feed/config", {"config": {"tick_seconds": 2}})
    body = assert_error(response, 422, "invalid_config")
    assert [e["field"] for e in body["errors"]] == ["config"]


def test_the_schema_documents_the_config_body_as_the_object_itself(viewer_client):
    paths = viewer_client.get("/api/openapi.json").json()["paths"]
    operation = paths["/api/agents/{agent_id}/config"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["type"] == "object"
    assert "config" not in schema.get("properties", {})
    assert all(p["in"] == "path" for p in operation.get("parameters", []))


def test_a_malformed_json_body_is_400(operator_client, make_agent):
    agent = make_agent("feed")
    response = operator_client.post(
        "/api/agents/feed/config", data='{"tick_seconds": ', content_type="application/json"
    )
    assert_error(response, 400, "malformed")
    assert Agent.objects.get(pk="feed").config == agent.config


# --- metrics --------------------------------------------------------------------------------


def test_metrics_show_the_live_counters_from_redis(viewer_client, make_agent, redis_client):
    make_agent("feed")
    redis_client.hset(keys.metrics("agent", "feed"), mapping={"steps": 12, "lag_ms": "1.5"})
    body = viewer_client.get("/api/agents/feed/metrics").json()
    assert body["agent_id"] == "feed"
    assert body["metrics"] == {"steps": 12, "lag_ms": 1.5}


def test_resetting_metrics_zeroes_the_database_snapshot_and_the_redis_counters(
    operator_client, make_agent, redis_client
):
    make_agent("feed", metrics={"steps": 40})
    redis_client.hset(keys.metrics("agent", "feed"), mapping={"steps": 41})
    response = operator_client.post("/api/agents/feed/metrics/reset")
    assert response.status_code == 200
    assert response.json()["metrics"] == {}
    assert Agent.objects.get(pk="feed").metrics == {}
    assert not redis_client.exists(keys.metrics("agent", "feed"))
    assert operator_client.get("/api/agents/feed/metrics").json()["metrics"] == {}


# --- shapes -------------------------------------------------------------------------------


def test_an_agent_has_every_field_of_the_contract(viewer_client, make_agent):
    now = timezone.now()
    make_agent("feed", last_active=now, last_heartbeat=now)
    consumer = make_agent("consumer", kind="market_data")
    consumer.inputs_from.set(["feed"])
    body = viewer_client.get("/api/agents/feed").json()
    assert AGENT_FIELDS <= set(body)
    assert body["outputs_to"] == ["consumer"]
    assert body["error_message"] is None
    assert is_iso_with_timezone(body["last_active"])
    assert is_iso_with_timezone(body["last_heartbeat"])


def test_the_agent_list_has_the_same_objects(viewer_client, make_agent):
    make_agent("feed")
    make_agent("other")
    listed = viewer_client.get("/api/agents").json()
    assert [a["agent_id"] for a in listed] == ["feed", "other"]
    assert listed[0] == viewer_client.get("/api/agents/feed").json()


def test_system_status_has_the_contract_shape(viewer_client, make_agent):
    make_agent("feed")
    body = viewer_client.get("/api/system/status").json()
    assert body["status"] in {"running", "stopped", "partial", "starting", "stopping", "error"}
    assert set(body["agents"]) >= {"total", "running", "stopped", "error", "starting", "stopping"}
    assert body["agents"]["total"] == 1
    assert set(body["sessions"]) >= {"total", "running", "paused", "stopped", "error", "ready"}
    assert isinstance(body["recent_trades"], int)
    assert 0 <= body["health"]["score"] <= 100
    assert is_iso_with_timezone(body["updated_at"])


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        ([("running", True), ("running", True)], "running"),
        ([("running", True), ("stopped", False)], "running"),
        ([("stopped", True), ("stopped", True)], "stopped"),
        ([("running", True), ("stopped", True)], "partial"),
        ([("running", True), ("error", True)], "error"),
        ([("stopped", True), ("error", True)], "error"),
        ([], "stopped"),
    ],
)
def test_system_status_is_derived_from_the_observed_states(viewer_client, make_agent, agents, expected):
    for i, (status, enabled) in enumerate(agents):
        make_agent(f"a{i}", status=status, enabled=enabled)
    assert viewer_client.get("/api/system/status").json()["status"] == expected


def test_the_openapi_schema_lists_the_paths(viewer_client):
    response = viewer_client.get("/api/openapi.json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert {
        "/api/system/status",
        "/api/system/start",
        "/api/system/stop",
        "/api/system/health",
        "/api/agents",
        "/api/agents/{agent_id}",
        "/api/agents/{agent_id}/start",
        "/api/agents/{agent_id}/stop",
        "/api/agents/{agent_id}/metrics",
        "/api/agents/{agent_id}/config",
        "/api/agents/{agent_id}/metrics/reset",
    } <= set(paths)


def test_the_interactive_docs_answer_for_a_logged_in_user(viewer_client):
    assert viewer_client.get("/api/docs").status_code == 200


# --- dependencies down --------------------------------------------------------------------


def test_healthz_answers_ok_without_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_healthz_is_503_when_redis_is_down(client, settings):
    settings.REDIS_URL = DEAD_REDIS
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"ok": False}


def test_starting_an_agent_while_redis_is_down_is_503_and_changes_nothing(
    operator_client, make_agent, settings
):
    make_agent("feed")
    before = snapshot()
    settings.REDIS_URL = DEAD_REDIS
    response = operator_client.post("/api/agents/feed/start")
    body = assert_error(response, 503, "redis_unavailable")
    assert "Redis" in body["detail"]
    assert snapshot() == before
    assert not control_audit().exists()


# --- the page -----------------------------------------------------------------------------


def test_the_panel_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_panel_lists_the_agents(viewer_client, make_agent):
    make_agent("feed", name="Simulated feed")
    response = viewer_client.get("/")
    assert response.status_code == 200
    assert "Simulated feed" in response.content.decode()
    assert 'id="agent-feed"' in response.content.decode()


def test_agent_names_are_escaped_on_the_panel(viewer_client, make_agent):
    make_agent("feed", name="<script>alert(1)</script>")
    html = viewer_client.get("/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

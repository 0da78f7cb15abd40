"""The JSON API answers only in its own format and accepts only what its schema says.

* Every answer under /api/ is JSON {"detail", "code"}, with DEBUG on and off: unknown
  paths (404), methods a path does not answer (405), a crash (500), Django's own 400.
* A body is JSON, declared as such (415 otherwise), strict (400 for duplicate keys,
  NaN, numbers too large for a float, bytes that are not UTF-8) and of the documented
  types: no number, boolean or list spelled as a string (full-width, Arabic-Indic or
  Devanagari digits, "1_000", "1e3"), no null where the schema has none, no zero where
  it says exclusiveMinimum 0 (422 naming the field). A refused body changes nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from agents.models import Agent
from control import presenters
from control.api.app import api
from sessions.models import TradingSession
from tests.security.routes import AGENT_ID, SESSION_ID

pytestmark = pytest.mark.django_db

SESSIONS = "/api/paper-trading/sessions"
CONFIG = f"/api/agents/{AGENT_ID}/config"
VALID_SESSION = {
    "name": "Strict",
    "symbols": ["BTC-USD"],
    "decision_agent": "decider",
    "starting_cash": "1000.00",
}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


def assert_api_error(response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = json.loads(response.content)
    assert isinstance(body, dict) and {"detail", "code"} <= set(body), body
    assert isinstance(body["detail"], str) and " " in body["detail"].strip(), body
    assert re.fullmatch(r"[a-z_]+", body["code"]), body
    if code is not None:
        assert body["code"] == code, body
    text = response.content.decode()
    assert "<html" not in text.lower() and "Traceback" not in text
    return body


def send(client: Client, path: str, body: Any, content_type: str = "application/json"):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type)


def fields(body: dict[str, Any]) -> set[str]:
    """The fields an error names, to their first part ("symbols.0" -> "symbols")."""
    return {e["field"].split(".")[0] for e in body.get("errors", [])}


def _ids(cases: list[tuple[str, Any]]) -> list[str]:
    return [f"{field}={value!r}" for field, value in cases]


# --- every answer under /api/ is the API's JSON ---------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/nonexistent",
        "/api/",
        "/api/agents/feed/nonexistent",
        "/api/paper-trading/",
        "/api/system/status/extra",
        "/api/%E2%91%A8",
    ],
)
def test_an_unknown_path_under_api_is_a_json_404(debug, operator_client, path):
    for client in (operator_client, Client()):
        body = assert_api_error(client.get(path), 404, "not_found")
        assert "/api" in body["detail"]
    # With DEBUG, Django's 404 page lists every URL pattern: none of that here.
    assert "admin/" not in operator_client.get(path).content.decode()


def _concrete(path: str) -> str:
    return path.replace("{agent_id}", AGENT_ID).replace("{session_id}", SESSION_ID)


def test_every_method_a_path_does_not_answer_is_a_json_405(debug, graph, operator_client):
    paths = api.get_openapi_schema()["paths"]
    tried = 0
    for template, operations in paths.items():
        for method in METHODS:
            if method in operations:
                continue
            response = getattr(operator_client, method)(_concrete(template))
            body = assert_api_error(response, 405, "method_not_allowed")
            allowed = {m.upper() for m in operations}
            assert set(response["Allow"].replace(" ", "").split(",")) == allowed, template
            assert method.upper() in body["detail"]
            tried += 1
    assert tried >= 30
    # The examples of the report, and the schema and docs (GET only).
    assert_api_error(operator_client.put("/api/agents"), 405, "method_not_allowed")
    assert_api_error(operator_client.post("/api/openapi.json"), 405, "method_not_allowed")
    assert_api_error(operator_client.delete("/api/docs"), 405, "method_not_allowed")


def test_a_crash_under_api_is_a_json_500_without_the_traceback(debug, operator, monkeypatch):
    def broken() -> dict:
        raise RuntimeError("internal secret detail")

    monkeypatch.setattr(presenters, "system_status", broken)
    client = Client(raise_request_exception=False)
    client.force_login(operator)
    response = client.get("/api/system/status")
    body = assert_api_error(response, 500, "server_error")
    assert "internal secret detail" not in response.content.decode()
    assert "RuntimeError" not in body["detail"]


def test_djangos_own_refusals_under_api_are_json(debug, operator_client):
    # A Host header not allowed: Django answers 400 before any view.
    assert_api_error(Client().get("/api/agents", HTTP_HOST="evil.example"), 400)
    # Over the size limit (control.middleware.RequestLimits).
    big = json.dumps({"name": "x" * 300_000})
    assert_api_error(send(operator_client, SESSIONS, big), 413, "too_large")


# --- a body is JSON, and strict JSON ----------------------------------------------------


@pytest.mark.parametrize("path", [SESSIONS, CONFIG])
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "text/json",
        "application/xml",
        "application/json-patch+json",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
    ],
)
def test_a_body_not_declared_as_json_is_415(debug, graph, operator_client, path, content_type):
    body = json.dumps(VALID_SESSION if path == SESSIONS else {"tick_seconds": 2})
    response = send(operator_client, path, body, content_type=content_type)
    detail = assert_api_error(response, 415, "unsupported_media_type")["detail"]
    assert "application/json" in detail or "UTF-8" in detail
    assert not TradingSession.objects.filter(name="Strict").exists()
    assert Agent.objects.get(pk=AGENT_ID).config_version == graph["feed"].config_version


def test_a_body_without_a_content_type_is_415(graph, operator_client):
    body = json.dumps(VALID_SESSION)
    response = operator_client.generic("POST", SESSIONS, body, content_type="")
    assert_api_error(response, 415, "unsupported_media_type")
    # Multipart, as an HTML form would send.
    assert_api_error(operator_client.post(SESSIONS, data=VALID_SESSION), 415, "unsupported_media_type")
    assert not TradingSession.objects.filter(name="Strict").exists()


@pytest.mark.parametrize(
    "raw",
    [
        # Duplicate keys: which one wins depends on the reader.
        '{"name": "A", "name": "B", "symbols": ["BTC-USD"], "decision_agent": "decider",'
        ' "starting_cash": "1"}',
        '{"name": "A", "symbols": ["BTC-USD"], "decision_agent": "decider", "starting_cash": "1",'
        ' "name": "A"}',
        '{"name": "A", "symbols": ["BTC-USD"], "decision_agent": "decider", "starting_cash": "1",'
        ' "max_position_weight": NaN}',
        '{"name": "A", "symbols": ["BTC-USD"], "decision_agent": "decider", "starting_cash": "1",'
        ' "max_position_weight": Infinity}',
        '{"name": "A", "symbols": ["BTC-USD"], "decision_agent": "decider", "starting_cash": "1",'
        ' "max_position_weight": -Infinity}',
        '{"name": "A", "symbols": ["BTC-USD"], "decision_agent": "decider", "starting_cash": "1",'
        ' "max_position_weight": 1e400}',
        '{"name": "A"} trailing',
        "{'name': 'A'}",
        '{"name": "A",}',
        '{"max_orders_per_minute": ' + "9" * 5000 + "}",
    ],
)
def test_json_two_readers_could_read_differently_is_400(debug, graph, operator_client, raw):
    body = assert_api_error(send(operator_client, SESSIONS, raw), 400, "malformed")
    assert "JSON" in body["detail"] or "number" in body["detail"]
    assert not TradingSession.objects.filter(name__in=["A", "B"]).exists()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "\xff\xfe"}',  # not UTF-8
        json.dumps(VALID_SESSION).encode("utf-16"),
        json.dumps(VALID_SESSION).encode("utf-32"),
        b"\xef\xbb\xbf" + json.dumps(VALID_SESSION).encode(),  # a byte order mark
    ],
)
def test_a_body_that_is_not_utf8_json_is_400(graph, operator_client, raw):
    assert_api_error(send(operator_client, SESSIONS, raw), 400, "malformed")
    assert not TradingSession.objects.filter(name="Strict").exists()


def test_duplicate_keys_nested_in_an_agent_config_are_400(graph, operator_client):
    raw = '{"initial_prices": {"BTC-USD": 100, "BTC-USD": 200}}'
    assert_api_error(send(operator_client, CONFIG, raw), 400, "malformed")
    assert_api_error(send(operator_client, CONFIG, '{"seed": 1, "seed": 2}'), 400, "malformed")
    assert Agent.objects.get(pk=AGENT_ID).config == graph["feed"].config


def test_an_empty_body_is_400(graph, operator_client):
    for path in (SESSIONS, CONFIG):
        assert_api_error(send(operator_client, path, ""), 400, "malformed")


# --- the documented types, strictly ---------------------------------------------------

# Each a value of the wrong JSON type for its field, or outside what the schema allows.
BAD_SESSION_VALUES = [
    ("symbols", "BTC-USD"),
    ("symbols", [1]),
    ("symbols", [["BTC-USD"]]),
    ("symbols", {"BTC-USD": 1}),
    ("symbols", None),
    ("symbols", ["btc-usd"]),
    ("symbols", ["BTC-USD", "BTC-USD"]),
    ("flatten_on_stop", "yes"),
    ("flatten_on_stop", "true"),
    ("flatten_on_stop", 1),
    ("flatten_on_stop", None),
    ("slippage_size_scaled", "false"),
    ("max_orders_per_minute", "7"),
    ("max_orders_per_minute", "９９９"),  # full-width digits
    ("max_orders_per_minute", "٧"),  # Arabic-Indic
    ("max_orders_per_minute", "७"),  # Devanagari
    ("max_orders_per_minute", "1_000"),
    ("max_orders_per_minute", "1e3"),
    ("max_orders_per_minute", 7.5),
    ("max_orders_per_minute", True),
    ("max_orders_per_minute", None),
    ("max_orders_per_minute", [7]),
    ("max_position_weight", 0),
    ("max_position_weight", -0.1),
    ("max_position_weight", 1.5),
    ("max_position_weight", "0.5"),
    ("max_position_weight", "٠٫٥"),
    ("max_position_weight", True),
    ("max_position_weight", None),
    ("starting_cash", 1000),
    ("starting_cash", "1e3"),
    ("starting_cash", "１０００"),
    ("starting_cash", "١٠٠٠"),
    ("starting_cash", "१०००"),
    ("starting_cash", "1_000"),
    ("starting_cash", "1000\n"),
    ("starting_cash", None),
    ("fee_bps", 2.5),
    ("slippage_size_reference", {"amount": "1"}),
    ("name", None),
    ("name", 5),
    ("name", "   "),
    ("decision_agent", None),
    ("decision_agent", 7),
    ("decision_agent", ["decider"]),
    ("execution_agent", None),
    ("session_id", None),
    ("session_id", 12),
    ("colour", "red"),
]


@pytest.mark.parametrize(
    ("field", "value"), BAD_SESSION_VALUES, ids=[f"{f}={v!r}" for f, v in BAD_SESSION_VALUES]
)
def test_a_session_value_outside_its_documented_type_is_422(debug, graph, operator_client, field, value):
    response = send(operator_client, SESSIONS, {**VALID_SESSION, field: value})
    body = assert_api_error(response, 422, "invalid")
    assert fields(body) == {field}, body
    assert field in body["detail"]
    assert not TradingSession.objects.filter(name="Strict").exists()


@pytest.mark.parametrize("body", [[VALID_SESSION], "Strict", 7, None, True])
def test_a_body_that_is_not_an_object_is_422(graph, operator_client, body):
    response = send(operator_client, SESSIONS, json.dumps(body))
    assert fields(assert_api_error(response, 422, "invalid")) == {"body"}
    assert not TradingSession.objects.filter(name="Strict").exists()
    # The agent config alike (its kind's schema is an object too).
    response = send(
        operator_client, CONFIG, json.dumps([{"tick_seconds": 2}] if body == [VALID_SESSION] else body)
    )
    assert fields(assert_api_error(response, 422)) in ({"body"}, {"config"})
    assert Agent.objects.get(pk=AGENT_ID).config_version == graph["feed"].config_version


def _nullable(prop: dict[str, Any]) -> bool:
    return {"type": "null"} in prop.get("anyOf", [])


def _valid_example(prop: dict[str, Any]) -> Any:
    # A nullable field (max_price_age_seconds: null is "automatic") by its other type.
    kind = prop["type"] if "type" in prop else next(p["type"] for p in prop["anyOf"] if p["type"] != "null")
    return {"integer": 7, "number": 0.5, "boolean": True, "array": ["BTC-USD"], "string": "1"}[kind]


def test_every_documented_field_refuses_its_value_spelled_as_another_type(graph, operator_client):
    """Walks the schema the API documents, so a field added later is covered too."""
    schema = api.get_openapi_schema()
    ref = schema["paths"][SESSIONS]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    properties = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert len(properties) >= 12
    for name, prop in properties.items():
        good = _valid_example(prop)
        # The same value in another JSON type: a string for a number, boolean or array;
        # a number for a string. Never accepted.
        wrong = json.dumps(good) if not isinstance(good, str) else 1
        response = send(operator_client, SESSIONS, {**VALID_SESSION, name: wrong})
        assert fields(assert_api_error(response, 422, "invalid")) == {name}, (name, wrong)
        if _nullable(prop):
            continue  # null is one of its documented values (test_a_null_price_age_is_automatic)
        response = send(operator_client, SESSIONS, {**VALID_SESSION, name: None})
        assert fields(assert_api_error(response, 422, "invalid")) == {name}, (name, None)
    assert not TradingSession.objects.filter(name="Strict").exists()


def test_the_same_values_are_accepted_only_in_their_documented_types(graph, operator_client):
    body = {
        **VALID_SESSION,
        "session_id": "strict_1",
        "execution_agent": "broker",
        "max_position_weight": 1,  # an integer is a JSON number
        "max_orders_per_minute": 600.0,  # the integer 600 in JSON, as JSON Schema says
        "flatten_on_stop": True,
        "fee_bps": "2.5",
        "slippage_bps": "0",
        "slippage_size_scaled": False,
        "slippage_size_reference": "500.00",
    }
    as_strings = {"max_position_weight": "1", "max_orders_per_minute": "600", "flatten_on_stop": "true"}
    response = send(operator_client, SESSIONS, {**body, **as_strings})
    assert fields(assert_api_error(response, 422, "invalid")) == set(as_strings)
    assert not TradingSession.objects.filter(pk="strict_1").exists()

    response = send(operator_client, SESSIONS, body, content_type="application/json; charset=utf-8")
    assert response.status_code == 201, response.content
    session = TradingSession.objects.get(pk="strict_1")
    stored = (session.max_position_weight, session.max_orders_per_minute, session.flatten_on_stop)
    assert stored == (1, 600, True)


BAD_CONFIG_VALUES = [
    ("tick_seconds", "2"),
    ("tick_seconds", "٢"),
    ("tick_seconds", "1e0"),
    ("tick_seconds", True),
    ("tick_seconds", None),
    ("seed", "7"),
    ("seed", "７"),
    ("seed", "1_000"),
    ("seed", 7.5),
    ("seed", False),
    ("news_on_jumps", "yes"),
    ("news_on_jumps", 1),
    ("news_on_jumps", None),
    ("source", 1),
    ("initial_prices", ["BTC-USD"]),
    ("initial_prices", "BTC-USD=100"),
    ("initial_prices", {"BTC-USD": "65000"}),
    ("initial_prices", {"BTC-USD": "６５０００"}),
    ("initial_prices", {"BTC-USD": None}),
]


@pytest.mark.parametrize(
    ("field", "value"), BAD_CONFIG_VALUES, ids=[f"{f}={v!r}" for f, v in BAD_CONFIG_VALUES]
)
def test_an_agent_config_value_outside_its_type_is_422(debug, graph, operator_client, field, value):
    response = send(operator_client, CONFIG, {field: value})
    body = assert_api_error(response, 422)
    assert {f.split(".")[0] for f in fields(body)} == {field}, body
    agent = Agent.objects.get(pk=AGENT_ID)
    assert (agent.config, agent.config_version) == (graph["feed"].config, graph["feed"].config_version)


def test_an_agent_config_is_stored_only_in_its_documented_types(graph, operator_client):
    body = {"tick_seconds": 2, "seed": 11, "news_on_jumps": False, "initial_prices": {"BTC-USD": 70000}}
    as_strings = {
        "tick_seconds": "2",
        "seed": "11",
        "news_on_jumps": "false",
        "initial_prices": {"BTC-USD": "70000"},
    }
    response = send(operator_client, CONFIG, {**body, **as_strings})
    assert fields(assert_api_error(response, 422, "invalid_config")) == set(as_strings)
    assert Agent.objects.get(pk=AGENT_ID).config_version == graph["feed"].config_version

    response = send(operator_client, CONFIG, body)
    assert response.status_code == 200, response.content
    config = Agent.objects.get(pk=AGENT_ID).config
    stored = (config["tick_seconds"], config["seed"], config["initial_prices"])
    assert stored == (2.0, 11, {"BTC-USD": 70000.0})


def test_a_viewer_is_refused_for_permission_before_the_body_is_read(graph, viewer_client):
    for path in (SESSIONS, CONFIG):
        assert_api_error(
            send(viewer_client, path, "not json", content_type="text/plain"), 403, "permission_denied"
        )
        assert_api_error(send(viewer_client, path, '{"a": 1, "a": 2}'), 403, "permission_denied")
        assert_api_error(send(viewer_client, path, {"symbols": "BTC-USD"}), 403, "permission_denied")

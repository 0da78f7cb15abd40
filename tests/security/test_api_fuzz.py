"""Property-based fuzzing of the JSON API from its own OpenAPI schema (schemathesis).

Every operation of /api/openapi.json is called with generated requests, valid and
invalid, through the real Django stack (middleware included) in this process, as an
operator with a bearer token and as an anonymous caller. Each response must not be a
5xx and must match the schema: a documented status code, the documented content type
and a body of the documented shape. Path ids are often real ones (the demo graph), so
the endpoints go past their 404s.

Bounded: MAX_EXAMPLES per operation and derandomized, so a run is reproducible and takes
seconds. Requests run inside the test's transaction (`db`): control actions record their
change but send no Celery task (on_commit never fires), and nothing outlives the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError
from schemathesis.core import NOT_SET
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from control.api.app import api
from control.api.sessions import SessionIn
from control.demo import DEMO_AGENTS, DEMO_SESSIONS, seed_agents, seed_sessions
from control.models import ApiToken, hash_token

MAX_EXAMPLES = 15

# The schema /api/openapi.json serves (to logged-in callers: none exists at import), and
# the app itself as the server: the WSGI handler runs the whole middleware stack in this
# process, as daphne's ASGI handler does.
schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = WSGIHandler()

KNOWN_IDS = {
    "agent_id": [a["agent_id"] for a in DEMO_AGENTS],
    "session_id": [s["session_id"] for s in DEMO_SESSIONS],
}

CREATE_SESSION = "POST /api/paper-trading/sessions"
# Operations whose valid-looking bodies can still be refused with 422 for a reason the
# schema cannot express: a session's decision agent must exist, an agent's config is
# validated by its kind. There a 422 must still be the API's error with the field named.
SEMANTIC_422 = {CREATE_SESSION, "POST /api/agents/{agent_id}/config"}

fuzz_settings = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    # The fixtures below (database rows, a token) are meant to be shared by the examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# A fixed token (stored hashed, like any other) so schemathesis may build requests before
# the test's fixtures run.
OPERATOR_TOKEN = "pt_fuzzing-operator-token"


@pytest.fixture(autouse=True)
def _demo_graph(db) -> Iterator[None]:
    """The demo agents and sessions; Django's per-request connection closing switched off
    (as django.test.Client does) so every request stays inside the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    seed_agents()
    seed_sessions()
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def operator_token(operator) -> str:
    ApiToken.objects.create(user=operator, key_hash=hash_token(OPERATOR_TOKEN), prefix=OPERATOR_TOKEN[:8])
    return OPERATOR_TOKEN


class OperatorBearer:
    """schemathesis auth: the operator's bearer token of the running test."""

    def get(self, case: Any, context: Any) -> str:
        return OPERATOR_TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy:
    """Half of the time, a real id in place of the generated one."""
    names = [n for n in path_parameters or {} if n in KNOWN_IDS]
    if not names:
        return st.just(path_parameters)
    real = st.fixed_dictionaries({n: st.sampled_from(KNOWN_IDS[n]) for n in names})
    return st.one_of(st.just(path_parameters), real.map(lambda ids: {**path_parameters, **ids}))


def validate_semantic_422(case: Any, response: Any) -> None:
    """A schema-valid body refused for its meaning: the API's 422 naming each bad field."""
    body = response.json()
    assert body["code"] in ("invalid", "invalid_config"), body
    assert body["errors"] and all("field" in e and e["reason"] for e in body["errors"]), body


def validate_session_types(case: Any, response: Any) -> None:
    """The semantic exception is for meaning only: the types agree with the schema. A body
    the schema allows passes the API's strict model (a 422 then comes from the session's
    rules), and a body generated against the schema is refused by the model."""
    body = case.body
    if case.meta is None or ParameterLocation.BODY not in case.meta.components or body is NOT_SET:
        return
    if isinstance(body, bytes | str):
        return  # not a JSON value: refused before the model (control.api.parser)
    try:
        SessionIn.model_validate_json(json.dumps(body))
    except PydanticValidationError as exc:
        assert case.meta.is_negative_at(ParameterLocation.BODY), (case.body, exc)
        assert response.status_code in (400, 401, 403, 422), response.status_code
    else:
        assert not case.meta.is_negative_at(ParameterLocation.BODY), case.body


def call_and_validate(case: Any) -> None:
    excluded = []
    if case.operation.label in SEMANTIC_422:
        excluded.append(positive_data_acceptance)
    response = case.call_and_validate(excluded_checks=excluded)
    if excluded and response.status_code == 422:
        validate_semantic_422(case, response)
    if case.operation.label == CREATE_SESSION:
        validate_session_types(case, response)


@schema.hooks.apply(flatmap_path_parameters)
@schema.auth.apply(OperatorBearer, refresh_interval=None)
@schema.parametrize()
@fuzz_settings
def test_operator_requests_get_documented_answers(case, operator_token):
    call_and_validate(case)


@schema.hooks.apply(flatmap_path_parameters)
@schema.parametrize()
@fuzz_settings
def test_anonymous_requests_get_documented_refusals(case):
    response = case.call_and_validate()
    # Authentication comes first: an anonymous caller learns nothing about the values (no 422, 415).
    assert response.status_code in (400, 401, 404, 405, 413, 429), response.status_code


def test_the_schema_states_every_bound_in_json_schema_words():
    """A bound pydantic could not place (on a union, after a validator) lands in the schema
    as an unknown key ("ge"), which clients and this fuzzer ignore: the contract would
    offer values the server refuses."""
    misplaced: list[str] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            misplaced.extend(f"{where}.{key}" for key in ("ge", "gt", "le", "lt") if key in node)
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(api.get_openapi_schema(), "openapi")
    assert not misplaced, misplaced

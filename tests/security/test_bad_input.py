"""Bad input: traversal and oversized parameters on the log tail, NUL bytes, and request
bodies over DATA_UPLOAD_MAX_MEMORY_SIZE. Each is refused with a 4xx that says why, never
a 500, and no file outside LOG_DIR is ever read."""

from __future__ import annotations

import json
import os
from urllib.parse import urlencode

import pytest

from agents.models import Agent
from control.models import ApiToken

pytestmark = pytest.mark.django_db

SECRET = "TOP-SECRET-OUTSIDE-LOG-DIR"


@pytest.fixture
def log_dir(settings, tmp_path):
    """LOG_DIR with feed's log in it, and a file beside it (outside LOG_DIR) that must
    never be served."""
    settings.LOG_DIR = tmp_path / "logs"
    settings.LOG_DIR.mkdir()
    (settings.LOG_DIR / "feed.log").write_text("2026-01-01T00:00:00Z INFO agents.agent.feed: hello\n")
    (tmp_path / "outside.log").write_text(f"{SECRET}\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(f"{SECRET}\n")
    return settings.LOG_DIR


@pytest.fixture
def bearer(operator) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(operator)[1]}"}


def assert_refused(response, statuses=(400, 404)) -> dict:
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert SECRET.encode() not in response.content
    body = response.json()
    assert body["detail"] and body["code"], body
    return body


TRAVERSALS = [
    "/system/agents/../outside/logs",
    "/system/agents/..%2Foutside/logs",
    "/system/agents/%2E%2E%2Foutside/logs",
    "/system/agents/..%2F..%2Fetc%2Fpasswd/logs",
    "/system/agents/%2Fetc%2Fpasswd/logs",
    "/system/agents/feed%00/logs",
    "/system/agents/feed%2F..%2F..%2Foutside/logs",
    "/system/agents/" + "a" * 5000 + "/logs",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_and_odd_ids_on_the_log_tail_are_refused(make_agent, log_dir, viewer_client, path):
    make_agent("feed")
    assert_refused(viewer_client.get(path))


def test_an_agent_whose_id_would_escape_log_dir_gets_no_file(make_agent, log_dir, viewer_client):
    """Even an id stored in the database (the admin, a bad migration) is not a path."""
    Agent.objects.create(agent_id="../outside", name="x", kind="market_data", role="data_feed")
    assert_refused(viewer_client.get("/system/agents/..%2Foutside/logs"))


def test_a_symlink_planted_in_log_dir_is_not_followed_out(make_agent, log_dir, viewer_client):
    make_agent("feed")
    (log_dir / "feed.log").unlink()
    os.symlink(log_dir.parent / "outside.log", log_dir / "feed.log")
    assert_refused(viewer_client.get("/system/agents/feed/logs"))
    assert_refused(viewer_client.get("/system/agents/feed/logs?download=1"))


@pytest.mark.parametrize(
    "query",
    [
        "lines=0",
        "lines=-1",
        "lines=5001",
        "lines=1e9",
        "lines=" + "9" * 5000,
        "lines=%00",
        "level=SECRET",
        "lines=1.5",
    ],
)
def test_bad_tail_parameters_are_400_with_a_sentence(make_agent, log_dir, viewer_client, query):
    make_agent("feed")
    assert_refused(viewer_client.get(f"/system/agents/feed/logs?{query}"), statuses=(400,))


def test_the_tail_still_answers_good_parameters(make_agent, log_dir, viewer_client):
    make_agent("feed")
    body = viewer_client.get("/system/agents/feed/logs?lines=5000&level=info&q=HELLO").json()
    assert body["lines"] == ["2026-01-01T00:00:00Z INFO agents.agent.feed: hello"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/agents/feed%00",
        "/api/paper-trading/sessions/x%00/trades",
        "/sessions/x%00/",
        "/system/agents/feed%00/logs/view",
        "/api/paper-trading/sessions/runner/trades?limit=1%00",
        "/ui/feed?source=%00",
    ],
)
def test_nul_bytes_in_paths_and_queries_are_400(graph, viewer_client, path):
    """PostgreSQL cannot store or compare text with NUL: refused before any query."""
    body = assert_refused(viewer_client.get(path), statuses=(400,))
    assert body["code"] == "bad_request"


# --- request bodies ----------------------------------------------------------------------


def test_a_json_body_over_the_limit_is_413_in_json(graph, client, bearer, settings):
    body = json.dumps({"tick_seconds": 1, "pad": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    response = client.post("/api/agents/feed/config", body, content_type="application/json", **bearer)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in response.json()["detail"]
    graph["feed"].refresh_from_db()
    assert "pad" not in graph["feed"].config


def test_a_json_body_under_the_limit_reaches_validation(graph, client, bearer, settings):
    body = json.dumps({"pad": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - 100)})
    response = client.post("/api/agents/feed/config", body, content_type="application/json", **bearer)
    assert response.status_code == 422


def test_a_form_post_over_the_limit_is_413(graph, operator_client, settings):
    response = operator_client.post("/ui/sessions/new", {"name": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_a_form_with_too_many_fields_is_400_not_500(graph, operator_client):
    fields = urlencode({f"f{i}": "1" for i in range(5000)})  # 50 KB, under the size limit
    form = "application/x-www-form-urlencoded"
    response = operator_client.post("/ui/agents/order", fields, content_type=form)
    assert response.status_code == 400

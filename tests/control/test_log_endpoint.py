"""The log tail at /system/agents/<agent_id>/logs (docs/api.md "Log tail"), kept outside /api/."""

import pytest

from control.models import ApiToken

pytestmark = pytest.mark.django_db

SECRET = "top-secret-content-outside-the-log-dir"


@pytest.fixture
def log_dir(settings, tmp_path):
    path = tmp_path / "logs"
    path.mkdir()
    settings.LOG_DIR = path
    return path


@pytest.fixture
def outside_file(tmp_path):
    """A file next to LOG_DIR (not in it) that the endpoint must never serve."""
    path = tmp_path / "secret.log"
    path.write_text(f"2026-11-24T12:00:00.000Z INFO agents.agent.x: {SECRET}\n")
    return path


def line(i, level="INFO", agent_id="feed", message=None):
    return f"2026-11-24T12:00:{i % 60:02d}.000Z {level} agents.agent.{agent_id}: {message or f'message {i}'}"


def write_log(log_dir, agent_id, lines):
    path = log_dir / f"{agent_id}.log"
    path.write_text("".join(f"{text}\n" for text in lines))
    return path


def logs_url(agent_id="feed"):
    return f"/system/agents/{agent_id}/logs"


def assert_error(response, status):
    assert response.status_code == status, response.content
    body = response.json()
    assert isinstance(body["detail"], str) and " " in body["detail"].strip()
    return body


# --- who may read --------------------------------------------------------------------------


def test_anonymous_is_401_in_json(client, make_agent, log_dir):
    make_agent("feed")
    write_log(log_dir, "feed", [line(1)])
    body = assert_error(client.get(logs_url()), 401)
    assert body["code"] == "not_authenticated"


def test_a_viewer_can_read_the_log(viewer_client, make_agent, log_dir):
    make_agent("feed")
    write_log(log_dir, "feed", [line(1), line(2)])
    response = viewer_client.get(logs_url())
    assert response.status_code == 200
    assert response.json() == {"agent_id": "feed", "lines": [line(1), line(2)], "truncated": False}


def test_a_bearer_token_can_read_the_log(client, viewer, make_agent, log_dir):
    make_agent("feed")
    write_log(log_dir, "feed", [line(1)])
    _token, raw = ApiToken.issue(viewer)
    response = client.get(logs_url(), HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json()["lines"] == [line(1)]


def test_a_wrong_bearer_token_is_401(client, viewer, make_agent, log_dir):
    make_agent("feed")
    write_log(log_dir, "feed", [line(1)])
    response = client.get(logs_url(), HTTP_AUTHORIZATION="Bearer pt_wrong")
    assert assert_error(response, 401)["code"] == "not_authenticated"


# --- how many lines ---------------------------------------------------------------------------


def test_the_last_100_lines_are_returned_by_default(viewer_client, make_agent, log_dir):
    make_agent("feed")
    write_log(log_dir, "feed", [line(i) for i in range(150)])
    body = viewer_client.get(logs_url()).json()
    assert body["lines"] == [line(i) for i in range(50, 150)]
    assert body["truncated"] is True


def test_lines_asks_for_the_last_n_lines(viewer_client, make_agent, log_dir):
    make_agent("feed")
    write_log(log_dir, "feed", [line(i) for i in range(20)])
    body = viewer_client.get(logs_url(), {"lines": 5}).json()
    assert body["lines"] == [line(i) for i in range(15, 20)]
    assert body["truncated"] is True


def test_a_file_shorter_than_asked_is_returned_whole_and_not_truncated(viewer_client, make_agent, log_dir):
    make_agent("feed")
    write_log(log_dir, "feed", [line(i) for i in range(20)])
    body = viewer_client.get(logs_url(), {"lines": 20}).json()
    assert len(body["lines"]) == 20
    assert body["truncated"] is False


@pytest.mark.parametrize("lines", ["1", "5000"])
def test_lines_at_the_ends_of_the_range_are_accepted(viewer_client, make_agent, log_dir, lines):
    make_agent("feed")
    write_log(log_dir, "feed", [line(i) for i in range(3)])
    assert viewer_client.get(logs_url(), {"lines": lines}).status_code == 200


@pytest.mark.parametrize("lines", ["0", "5001", "abc", "-1", ""])
def test_lines_outside_1_to_5000_is_400(viewer_client, make_agent, log_dir, lines):
    make_agent("feed")
    write_log(log_dir, "feed", [line(1)])
    body = assert_error(viewer_client.get(logs_url(), {"lines": lines}), 400)
    assert "5000" in body["detail"]


# --- filters ------------------------------------------------------------------------------------


@pytest.fixture
def mixed_log(make_agent, log_dir):
    make_agent("feed")
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "INFO", "CRITICAL", "ERROR"]
    return write_log(log_dir, "feed", [line(i, level) for i, level in enumerate(levels)])


def test_level_keeps_lines_at_that_level_and_above(viewer_client, mixed_log):
    body = viewer_client.get(logs_url(), {"level": "ERROR"}).json()
    assert body["lines"] == [line(3, "ERROR"), line(5, "CRITICAL"), line(6, "ERROR")]
    assert body["truncated"] is False


def test_level_is_a_minimum_not_an_exact_match(viewer_client, mixed_log):
    body = viewer_client.get(logs_url(), {"level": "warning"}).json()
    assert [text.split()[1] for text in body["lines"]] == ["WARNING", "ERROR", "CRITICAL", "ERROR"]


def test_an_unknown_level_is_400(viewer_client, mixed_log):
    body = assert_error(viewer_client.get(logs_url(), {"level": "LOUD"}), 400)
    assert "LOUD" in body["detail"]


def test_q_keeps_lines_containing_the_substring_in_any_case(viewer_client, make_agent, log_dir):
    make_agent("feed")
    write_log(
        log_dir,
        "feed",
        [line(1, message="Order filled"), line(2, message="tick"), line(3, message="order REJECTED")],
    )
    body = viewer_client.get(logs_url(), {"q": "ORDER"}).json()
    assert body["lines"] == [line(1, message="Order filled"), line(3, message="order REJECTED")]


def test_a_search_text_over_200_characters_is_400(viewer_client, mixed_log):
    body = assert_error(viewer_client.get(logs_url(), {"q": "x" * 201}), 400)
    assert "too long" in body["detail"]
    assert viewer_client.get(logs_url(), {"q": "x" * 200}).status_code == 200


def test_level_and_q_combine(viewer_client, make_agent, log_dir):
    make_agent("feed")
    write_log(
        log_dir,
        "feed",
        [line(1, "ERROR", message="order failed"), line(2, "INFO", message="order ok"), line(3, "ERROR")],
    )
    body = viewer_client.get(logs_url(), {"q": "order", "level": "ERROR"}).json()
    assert body["lines"] == [line(1, "ERROR", message="order failed")]


# --- what cannot be read ---------------------------------------------------------------------------


def test_an_unknown_agent_is_404(viewer_client, make_agent, log_dir):
    # A file without an agent row is not served either: the id is looked up first.
    write_log(log_dir, "ghost", [line(1)])
    body = assert_error(viewer_client.get(logs_url("ghost")), 404)
    assert body["code"] == "not_found"


def test_a_known_agent_without_a_log_file_is_404(viewer_client, make_agent, log_dir):
    make_agent("feed")
    body = assert_error(viewer_client.get(logs_url()), 404)
    assert body["code"] == "no_log"


@pytest.mark.parametrize(
    ("url", "existing_agent_id"),
    [
        ("/system/agents/..%2F..%2Fetc%2Fpasswd/logs", None),
        ("/system/agents/%2e%2e/logs", ".."),
        ("/system/agents/..%2Fsecret/logs", "../secret"),
        ("/system/agents/%2e%2e%2fsecret/logs", "../secret"),
        ("/system/agents/..%5Csecret/logs", "..\\secret"),
    ],
)
@pytest.mark.parametrize("query", ["", "?download=1"])
def test_path_traversal_is_404_and_never_serves_the_outside_file(
    viewer_client, make_agent, log_dir, outside_file, url, existing_agent_id, query
):
    if existing_agent_id:
        make_agent(existing_agent_id)  # created without validation, as a bad import could
    response = viewer_client.get(url + query)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"  # a sentence, not a debug page
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert SECRET.encode() not in content
    assert b"root:" not in content


@pytest.mark.parametrize("query", ["", "?download=1"])
def test_a_symlink_to_a_file_outside_the_log_dir_is_404(
    viewer_client, make_agent, log_dir, outside_file, query
):
    make_agent("feed")
    (log_dir / "feed.log").symlink_to(outside_file)
    response = viewer_client.get(logs_url() + query)
    assert response.status_code == 404
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert SECRET.encode() not in content


# --- download ------------------------------------------------------------------------------------


def test_download_returns_the_whole_file_as_a_text_attachment(viewer_client, make_agent, log_dir):
    make_agent("feed")
    path = write_log(log_dir, "feed", [line(i) for i in range(300)])
    response = viewer_client.get(logs_url(), {"download": "1", "lines": "5"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Disposition"].startswith("attachment")
    assert 'filename="feed.log"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == path.read_bytes()

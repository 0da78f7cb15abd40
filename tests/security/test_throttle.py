"""Password guessing is throttled: failed logins per username and per address, and
unknown bearer tokens per address, on real Redis under this run's prefix."""

from __future__ import annotations

import pytest
from django.test import Client

from control.models import ApiToken
from tests.conftest import wait_for
from tests.security.conftest import clear_throttle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _limits(settings) -> None:
    """Small limits; the counters are cleared around each test (tests/security/conftest.py)."""
    settings.LOGIN_THROTTLE_FAILURES = 3
    settings.LOGIN_THROTTLE_ADDRESS_FAILURES = 5
    settings.TOKEN_THROTTLE_FAILURES = 3
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 60


def login(client: Client, username: str, password: str, path: str = "/login/", addr: str = "10.0.0.1"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=addr)


def fail(client: Client, username: str, times: int, **kwargs) -> None:
    for _ in range(times):
        assert login(client, username, "wrong", **kwargs).status_code == 200


def test_a_good_login_works_and_a_bad_one_is_refused(operator):
    client = Client()
    assert login(client, "operator", "wrong").status_code == 200
    assert login(client, "operator", "pw-operator").status_code == 302


def test_after_n_failures_the_right_password_is_refused_with_429(operator):
    client = Client()
    fail(client, "operator", 3)
    response = login(client, "operator", "pw-operator")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert 0 < int(response["Retry-After"]) <= 60
    assert "_auth_user_id" not in client.session


def test_the_username_is_throttled_from_any_address_and_in_any_case(operator):
    fail(Client(), "operator", 3, addr="10.0.0.1")
    assert login(Client(), "OPERATOR ", "pw-operator", addr="10.9.9.9").status_code == 429


def test_an_address_trying_many_usernames_is_throttled(operator):
    client = Client()
    for name in ("a", "b", "c", "d", "e"):
        fail(client, name, 1)
    assert login(client, "operator", "pw-operator").status_code == 429
    assert login(Client(), "operator", "pw-operator", addr="10.0.0.2").status_code == 302


def test_the_admin_login_shares_the_throttle(operator):
    fail(Client(), "operator", 3, path="/admin/login/")
    assert login(Client(), "operator", "pw-operator").status_code == 429
    assert login(Client(), "operator", "pw-operator", path="/admin/login/").status_code == 429


def test_a_success_clears_the_usernames_failures(operator):
    client = Client()
    fail(client, "operator", 2)
    assert login(client, "operator", "pw-operator").status_code == 302
    fail(Client(), "operator", 2)
    assert login(Client(), "operator", "pw-operator").status_code == 302


def test_logins_are_allowed_again_when_the_window_passes(operator, settings):
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 1
    fail(Client(), "operator", 3)
    assert login(Client(), "operator", "pw-operator").status_code == 429
    wait_for(
        lambda: login(Client(), "operator", "pw-operator").status_code == 302,
        timeout=5,
        interval=0.2,
        what="the throttle window to pass",
    )


def test_unknown_bearer_tokens_from_an_address_are_throttled(graph, operator):
    client = Client(REMOTE_ADDR="10.0.0.7")
    for _ in range(3):
        assert client.get("/api/agents", HTTP_AUTHORIZATION="Bearer pt_guess").status_code == 401
    for url in ("/api/agents", "/system/agents/feed/logs", "/api/openapi.json"):
        response = client.get(url, HTTP_AUTHORIZATION="Bearer pt_guess")
        assert response.status_code == 429, url
        assert response.json()["code"] == "throttled"
        assert 0 < int(response["Retry-After"]) <= 60, url
    # Other addresses are not affected.
    other = Client(REMOTE_ADDR="10.0.0.8")
    assert other.get("/api/agents", HTTP_AUTHORIZATION="Bearer pt_guess").status_code == 401


@pytest.mark.parametrize("url", ["/api/agents", "/system/agents/feed/logs", "/api/openapi.json"])
def test_a_valid_token_works_from_an_address_others_guessed_from(graph, operator, url, settings, tmp_path):
    """A proxy or an office shares one address: its wrong guesses lock out no one else."""
    settings.LOG_DIR = tmp_path
    (tmp_path / "feed.log").write_text("2026-11-24T12:00:00.000Z INFO agents.agent.feed: up\n")
    _, raw = ApiToken.issue(operator)
    client = Client(REMOTE_ADDR="10.0.0.7")
    for _ in range(5):
        client.get("/api/agents", HTTP_AUTHORIZATION="Bearer pt_guess")
    assert client.get(url, HTTP_AUTHORIZATION="Bearer pt_guess").status_code == 429
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200, response.content


def test_every_login_429_says_when_to_retry(operator):
    for path in ("/login/", "/admin/login/"):
        fail(Client(), "operator", 3, path=path)
        response = login(Client(), "operator", "pw-operator", path=path)
        assert response.status_code == 429
        assert 0 < int(response["Retry-After"]) <= 60
        clear_throttle()


# Spellings the login form turns into "operator" (NFKC) or that differ only in case; each
# one must count against, and be refused by, the same counter as the plain name.
LOOK_ALIKES = [
    pytest.param("ｏｐｅｒａｔｏｒ", id="full-width"),
    pytest.param("𝐨𝐩𝐞𝐫𝐚𝐭𝐨𝐫", id="mathematical-bold"),
    pytest.param("ⓞⓟⓔⓡⓐⓣⓞⓡ", id="circled"),
    pytest.param("ᵒperator", id="superscript"),
    pytest.param("OpErAtOr", id="mixed-case"),
    pytest.param("\u3000operator\u3000", id="ideographic-spaces"),
]


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
@pytest.mark.parametrize("spelling", LOOK_ALIKES)
def test_a_look_alike_name_does_not_bypass_the_throttle(operator, path, spelling):
    operator.is_staff = True  # the admin's form refuses non-staff before any throttle matters
    operator.save()
    fail(Client(), "operator", 3, path=path)
    assert login(Client(), spelling, "pw-operator", path=path, addr="10.9.9.9").status_code == 429


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
@pytest.mark.parametrize("spelling", LOOK_ALIKES)
def test_failures_under_a_look_alike_name_count_for_the_plain_one(operator, path, spelling):
    operator.is_staff = True
    operator.save()
    fail(Client(), spelling, 3, path=path)
    assert login(Client(), "operator", "pw-operator", path=path, addr="10.9.9.9").status_code == 429


def test_a_ligature_spelling_shares_the_counter(django_user_model):
    django_user_model.objects.create_user("profit", password="pw-profit")
    fail(Client(), "pro\ufb01t", 3)  # "ﬁ" is one character; NFKC makes it "fi"
    assert login(Client(), "profit", "pw-profit", addr="10.9.9.9").status_code == 429


def test_the_full_width_name_logs_in_when_not_throttled(operator):
    """The form really does accept the look-alike (why the throttle must fold it)."""
    assert login(Client(), "ｏｐｅｒａｔｏｒ", "pw-operator").status_code == 302


@pytest.mark.parametrize("spelling", [*LOOK_ALIKES, pytest.param(" Operator ", id="padded")])
def test_every_spelling_has_the_plain_names_key(spelling):
    from control.throttle import login_name

    assert login_name(spelling) == "operator"

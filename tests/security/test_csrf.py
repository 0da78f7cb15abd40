"""CSRF: every form and htmx POST of a logged-in browser needs the token; a program with
a bearer token does not (a browser cannot send that header cross-site), but a session
cookie alone on the API does."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from control.models import ApiToken
from tests.security.routes import http_routes

pytestmark = pytest.mark.django_db

UI_POSTS = [r for r in http_routes() if r.path.startswith("/ui/") and r.name not in ("ui-feed", "ui-panel")]


@pytest.fixture
def browser(operator) -> Client:
    """A logged-in browser that enforces CSRF like a real deployment."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    return client


def page_token(client: Client) -> str:
    """The token the page gives htmx (hx-headers on <body>), as a browser would read it."""
    html = client.get("/").content.decode()
    headers = json.loads(re.search(r"<body hx-headers='([^']+)'", html).group(1))
    return headers["X-CSRFToken"]


def test_every_panel_action_without_the_token_is_403(graph, browser):
    assert len(UI_POSTS) >= 10
    for route in UI_POSTS:
        response = browser.post(route.path, {"order": "feed"}, HTTP_HX_REQUEST="true")
        assert response.status_code == 403, route.path
        assert b"CSRF" in response.content, route.path
    graph["feed"].refresh_from_db()
    assert graph["feed"].desired_state == "stopped"


def test_an_htmx_action_with_the_page_token_works(graph, browser):
    token = page_token(browser)
    response = browser.post("/ui/agents/feed/start", HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    graph["feed"].refresh_from_db()
    assert graph["feed"].desired_state == "running"


def test_the_new_session_form_needs_the_token(graph, browser):
    form = {"name": "Csrf", "symbols": "BTC-USD", "decision_agent": "decider", "starting_cash": "100"}
    assert browser.post("/ui/sessions/new", form).status_code == 403
    form["csrfmiddlewaretoken"] = page_token(browser)
    assert browser.post("/ui/sessions/new", form).status_code == 200


def test_the_login_form_needs_the_token(operator):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "operator", "password": "pw-operator"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_the_api_with_a_session_cookie_needs_the_token(graph, browser):
    response = browser.post("/api/agents/feed/start")
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    token = page_token(browser)
    assert browser.post("/api/agents/feed/start", HTTP_X_CSRFTOKEN=token).status_code == 200


def test_the_api_with_a_bearer_token_needs_no_csrf_token(graph, operator):
    _, raw = ApiToken.issue(operator)
    client = Client(enforce_csrf_checks=True)
    response = client.post("/api/agents/feed/start", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200, response.content


def test_a_bearer_token_does_not_exempt_a_session_cookie_from_the_check(graph, browser, operator):
    """A page of another site cannot add the header, but where a cookie rides along the
    cookie's check applies: the session is what a forged request would use."""
    _, raw = ApiToken.issue(operator)
    response = browser.post("/api/agents/feed/start", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403

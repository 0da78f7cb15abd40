"""Who may do what, on every route: read from the URLconf and the websocket routing
(tests.security.routes), so a route added later is covered without being listed here."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client

from agents.models import LogEntry
from tests.security.conftest import desired_states
from tests.security.routes import http_routes, websocket_paths

pytestmark = pytest.mark.django_db

# Routes that answer without a login, on purpose.
PUBLIC = {
    "healthz": "the liveness probe of load balancers (up or down, nothing else)",
    "favicon": "a redirect to the site's icon, which browsers ask for on any page",
    "login": "the login page",
    "admin-login": "the admin's login page (throttled, ahead of admin.site.urls)",
    "agent_logs_unknown_path": "a 404 sentence for any caller: it names nothing that exists",
    "api:api-root": "ninja's 404 for any caller (it only anchors the API's paths)",
}
UNSAFE = ("post", "put", "patch", "delete")
ROUTES = http_routes()
# The JSON routes; /api/docs is a page (anonymous browsers are sent to the login).
API = [
    r for r in ROUTES if r.path.startswith("/api/") and r.name not in PUBLIC and r.name != "api:openapi-view"
]
PAGES = [r for r in ROUTES if not r.path.startswith("/api/") and r.name not in PUBLIC]


def _refused_anonymously(response, route) -> bool:
    if response.status_code == 401:
        return response["Content-Type"].startswith("application/json")
    if response.status_code == 302:
        return response["Location"].startswith((resolve_url(settings.LOGIN_URL), "/admin/login/"))
    return response.status_code == 405


def _call(client: Client, method: str, path: str):
    """A request with an empty JSON object as the body of unsafe methods (a valid body,
    so a refusal cannot come from body validation before the permission check)."""
    if method == "get":
        return client.get(path)
    return getattr(client, method)(path, data="{}", content_type="application/json")


def test_every_route_is_known_to_this_suite():
    names = {r.name for r in ROUTES}
    assert set(PUBLIC) <= names, "a public route was renamed or removed: update PUBLIC"
    assert len(API) >= 20 and len(PAGES) >= 20


@pytest.mark.parametrize("method", ["get", *UNSAFE])
def test_anonymous_callers_are_refused_on_every_page_and_api_route(graph, method):
    client = Client()
    before = desired_states()
    admitted = []
    for route in ROUTES:
        if route.name in PUBLIC:
            continue
        response = _call(client, method, route.path)
        if not _refused_anonymously(response, route):
            admitted.append((route.path, response.status_code))
    assert not admitted, admitted
    assert desired_states() == before
    assert not LogEntry.objects.filter(source="control").exists()


def test_the_api_answers_anonymous_callers_401_in_json(graph):
    client = Client()
    for route in API:
        response = client.get(route.path)
        assert response.status_code in (401, 405), route.path
        if response.status_code == 401:
            assert response.json()["code"] == "not_authenticated", route.path


@pytest.mark.parametrize("method", UNSAFE)
def test_a_viewer_gets_403_on_every_control_action(graph, viewer_client, method):
    """Every unsafe request a viewer makes is refused (403; 405 where the route has no
    such method; the admin sends a non-staff user to its login), and changes nothing."""
    before = desired_states()
    wrong = []
    forbidden = 0
    for route in ROUTES:
        # Logging out is not a control action (and would end the test's session).
        if route.name in PUBLIC or route.name == "logout":
            continue
        response = _call(viewer_client, method, route.path)
        status = response.status_code
        if status == 403:
            forbidden += 1
        elif not (status == 405 or (status == 302 and route.path.startswith("/admin/"))):
            wrong.append((route.path, status))
    assert not wrong, wrong
    assert desired_states() == before
    assert not LogEntry.objects.filter(source="control").exists()
    if method == "post":
        # Every control action: the API's and the panel's (at least).
        assert forbidden >= 20


def test_a_viewer_can_read_every_page_and_api_read(graph, viewer_client):
    unreadable = []
    for route in ROUTES:
        if route.path.startswith("/admin/") or route.name in PUBLIC or route.name == "logout":
            continue
        status = viewer_client.get(route.path).status_code
        if status not in (200, 405):
            unreadable.append((route.path, status))
    # The agent has written no log yet: its tail is a 404 sentence; there is no session
    # called pause-all or resume-all (GET there reads such a session).
    assert unreadable == [
        ("/system/agents/feed/logs", 404),
        ("/api/paper-trading/sessions/pause-all", 404),
        ("/api/paper-trading/sessions/resume-all", 404),
    ], unreadable


def _websocket_close(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    """(whether the handshake was accepted, the close code) through the whole ASGI stack."""
    from tradingsite.asgi import application

    async def scenario() -> tuple[bool, int | None]:
        ws = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await ws.connect(timeout=5)
        if connected:  # the log tail accepts, then closes at once with its code
            message = await ws.receive_output(timeout=5)
            assert message["type"] == "websocket.close", message
            code = message.get("code")
        await ws.disconnect()
        return connected, code

    return async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", websocket_paths())
def test_anonymous_websockets_are_closed_with_4401(graph, path):
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    assert _websocket_close(path, headers)[1] == 4401


@pytest.mark.django_db(transaction=True)
def test_a_websocket_from_another_site_is_refused_even_with_a_session(graph, client, operator):
    """Cross-site websocket hijacking: the browser would send the cookie along."""
    client.force_login(operator)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    for path in websocket_paths():
        headers = [(b"origin", b"https://evil.example"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
        assert _websocket_close(path, headers)[0] is False, path

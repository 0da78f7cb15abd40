"""/ws/events/ takes an API bearer token, like the JSON API, for programs
(control.live.token_auth), through the whole ASGI application.

A program sends no Origin: a token socket needs none, a cookie socket still does. A bad
token is refused, a socket sent a bad token and a good cookie is still refused (the token
socket is not the cookie's), unknown tokens are throttled per address like the API's,
and a token deleted while its socket is open closes it.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from agents.models import Agent
from agents.states import Status
from control.live import socket_auth
from control.live.hub import hub
from control.models import ApiToken
from tests.security.test_socket_login import close_code

pytestmark = pytest.mark.django_db(transaction=True)

HOST = (b"host", b"127.0.0.1:8000")
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
DEADLINE = 8


def bearer(raw: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {raw}".encode())


def cookie_of(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def socket(path: str, headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    """A handshake through the whole ASGI application, from the address the Django test
    client uses (so the throttle counts both against one caller, as daphne would)."""
    from tradingsite.asgi import application

    async def from_loopback(scope, receive, send):
        return await application({**scope, "client": ["127.0.0.1", 50000]}, receive, send)

    return WebsocketCommunicator(from_loopback, path, headers=[HOST, *headers])


def handshake(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    """(accepted and still open, close code): a socket accepted only to be closed at once
    (the log tail says why in a close code) counts as refused, with that code."""

    async def scenario():
        ws = socket(path, headers)
        connected, code = await ws.connect(timeout=DEADLINE)
        if connected:
            code = await close_code(ws, 0.5)
            await ws.disconnect()
            connected = code is None
        return connected, code

    return async_to_sync(scenario)()


def test_a_program_with_a_token_and_no_origin_gets_json_events(graph, viewer):
    _, raw = ApiToken.issue(viewer)

    async def scenario():
        ws = socket("/ws/events/", [bearer(raw)])
        connected, _ = await ws.connect(timeout=DEADLINE)
        assert connected
        agent_id = await sync_to_async(lambda: Agent.objects.values_list("pk", flat=True).first())()
        # Wait (with a deadline) for the hub's first look, then change something.
        for _ in range(100):
            if hub._json._status:
                break
            await ws.receive_nothing(timeout=0.1)
        await sync_to_async(Agent.objects.filter(pk=agent_id).update)(status=Status.ERROR)
        while True:
            event = json.loads(await ws.receive_from(timeout=DEADLINE))
            if event["type"] == "agent.status" and event["data"]["agent_id"] == agent_id:
                break
        assert event["data"]["status"] == "error"
        await ws.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize(
    "raw",
    ["pt_not-a-token", "x", "pt_" + "A" * 43, "pt_\u00e9t\u00e9"],
    ids=["unknown", "short", "right-shape", "non-ascii"],
)
def test_a_bad_token_is_refused(viewer, raw):
    ApiToken.issue(viewer)
    header = (b"authorization", f"Bearer {raw}".encode())
    assert handshake("/ws/events/", [header]) == (False, socket_auth.CLOSE_UNAUTHENTICATED)


def test_a_bad_token_is_refused_even_with_a_good_cookie(operator):
    # The token decides: a token socket's cookies are dropped, so it is not the cookie's.
    assert handshake("/ws/events/", [bearer("pt_wrong"), cookie_of(operator)]) == (False, 4401)


def test_a_token_of_a_deactivated_user_is_refused(viewer):
    _, raw = ApiToken.issue(viewer)
    viewer.is_active = False
    viewer.save()
    assert handshake("/ws/events/", [bearer(raw)]) == (False, 4401)


@pytest.mark.parametrize("path", ["/ws/control/", "/ws/agents/feed/logs/"])
def test_the_page_sockets_take_no_token(graph, viewer, path):
    # Without an Origin the handshake is refused before any consumer runs; with the
    # site's Origin the token is not read, and no cookie means no login.
    _, raw = ApiToken.issue(viewer)
    connected, _ = handshake(path, [bearer(raw)])
    assert not connected
    assert handshake(path, [bearer(raw), ORIGIN]) == (False, 4401)


def test_a_cookie_socket_still_needs_the_site_origin(operator):
    assert handshake("/ws/events/", [cookie_of(operator)])[0] is False
    assert handshake("/ws/events/", [cookie_of(operator), ORIGIN])[0] is True
    # Another scheme than Bearer is not a token: the cookie rules apply.
    assert handshake("/ws/events/", [cookie_of(operator), (b"authorization", b"Basic eDp5")])[0] is False


def test_unknown_tokens_are_throttled_per_address_like_the_api(viewer):
    _, raw = ApiToken.issue(viewer)
    for _ in range(settings.TOKEN_THROTTLE_FAILURES):
        assert handshake("/ws/events/", [bearer("pt_guess")]) == (False, 4401)
    # Past the limit the handshake itself is refused (no consumer, no 4401)...
    connected, code = handshake("/ws/events/", [bearer("pt_guess")])
    assert not connected and code != 4401
    # ...and the API says the same to the same address.
    response = Client().get("/api/agents", HTTP_AUTHORIZATION="Bearer pt_guess")
    assert response.status_code == 429
    # A known token is never refused for others' guesses.
    assert handshake("/ws/events/", [bearer(raw)])[0] is True


def test_a_token_socket_closes_when_its_token_is_deleted(graph, viewer, monkeypatch):
    monkeypatch.setattr(socket_auth, "RECHECK_SECONDS", 0.2)
    token, raw = ApiToken.issue(viewer)

    async def scenario():
        ws = socket("/ws/events/", [bearer(raw)])
        connected, _ = await ws.connect(timeout=DEADLINE)
        assert connected
        # Open past several re-checks while the token holds.
        assert await close_code(ws, 1.0) is None
        await sync_to_async(token.delete)()
        code = await close_code(ws, DEADLINE)
        await ws.disconnect()
        return code

    assert async_to_sync(scenario)() == 4401

"""An open websocket closes within seconds when its login ends: logout, deactivation,
a password change (the session's auth hash no longer matches), or, for a socket opened
with the `control` permission, that permission removed. Every socket route, through the
whole ASGI application with a real session cookie (control.live.socket_auth)."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client

from control.live import socket_auth
from tests.security.routes import websocket_paths

pytestmark = pytest.mark.django_db(transaction=True)

HOST = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")]
# The re-check runs every RECHECK_SECONDS (2 s); shortened here so the suite stays quick.
RECHECK = 0.2
DEADLINE = 8


@pytest.fixture(autouse=True)
def _quick_recheck(monkeypatch, settings, tmp_path) -> None:
    monkeypatch.setattr(socket_auth, "RECHECK_SECONDS", RECHECK)
    settings.LOG_DIR = tmp_path
    (tmp_path / "feed.log").write_text("")


def logged_in(operator) -> tuple[Client, bytes]:
    client = Client()
    client.force_login(operator)
    return client, f"sessionid={client.cookies['sessionid'].value}".encode()


def log_out(client: Client, user) -> None:
    client.post("/logout/")


def deactivate(client: Client, user) -> None:
    user.is_active = False
    user.save()


def change_password(client: Client, user) -> None:
    user.set_password("another-password")
    user.save()


def remove_control(client: Client, user) -> None:
    control = Permission.objects.get(codename="control", content_type__app_label="control")
    user.user_permissions.remove(control)


async def close_code(ws: WebsocketCommunicator, deadline: float) -> int | None:
    """Read (and drop) pushes until the socket closes; None if still open at the deadline.

    Reads the communicator's queue directly: its receive_output() cancels the application
    on a timeout, and a socket that stays open is what some tests expect."""
    give_up = time.monotonic() + deadline
    while (left := give_up - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(ws.output_queue.get(), left)
        except TimeoutError:
            break
        if message["type"] == "websocket.close":
            return message.get("code")
    assert not ws.future.done(), "the consumer ended without closing"
    return None


def run(path: str, cookie: bytes, cause, *args, deadline: float = DEADLINE) -> int | None:
    from tradingsite.asgi import application

    async def scenario() -> int | None:
        ws = WebsocketCommunicator(application, path, headers=[*HOST, (b"cookie", cookie)])
        connected, _ = await ws.connect(timeout=DEADLINE)
        assert connected
        await sync_to_async(cause)(*args)
        code = await close_code(ws, deadline)
        await ws.disconnect()
        return code

    return async_to_sync(scenario)()


CAUSES = [
    pytest.param(log_out, id="logout"),
    pytest.param(deactivate, id="deactivated"),
    pytest.param(change_password, id="password-changed"),
]


@pytest.mark.parametrize("path", websocket_paths())
@pytest.mark.parametrize("cause", CAUSES)
def test_a_socket_closes_when_its_login_ends(graph, operator, path, cause):
    client, cookie = logged_in(operator)
    assert run(path, cookie, cause, client, operator) == 4401


@pytest.mark.parametrize("path", ["/ws/control/", "/ws/events/"])
def test_a_panel_socket_closes_when_the_control_permission_is_removed(graph, operator, path):
    client, cookie = logged_in(operator)
    assert run(path, cookie, remove_control, client, operator) == 4403


def test_the_log_tail_stays_open_without_control(graph, operator):
    """Viewers may read logs: losing `control` is no reason to stop the tail (several
    re-checks pass within the deadline)."""
    client, cookie = logged_in(operator)
    assert run("/ws/agents/feed/logs/", cookie, remove_control, client, operator, deadline=1.5) is None


@pytest.mark.parametrize("path", websocket_paths())
def test_an_unchanged_login_keeps_its_socket(graph, operator, path):
    _, cookie = logged_in(operator)
    assert run(path, cookie, lambda: None, deadline=1.5) is None

"""Websockets accept the site's own origin only: scheme, host and port (and the
CSRF_TRUSTED_ORIGINS), on every socket route, even with a valid session cookie."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from control.live.origin import origin_allowed
from tests.security.routes import websocket_paths

HOST = "127.0.0.1:8000"


def scope(origin: str | list[str] | None, host: str = HOST, scheme: str = "ws", **extra: str) -> dict:
    origins = [origin] if isinstance(origin, str) else origin or []
    headers = [(b"host", host.encode())] + [(b"origin", value.encode()) for value in origins]
    headers += [(name.encode(), value.encode()) for name, value in extra.items()]
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8000",
        "HTTP://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
    ],
)
def test_the_sites_own_origin_is_accepted(origin):
    assert origin_allowed(scope(origin))


def test_a_default_port_is_the_same_origin_written_or_not():
    assert origin_allowed(scope("http://127.0.0.1", host="127.0.0.1"))
    assert origin_allowed(scope("http://127.0.0.1:80", host="127.0.0.1"))
    assert origin_allowed(scope("https://localhost", host="localhost:443", scheme="wss"))


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("http://127.0.0.1:9999", id="other-port"),
        pytest.param("http://127.0.0.1", id="default-port-vs-8000"),
        pytest.param("https://127.0.0.1:8000", id="https-vs-http"),
        pytest.param("ws://127.0.0.1:8000", id="ws-scheme"),
        pytest.param("wss://127.0.0.1:8000", id="wss-scheme"),
        pytest.param("file://127.0.0.1:8000", id="file-scheme"),
        pytest.param("http://localhost:8000", id="other-allowed-host"),
        pytest.param("http://evil.example:8000", id="other-host"),
        pytest.param("http://127.0.0.1.evil.example:8000", id="suffix-host"),
        pytest.param("null", id="null"),
        pytest.param("", id="empty"),
        pytest.param("http://127.0.0.1:99999", id="bad-port"),
        pytest.param("http://evil@127.0.0.1:8000", id="userinfo"),
        pytest.param(None, id="missing"),
        pytest.param(["http://127.0.0.1:8000", "http://evil.example"], id="two-origins"),
    ],
)
def test_other_origins_are_refused(origin):
    assert not origin_allowed(scope(origin))


def test_an_https_page_matches_a_wss_socket_or_the_trusted_proxy_header(settings):
    assert origin_allowed(scope("https://127.0.0.1:8000", scheme="wss"))
    assert not origin_allowed(scope("http://127.0.0.1:8000", scheme="wss"))
    # Behind a TLS proxy the socket is plain ws; the proxy's header says the page is https.
    assert not origin_allowed(scope("https://127.0.0.1", host="127.0.0.1", **{"x-forwarded-proto": "https"}))
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(scope("https://127.0.0.1", host="127.0.0.1", **{"x-forwarded-proto": "https"}))
    assert not origin_allowed(scope("http://127.0.0.1", host="127.0.0.1", **{"x-forwarded-proto": "https"}))


def test_a_host_outside_allowed_hosts_is_refused_even_when_origin_matches():
    """DNS rebinding: evil.example resolving to this machine names itself in both."""
    assert not origin_allowed(scope("http://evil.example:8000", host="evil.example:8000"))


def test_trusted_origins_match_scheme_host_and_port(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://panel.example.com", "https://*.corp.example"]
    assert origin_allowed(scope("https://panel.example.com"))
    assert origin_allowed(scope("https://ops.corp.example"))
    assert not origin_allowed(scope("http://panel.example.com"))
    assert not origin_allowed(scope("https://panel.example.com:8443"))
    assert not origin_allowed(scope("http://ops.corp.example"))
    assert not origin_allowed(scope("https://corp.example.evil"))


# --- through the whole ASGI application, on every route, with a valid cookie -------------


def _handshake(path: str, headers: list[tuple[bytes, bytes]]) -> bool:
    from tradingsite.asgi import application

    async def scenario() -> bool:
        ws = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await ws.connect(timeout=5)
        await ws.disconnect()
        return connected

    return async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", websocket_paths())
@pytest.mark.parametrize(
    "origin",
    [b"http://127.0.0.1:9999", b"https://127.0.0.1:8000", b"http://localhost:8000", b"null", None],
    ids=["other-port", "other-scheme", "other-host", "null", "missing"],
)
def test_every_route_refuses_another_origin_with_a_valid_cookie(graph, client, operator, path, origin):
    client.force_login(operator)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    base = [(b"host", HOST.encode()), (b"cookie", cookie)]
    assert not _handshake(path, base + ([(b"origin", origin)] if origin else []))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", websocket_paths())
def test_every_route_accepts_its_own_origin(graph, client, operator, path, settings, tmp_path):
    settings.LOG_DIR = tmp_path
    (tmp_path / "feed.log").write_text("")
    client.force_login(operator)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"host", HOST.encode()), (b"cookie", cookie), (b"origin", b"http://127.0.0.1:8000")]
    assert _handshake(path, headers)

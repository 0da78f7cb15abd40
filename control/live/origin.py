"""Which pages may open the panel's websockets: the site's own, and no other.

A browser sends the session cookie with a websocket handshake whatever page opens it,
so a page served from another port, scheme or host on the same machine could read the
live data with the user's login. Like Django's CSRF origin check for forms, the
handshake's Origin must be the site's own origin, the scheme, host and port the socket
was reached at (the Host header, itself one of ALLOWED_HOSTS; https when the socket is
wss or the trusted proxy header says so), or one of CSRF_TRUSTED_ORIGINS (the same
exact and `*.domain` forms Django accepts). channels' AllowedHostsOriginValidator
compared the host only, so any port or scheme passed.

A handshake without an Origin, or with `null` (a sandboxed frame, a file), is refused:
browsers always send one, and without a token only a cookie could authenticate a program
that omits it. A handshake with an API token on a route that takes one
(control.live.token_auth) needs no Origin: its cookies are dropped, so it is the token's
user's alone, and a page cannot set the header.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from control.live.token_auth import bearer_token, without_cookies

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, or None for anything else."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port out of range, bad brackets
        return None
    if scheme not in DEFAULT_PORTS or not host or parts.path not in ("", "/") or parts.query:
        return None
    if parts.username is not None or parts.password is not None:  # never in a real Origin
        return None
    return scheme, host.lower().rstrip("."), port or DEFAULT_PORTS[scheme]


def _headers(scope: dict[str, Any]) -> dict[bytes, list[str]]:
    found: dict[bytes, list[str]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.lower(), []).append(value.decode("latin-1"))
    return found


def _is_secure(scope: dict[str, Any], headers: dict[bytes, list[str]]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, secure_value = proxy
        header = name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        values = headers.get(header, [])
        return len(values) == 1 and values[0].split(",")[0].strip() == secure_value
    return False


def _allowed_hosts() -> list[str]:
    # As HttpRequest.get_host(): with DEBUG and no ALLOWED_HOSTS, the local names.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def site_origin(scope: dict[str, Any]) -> tuple[str, str, int] | None:
    """The origin the socket was reached at, or None when its Host is not allowed."""
    headers = _headers(scope)
    hosts = headers.get(b"host", [])
    if len(hosts) != 1:
        return None
    domain, _ = split_domain_port(hosts[0])
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    scheme = "https" if _is_secure(scope, headers) else "http"
    return _origin(f"{scheme}://{hosts[0]}")


def _trusted(origin: str, parsed: tuple[str, str, int]) -> bool:
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "*" in trusted:
            # Django's form: scheme://*.domain[:port], any subdomain of it (port exact).
            scheme, _, netloc = trusted.partition("://")
            if scheme.lower() == parsed[0] and is_same_domain(urlsplit(origin).netloc.lower(), netloc[1:]):
                return True
        elif _origin(trusted) == parsed:
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the handshake's Origin is the site's own (see the module docstring)."""
    origins = _headers(scope).get(b"origin", [])
    if len(origins) != 1:
        return False
    parsed = _origin(origins[0])
    if parsed is None:  # "null", another scheme (ws:, file:, chrome-extension:), junk
        return False
    return parsed == site_origin(scope) or _trusted(origins[0].strip(), parsed)


class SameOriginOnly:
    """ASGI middleware for the websocket router: refuses (closes before accepting) a
    handshake from another origin, whatever route it asks for."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if bearer_token(scope) is not None:
            return await self.application(without_cookies(scope), receive, send)
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

"""/ws/events/ is for programs: it also takes an API token, `Authorization: Bearer <token>`
in the handshake's headers, as the JSON API does.

A token socket is the token's user's and nobody else's: its cookies are dropped before
the session is read (control.live.origin.SameOriginOnly), so a socket sent both is not
the cookie's. It needs no Origin (a program sends none, and a browser's WebSocket cannot
set the header, so no page can borrow a token this way); a cookie socket still needs its
own site's. The same rules as the API's: an unknown token is refused (the socket closes
with 4401), and unknown tokens count against the caller's address (control.throttle),
past the limit refused before the handshake. The login watch re-checks the token while
the socket is open (control.live.socket_auth): a deleted token, or its user deactivated,
closes it.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from control.auth import bearer_user
from control.errors import Throttled
from control.models import ApiToken

# The socket routes that take a token: the JSON events. The page's own sockets (the
# htmx parts, the log tail) are for the logged-in browser only.
TOKEN_PATHS = frozenset({"/ws/events/"})
SCOPE_KEY = "api_token"


@sensitive_variables("raw")
def bearer_token(scope: dict[str, Any]) -> str | None:
    """The token of a single `Authorization: Bearer <token>` header on a route that takes
    one, else None."""
    if scope.get("type") != "websocket" or scope.get("path") not in TOKEN_PATHS:
        return None
    values = [value for name, value in scope.get("headers", []) if name.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, raw = values[0].decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    return raw.strip()


def without_cookies(scope: dict[str, Any]) -> dict[str, Any]:
    """The scope with its Cookie headers removed: a token socket is not the cookie's."""
    return {**scope, "headers": [(n, v) for n, v in scope.get("headers", []) if n.lower() != b"cookie"]}


@sensitive_variables("raw")
def _token_user(scope: dict[str, Any], raw: str):
    """bearer_user over the handshake: the same lookup, bookkeeping and throttle."""
    request = HttpRequest()
    request.META["REMOTE_ADDR"] = (scope.get("client") or ("",))[0] or ""
    request.META["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    return bearer_user(request)


@database_sync_to_async
def token_still_valid(raw: str):
    """The token's user while the token exists and the user is active, else AnonymousUser."""
    return ApiToken.user_for(raw) or AnonymousUser()


class TokenAuth:
    """ASGI middleware inside channels' AuthMiddlewareStack: on a token route, the user is
    the bearer token's (AnonymousUser for an unknown one, so the consumer closes 4401)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        raw = bearer_token(scope)
        if raw is None:
            return await self.application(scope, receive, send)
        try:
            user = await database_sync_to_async(_token_user)(scope, raw)
        except Throttled:
            return await WebsocketDenier()(scope, receive, send)
        scope = {**scope, "user": user or AnonymousUser(), SCOPE_KEY: raw}
        return await self.application(scope, receive, send)

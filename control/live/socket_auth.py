"""A websocket's login is checked for as long as the socket is open, not only at connect.

The user is read from the session once, at the handshake; after that the socket would
keep streaming after a logout, a deactivation, a password change (Django ends every
other session then, through the session's auth hash) or a removed permission. Every
socket route runs one `LoginWatch`: every RECHECK_SECONDS it reads the session again
from the session store (not the copy the handshake loaded) and the user from the
database, with channels' get_user, which applies Django's own rules (the session's
user id and backend, an active user, a matching auth hash). When the login is gone the
socket closes with 4401; when it was opened with the `control` permission and that is
gone, with 4403 (the page reloads and renders for a viewer).

Polling rather than a broadcast on logout: it also catches what no signal announces
(a user deactivated or a permission removed in the admin or in the shell), and costs
one small query per socket every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any

from channels.auth import get_user
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from control.auth import may_control
from control.live.token_auth import SCOPE_KEY, token_still_valid

log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


async def login_lost(scope: dict[str, Any], *, had_control: bool) -> int | None:
    """The close code when the socket's login no longer holds, else None."""
    original = scope.get("user")
    if original is None or not original.is_authenticated:
        return CLOSE_UNAUTHENTICATED
    if SCOPE_KEY in scope:  # a program's socket: its API token (control.live.token_auth)
        user = await token_still_valid(scope[SCOPE_KEY])
    elif "session" in scope:
        key = scope["session"].session_key
        if not key:
            return CLOSE_UNAUTHENTICATED
        user = await get_user({"session": import_module(settings.SESSION_ENGINE).SessionStore(key)})
    else:
        # Only a scope built without the session middleware (a test driving a consumer
        # directly): the user's own state is still checked.
        user = await _reload(original.pk)
    if not user.is_authenticated or user.pk != original.pk:
        return CLOSE_UNAUTHENTICATED
    if had_control and not await database_sync_to_async(may_control)(user):
        return CLOSE_FORBIDDEN
    return None


@database_sync_to_async
def _reload(pk):
    user = get_user_model()._default_manager.filter(pk=pk).first()
    return user if user is not None and user.is_active else AnonymousUser()


class LoginWatch:
    """Re-checks a socket's login every RECHECK_SECONDS; calls `on_lost(code)` once when
    it no longer holds. start() after the accept, stop() in disconnect()."""

    def __init__(
        self, scope: dict[str, Any], on_lost: Callable[[int], Awaitable[None]], *, had_control: bool
    ) -> None:
        self.scope = scope
        self.on_lost = on_lost
        self.had_control = had_control
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="socket-login-watch")

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            try:
                code = await login_lost(self.scope, had_control=self.had_control)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is down: keep the socket, try again later
                log.warning("could not re-check a socket's login", exc_info=True)
                continue
            if code is not None:
                with contextlib.suppress(Exception):
                    await self.on_lost(code)
                return

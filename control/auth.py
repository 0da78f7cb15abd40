"""Who is calling: a logged-in browser session or a program with a bearer token."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_safe

from control import throttle
from control.errors import Forbidden, Throttled, json_error
from control.models import CONTROL_PERMISSION, ApiToken, hash_token


# Error reports (ADMINS mail, the debug page) list each frame's local variables: the raw
# token is hidden here, and in the frames called from here that name it the same
# (Django applies the nearest caller's list: ApiToken.user_for's `raw`).
@sensitive_variables("header", "raw")
def bearer_user(request: HttpRequest):
    """The active user behind `Authorization: Bearer <token>`, or None (no such header,
    or an unknown token).

    A known token is always accepted: a valid credential is never refused because others
    guessed wrong from the same address (a proxy, an office). An unknown token counts
    against the caller's address (control.throttle); past the limit, unknown tokens from
    there raise Throttled (429 with Retry-After) instead of answering None (401) until
    the window passes. The throttle cannot let a guess through, since a token holds 256
    random bits; it tells a misconfigured client to stop and keeps guessing visible.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    user = ApiToken.user_for(raw.strip())
    if user is not None:
        ApiToken.objects.filter(key_hash=hash_token(raw.strip())).update(last_used_at=timezone.now())
        return user
    wait = throttle.token_wait(request)
    if wait:
        raise Throttled(
            f"Too many unknown tokens from this address; try again in {throttle.minutes(wait)}.",
            retry_after=wait,
        )
    throttle.token_failed(request)
    return None


def request_user(request: HttpRequest):
    """The session user if logged in, else the bearer token's user, else None.

    Raises Throttled like bearer_user: every caller answers it with its 429."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user
    user = bearer_user(request)
    if user is not None:
        request.user = user
    return user


def may_control(user) -> bool:
    """Whether the user may act (start, stop, change an agent or a session), not only
    watch. The one rule for the API, the panel and the admin."""
    return user.is_active and user.has_perm(CONTROL_PERMISSION)


def require_control(user) -> None:
    """Raise Forbidden (403) unless the user may act (not only watch)."""
    if not may_control(user):
        raise Forbidden("You can watch but not act: your account lacks the 'control' permission.")


def docs_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For /api/docs and /api/openapi.json: a logged-in user or a bearer token, like the
    API itself. A browser is sent to the login page; a program gets the API's 401. Only
    GET and HEAD: they change nothing."""

    @require_safe
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            user = request_user(request)
        except Throttled as exc:
            return exc.response()
        if user is not None:
            return view(request, *args, **kwargs)
        if request.path.endswith("/docs"):
            return redirect_to_login(request.get_full_path())
        detail = "Log in, or send 'Authorization: Bearer <token>' (manage.py issue_token)."
        return json_error(401, detail, "not_authenticated")

    return wrapper

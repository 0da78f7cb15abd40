"""Throttling of password guessing: failed logins per username and per address, and
unknown bearer tokens per address.

Counters are Redis keys under REDIS_PREFIX (`throttle:<scope>:<sha256 of the value>`),
shared by every web process. A counter starts at the first failure and expires
LOGIN_THROTTLE_WINDOW_SECONDS later (a fixed window): once it reaches its limit, every
login attempt is refused, even with the right password, until the window passes; unknown
bearer tokens get 429 instead of 401, but a valid token is still accepted (control.auth).
Every refusal is a 429 with Retry-After. A successful login clears its username's
counter. Refused attempts do not count, so the window is not extended by a client that
keeps trying.

Chosen over django-axes: that needs its own models (or cache), an authentication backend
that makes authenticate() without a request fail (the test client's login(), scripts),
and would not cover bearer tokens; this is one module on the Redis every process has.
If Redis does not answer, attempts are allowed (and a warning logged): the control plane
cannot work without Redis anyway, and a login page that refuses everyone would hide it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from functools import wraps

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from agents.runtime.redis import get_redis

log = logging.getLogger(__name__)


def _key(scope: str, value: str) -> str:
    # Hashed: usernames and addresses are not stored, and any text makes a valid key.
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{settings.REDIS_PREFIX}throttle:{scope}:{digest}"


def client_address(request: HttpRequest) -> str:
    """The peer address (REMOTE_ADDR). Behind a proxy every client shares the proxy's:
    forwarded headers are not trusted, since any client can send them."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def login_name(username: str) -> str:
    """The name a login attempt counts against: every spelling that can log in as one
    account gives the same name.

    The login form strips the name and applies the user model's normalize_username
    (NFKC) before the lookup, so full-width letters, ligatures ("\ufb01" is "fi") and other
    compatibility forms reach the same account; they must reach the same counter.
    Case is folded too (and normalised again, since folding can undo NFKC): the lookup
    is case-sensitive, so this only makes "Operator" and "operator" share a counter,
    which costs nothing and leaves no case to try.
    """
    normalize = get_user_model().normalize_username
    name = normalize(username.strip()).strip()
    return normalize(name.casefold())


def _login_limits(request: HttpRequest, username: str) -> list[tuple[str, int]]:
    return [
        (_key("login-user", login_name(username)), settings.LOGIN_THROTTLE_FAILURES),
        (_key("login-addr", client_address(request)), settings.LOGIN_THROTTLE_ADDRESS_FAILURES),
    ]


def _token_limits(request: HttpRequest) -> list[tuple[str, int]]:
    return [(_key("token-addr", client_address(request)), settings.TOKEN_THROTTLE_FAILURES)]


def _blocked_for(limits: list[tuple[str, int]]) -> int:
    """Seconds until the attempt is allowed again (0: allowed now)."""
    try:
        client = get_redis()
        counts = client.mget([key for key, _ in limits])
        wait = 0
        for (key, limit), count in zip(limits, counts, strict=True):
            if count is not None and int(count) >= limit:
                wait = max(wait, client.ttl(key), 1)
        return wait
    except redis.RedisError as exc:
        log.warning("login throttle: Redis did not answer (%s); the attempt is allowed", exc)
        return 0


def _fail(limits: list[tuple[str, int]]) -> None:
    try:
        pipe = get_redis().pipeline()
        for key, _ in limits:
            pipe.incr(key)
            pipe.expire(key, settings.LOGIN_THROTTLE_WINDOW_SECONDS, nx=True)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("login throttle: Redis did not answer (%s); the failure is not counted", exc)


def _clear(limits: list[tuple[str, int]]) -> None:
    try:
        get_redis().delete(*(key for key, _ in limits))
    except redis.RedisError as exc:
        log.warning("login throttle: Redis did not answer (%s)", exc)


def minutes(seconds: int) -> str:
    whole = max(1, -(-seconds // 60))
    return f"{whole} minute{'s' if whole != 1 else ''}"


# --- logins ---------------------------------------------------------------------------


def throttled_login(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a login view (the panel's and the admin's): a POST for a username or from an
    address with too many recent failures gets 429 and the login page saying how long to
    wait; a failed POST counts; a successful one clears the username's counter."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        limits = _login_limits(request, request.POST.get("username", ""))
        wait = _blocked_for(limits)
        if wait:
            message = (
                "Too many failed logins for this username or from this address. "
                f"Try again in {minutes(wait)}."
            )
            context = {
                "form": AuthenticationForm(request),
                "throttled": message,
                "next": request.POST.get("next", ""),
            }
            response = render(request, "registration/login.html", context, status=429)
            response["Retry-After"] = str(wait)
            return response
        response = view(request, *args, **kwargs)
        if response.status_code in (301, 302) and request.user.is_authenticated:
            _clear(limits[:1])
        else:
            _fail(limits)
        return response

    return wrapper


# --- bearer tokens ---------------------------------------------------------------------


def token_wait(request: HttpRequest) -> int:
    """Seconds this address must wait before its bearer tokens are looked at again."""
    return _blocked_for(_token_limits(request))


def token_failed(request: HttpRequest) -> None:
    _fail(_token_limits(request))

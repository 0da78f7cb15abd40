"""Login required everywhere, except where the view answers for itself; requests no view
should see (a body over the size limit, NUL bytes in the URL) refused before anything
reads them; every error under /api/ in the API's JSON."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.defaults import page_not_found

from control.errors import json_error


class LoginRequired(LoginRequiredMiddleware):
    """Like Django's, but lets /api/ through: the API answers 401 in JSON instead of a
    redirect to the login page, and accepts bearer tokens."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


def _api_error_body(request: HttpRequest, response: HttpResponseBase) -> dict[str, str]:
    status = response.status_code
    if status == 404:
        return {
            "detail": f"There is no API endpoint at {request.path}; the endpoints are listed at /api/docs.",
            "code": "not_found",
        }
    if status == 405:
        allowed = response.get("Allow", "") or "no method"
        return {
            "detail": f"{request.method} is not allowed on {request.path}; it answers {allowed}.",
            "code": "method_not_allowed",
        }
    if status >= 500:
        return {
            "detail": "The server failed to answer this request; the error is logged. Try again, "
            "or tell the operator if it persists.",
            "code": "server_error",
        }
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"detail": f"{phrase}.", "code": phrase.lower().replace(" ", "_").replace("-", "_")}


class ApiJsonErrors:
    """Every error under /api/ in the API's shape, {"detail", "code"}, whatever DEBUG says.

    The API's own errors are JSON already; this is for the answers made elsewhere: the
    URL resolver's 404 (an HTML page, with DEBUG the list of every URL), ninja's plain
    "Method not allowed" 405, Django's 500 page (with DEBUG a traceback), a middleware's
    400. The status and the headers (Allow, Retry-After, cookies) are kept; only the
    body is replaced. Installed near the top so it sees the answers of everything below.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            response.status_code < 400
            or request.path_info.split("/")[:2] != ["", "api"]  # /api and all under it
            or response.get("Content-Type", "").split(";")[0].strip() == "application/json"
        ):
            return response
        error = json_error(response.status_code, **_api_error_body(request, response))
        if response.streaming:
            # No error page streams; a streaming body cannot be replaced in place.
            for header in ("Allow", "Retry-After", "WWW-Authenticate", "Vary"):
                if header in response:
                    error[header] = response[header]
            return error
        body = error.content
        response.content = body
        response["Content-Type"] = error["Content-Type"]
        if "Content-Length" in response:
            response["Content-Length"] = str(len(body))
        return response


class RequestLimits:
    """413 with a JSON sentence for a body declared larger than DATA_UPLOAD_MAX_MEMORY_SIZE.

    Django enforces the same limit, but by raising RequestDataTooBig wherever the body is
    first read (the CSRF check, a form, the API's parser), which ends as Django's HTML
    "Bad Request (400)" page with no reason, on the JSON API too. Checked here first,
    every endpoint answers alike and says why. (Django reads no more than the declared
    Content-Length, so a body without one is read as empty.)

    Also 400 for a NUL byte in the path or the query string: no id or filter contains
    one, and PostgreSQL refuses text with NUL, so it would surface as a 500 from
    whichever query met it first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            detail = f"The request body is {length} bytes; at most {limit} are accepted."
            return json_error(413, detail, "too_large")
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.GET.items()):
            return json_error(400, "The address contains a NUL byte (%00).", "bad_request")
        return self.get_response(request)


class ContentSecurityPolicy:
    """Send settings.CONTENT_SECURITY_POLICY with every response that has none of its own.

    The policy lets the pages load scripts, styles, fonts and images from this site only
    and talk (fetch, websockets) to this site only; see the setting for why each part is
    what it is.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = "; ".join(
            f"{name} {' '.join(sources)}" for name, sources in settings.CONTENT_SECURITY_POLICY.items()
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response


class PlainNotFoundUnlessStaff:
    """With DEBUG on, Django answers a URL that matches nothing with its technical 404, a
    list of every URL pattern of the site. Only a logged-in staff user gets it; anyone else
    gets the plain 404 a production site answers (a view's own 404 answer is left alone).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # resolver_match is None when no URL pattern matched: the 404 is the resolver's.
        if response.status_code == 404 and getattr(request, "resolver_match", None) is None:
            return self._plain(request, Http404()) or response
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Http404):
            return self._plain(request, exception)
        return None

    @staticmethod
    def _plain(request: HttpRequest, exception: Http404) -> HttpResponse | None:
        user = getattr(request, "user", None)
        if not settings.DEBUG or (user is not None and user.is_active and user.is_staff):
            return None
        return page_not_found(request, exception)

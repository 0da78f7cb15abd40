"""Errors the control plane raises; every edge (API, views, commands) maps them the same way."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


def json_error(status: int, detail: str, code: str, **extra: Any) -> JsonResponse:
    """The body every JSON edge answers an error with: {"detail", "code", ...}."""
    return JsonResponse({"detail": detail, "code": code, **extra}, status=status)


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, errors: list[dict] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.errors = errors or []

    def as_dict(self) -> dict:
        body: dict = {"detail": self.detail, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body

    @property
    def headers(self) -> dict[str, str]:
        """Headers the answer must carry besides the body (none for most errors)."""
        return {}

    def response(self) -> JsonResponse:
        return JsonResponse(self.as_dict(), status=self.status, headers=self.headers)


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class TransitionRefused(ServiceError):
    status = 409
    code = "invalid_transition"


class InvalidInput(ServiceError):
    status = 422
    code = "invalid"


class DependencyDown(ServiceError):
    status = 503
    code = "dependency_unavailable"


class Forbidden(ServiceError):
    status = 403
    code = "permission_denied"


class Throttled(ServiceError):
    status = 429
    code = "throttled"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        # Every 429 says when to come back, so a well-behaved client waits, not hammers.
        return {"Retry-After": str(self.retry_after)}


class MalformedRequest(ServiceError):
    """The request cannot be read: not JSON, duplicate keys, or not the expected shape."""

    status = 400
    code = "malformed"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"

"""What every JSON API router shares: the error body and the error responses."""

from __future__ import annotations

from ninja import Schema


class ErrorOut(Schema):
    detail: str
    code: str
    errors: list[dict[str, str]] | None = None


ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut}

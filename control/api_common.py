"""What every JSON API router shares: the error body and the error responses."""

from __future__ import annotations

from typing import Any

from ninja import Schema


class ErrorOut(Schema):
    detail: str
    code: str
    errors: list[dict[str, str]] | None = None


# What any endpoint may answer besides its success (API.md "Conventions"): 400 for a
# malformed request (e.g. a NUL byte in the address, control.middleware); 429 is the
# throttle on bad bearer tokens (control.throttle).
ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    429: ErrorOut,
    503: ErrorOut,
}
# Endpoints that read a JSON body: also 413 over DATA_UPLOAD_MAX_MEMORY_SIZE and 422
# for well-formed but invalid values (400 there: not JSON, or not the expected shape).
BODY_ERRORS = {413: ErrorOut, 422: ErrorOut, **ERRORS}


def json_body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body the endpoint validates itself
    (through control.services, the one validation shared with the page)."""
    return {
        "requestBody": {
            "description": description,
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }

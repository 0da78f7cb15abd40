"""What every JSON API router shares: the error body and the error responses."""

from __future__ import annotations

from typing import Any

from ninja import Schema


class ErrorOut(Schema):
    detail: str
    code: str
    errors: list[dict[str, str]] | None = None


# What any endpoint may answer besides its success (API.md "Conventions"); 429 is the
# throttle on bad bearer tokens (control.throttle).
ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 429: ErrorOut, 503: ErrorOut}
# Endpoints that read a JSON body: 400 malformed (not JSON, wrong shape), 413 over
# DATA_UPLOAD_MAX_MEMORY_SIZE, 422 well-formed but invalid values.
BODY_ERRORS = {400: ErrorOut, 413: ErrorOut, 422: ErrorOut, **ERRORS}


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

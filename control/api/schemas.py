"""What every JSON API router shares: the error body and the error responses."""

from __future__ import annotations

from typing import Annotated, Any

from ninja import Schema
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class ErrorOut(Schema):
    detail: str
    code: str
    errors: list[dict[str, str]] | None = None


# What any endpoint may answer besides its success (docs/api.md "Conventions"): 400 for a
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
# 415 for a body not declared as JSON (control.api.parser).
BODY_ERRORS = {413: ErrorOut, 415: ErrorOut, 422: ErrorOut, **ERRORS}


def _integral(value: Any) -> Any:
    # JSON has one kind of number: 7.0 is the integer 7 (as JSON Schema's "integer"
    # says); 7.5, "7" and true are still refused by the strict int after this.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer field of a request body: a JSON number without a fraction.
JsonInt = Annotated[int, BeforeValidator(_integral)]


def json_int_between(ge: int, le: int) -> Any:
    """A JsonInt within bounds, for use inside a union (`json_int_between(1, 9) | None`).
    The bounds come before the validator: after it, pydantic writes them into the schema
    as unknown keys ("ge") instead of minimum/maximum, and the contract loses them."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral)]


def _no_null_defaults(schema: dict[str, Any]) -> None:
    # An optional() field's None only means "left out"; the schema must not offer null.
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class StrictBody(BaseModel):
    """A request body: JSON types only, as its schema says, and no unknown key.

    Strict, so "7" is not an integer, "yes" or 1 not a boolean and "BTC-USD" not a list;
    JSON itself has no other spellings of a number (full-width or Arabic-Indic digits,
    1_000 and 1e3 in a string are all strings). The endpoint's documented schema is
    generated from the same class, so the two cannot disagree.
    """

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_no_null_defaults)


def optional(**constraints: Any) -> Any:
    """A field that may be left out (the server's own default applies) but is never
    null: an explicit null is refused like any other value of the wrong type."""
    return Field(None, **constraints)


# pydantic's type errors, said in JSON's words.
_JSON_TYPES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def reason(error: dict[str, Any]) -> str:
    """A sentence for one pydantic error of a request."""
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "Unknown field."
    if kind == "missing":
        return "Required."
    if kind in _JSON_TYPES:
        return f"Must be {_JSON_TYPES[kind]}."
    message = str(error.get("msg", "Invalid."))
    # "Value error, a symbol is listed twice" -> "A symbol is listed twice."
    message = message.removeprefix("Value error, ")
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")

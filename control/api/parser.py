"""The one place the JSON API reads a request body (django-ninja's `parser`).

Python's json module is laxer than JSON: it takes the last of duplicate keys, reads
NaN and Infinity, turns 1e400 into inf and guesses UTF-16 or UTF-32 from the bytes.
A body that two JSON readers could understand differently is refused here, before any
endpoint validates it, so every endpoint that takes a body refuses it alike:
415 for a body that is not declared as JSON, 400 for one that is not strict JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from django.http import HttpRequest
from ninja.parser import Parser

from agents.validators import MAX_JSON_DEPTH
from control.errors import MalformedRequest, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
# Arrays and objects nested deeper than this are refused before any schema recurses into
# them: a generous bound over the deepest document a field takes (a config,
# MAX_JSON_DEPTH, whose own check names the field), far under Python's recursion limit.
MAX_BODY_DEPTH = 2 * MAX_JSON_DEPTH


def _refuse(detail: str) -> NoReturn:
    raise MalformedRequest(detail)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            _refuse(f"The JSON object has the key {key!r} twice; give each key once.")
        obj[key] = value
    return obj


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _refuse(f"The number {text[:40]} is too large for this API.")
    return value


def _constant(name: str) -> NoReturn:
    _refuse(f"{name} is not a JSON number.")


def check_json_content_type(request: HttpRequest) -> None:
    """415 unless the body is declared `application/json` (in UTF-8, JSON's encoding)."""
    media_type = request.content_type or ""
    if media_type.lower() != JSON_MEDIA_TYPE:
        declared = f"declared as {media_type!r}" if media_type else "sent without a Content-Type"
        raise UnsupportedMediaType(
            f"The request body is {declared}; send JSON with 'Content-Type: {JSON_MEDIA_TYPE}'."
        )
    charset = (request.content_params or {}).get("charset", "utf-8")
    if charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"The request body is in {charset!r}; send JSON in UTF-8.")


def parse_json(body: bytes) -> Any:
    """The value of a strict JSON text (RFC 8259, UTF-8): MalformedRequest otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _refuse("The request body is not UTF-8 text; send JSON in UTF-8.")
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_float=_finite, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        _refuse(f"The request body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.")
    except RecursionError:
        # Arrays or objects nested thousands deep ("[[[[..."): the parser recurses per level.
        _refuse(
            f"The request body is nested more than {MAX_BODY_DEPTH} levels deep; send a flatter document."
        )
    except ValueError as exc:
        # An integer of thousands of digits (Python's int_max_str_digits).
        _refuse(f"The request body holds a number this API cannot read ({str(exc)[:80]}).")
    if _deeper_than(value, MAX_BODY_DEPTH):
        _refuse(
            f"The request body is nested more than {MAX_BODY_DEPTH} levels deep; send a flatter document."
        )
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (without recursing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class StrictJSONParser(Parser):
    """ninja calls this for every endpoint that declares a body (and only with a body)."""

    def parse_body(self, request: HttpRequest) -> Any:
        check_json_content_type(request)
        return parse_json(request.body)

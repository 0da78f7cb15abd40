"""Numbers in query strings: the one parser every page and endpoint reads them with.

Python's own parsing is looser than a URL parameter should be: int() takes " 7", "+7",
"1_000", full-width "７" and Arabic-Indic "٧", and "²".isdigit() is true while int("²")
fails; float() takes "1e308", "inf" and "nan". A parameter here is ASCII digits (with a
fraction for a decimal one), within bounds that keep it a sane SQL integer, or
BadParameter with a sentence to answer 400 with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Ids, offsets and counts: a signed 64-bit column's range, with room to add a page to it.
MAX_INT = 2**62
WHOLE = re.compile(r"[0-9]{1,19}")
DECIMAL = re.compile(r"[0-9]{1,19}(\.[0-9]{1,9})?")


class BadParameter(ValueError):
    """A query parameter that is not what the endpoint takes; str() is the sentence."""


def _shown(raw: str) -> str:
    return repr(raw[:40] + ("..." if len(raw) > 40 else ""))


def int_param(
    query: Mapping[str, str], name: str, *, default: int | None, low: int = 0, high: int = MAX_INT
) -> int | None:
    """`query[name]` as a whole number from `low` to `high`; `default` when absent."""
    raw = query.get(name)
    if raw is None:
        return default
    if not WHOLE.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadParameter(f"'{name}' must be a whole number from {low} to {high}, not {_shown(raw)}.")
    return int(raw)


def decimal_param(query: Mapping[str, str], name: str, *, high: float, what: str) -> float | None:
    """`query[name]` as a number from 0 to `high` (digits, an optional fraction), or None
    when absent; `what` says in the error what the number is."""
    raw = query.get(name)
    if raw is None:
        return None
    if not DECIMAL.fullmatch(raw) or not float(raw) <= high:
        raise BadParameter(f"'{name}' must be {what} (a number from 0 to {high:g}), not {_shown(raw)}.")
    return float(raw)

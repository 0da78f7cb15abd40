"""What a person may type into the product, in one place: text that can be stored and
shown, symbols, JSON documents, and the bounds of the domain's numbers.

Every edge applies these rules: the models' fields (so the admin's forms and the session
form refuse with a sentence), the kinds' config schemas (so the config API and the admin
do), and the pages read defensively whatever was stored before the rules existed.

Text. A lone surrogate ("\\ud800": what a JSON "\\ud800" escape decodes to) cannot be
encoded as UTF-8: SQLite and PostgreSQL refuse it, and a page showing it cannot be
sent. NUL and the other control characters have no place in a name, a symbol or a
config; PostgreSQL cannot store NUL at all. Bidirectional embedding, override and
isolate controls (and the invisible direction marks) reorder the text shown around
them: a name holding U+202E reads backwards and reverses the activity line it appears
in, so they are refused too. A name must show at least one visible character (one made
of spaces, zero-width or combining characters alone cannot be told apart from another).
Other Unicode (accents, right-to-left scripts, emoji, zero-width joiners inside a
visible name) is a person's to use and the pages escape it.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.forms import JSONField as JSONFormField
from django.forms.fields import InvalidJSONInput

# --- the domain's bounds, written down once ---------------------------------------------

# Prices a config may name (a starting price) are below this: what the ledger holds
# (sessions.money.MAX_PRICE, one step under it; agents cannot import sessions).
MAX_PRICE = 10_000_000.0
# Where a card sits on the flow grid: its index in the column (control.services).
MAX_POSITION = 100_000
# A session's order rate limit.
MAX_ORDERS_PER_MINUTE = 600
# Symbols of one agent (a market data feed may follow many) and of one session.
MAX_AGENT_SYMBOLS = 200
MAX_SESSION_SYMBOLS = 20
# A session's price age limit (sessions.freshness): one second to one day.
MAX_PRICE_AGE_SECONDS = 86_400
# A random seed: any integer a 64-bit column (and every JSON reader) keeps exactly.
MAX_SEED = 2**53
# JSON an operator edits (a config) is a few levels deep; far deeper is an attack.
MAX_JSON_DEPTH = 20

SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")
SYMBOL_HELP = "letters, digits, '-', '.', '_', e.g. BTC-USD"

# --- text ------------------------------------------------------------------------------


def shown(value: str) -> str:
    """`value` safe to put in a message: unencodable and control characters escaped."""
    return "".join(
        ch
        if ch.isprintable() and not _is_surrogate(ch)
        else ch.encode("unicode_escape", "backslashreplace").decode()
        for ch in value
    )


def _is_surrogate(ch: str) -> bool:
    return 0xD800 <= ord(ch) <= 0xDFFF


# Characters that change the direction of the text shown after them: LRE, RLE, PDF,
# LRO, RLO (U+202A-U+202E), LRI, RLI, FSI, PDI (U+2066-U+2069), LRM, RLM and ALM.
BIDI_CONTROLS = frozenset(
    [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A)), "\u200e", "\u200f", "\u061c"]
)
# What shows nothing by itself: format characters (zero-width space, joiners, BOM...),
# separators (spaces), marks that combine with a character before them, and unassigned
# code points; plus the letters and symbols that are drawn blank (Hangul fillers,
# the braille blank).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _visible(ch: str) -> bool:
    return ch not in _BLANK_GLYPHS and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as a person's text, or None when it can."""
    for ch in value:
        if _is_surrogate(ch):
            return f"contains {shown(ch)}, half of a surrogate pair, which cannot be encoded as UTF-8"
        if unicodedata.category(ch) == "Cc":
            return f"contains a control character ({shown(ch)})"
        if ch in BIDI_CONTROLS:
            return (
                f"contains a text direction control ({shown(ch)}), which would reorder "
                "the text shown around it"
            )
    return None


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a name (text_problem's rules, and something to see)."""
    problem = text_problem(value)
    if problem is None and value and not any(map(_visible, value)):
        return "has no visible character (only spaces, zero-width or combining characters)"
    return problem


def validate_text(value: str) -> None:
    """A model field validator for one line of text (a name)."""
    problem = name_problem(value)
    if problem:
        raise ValidationError(f"This text {problem}.", code="bad_text")


def repaired(value: str) -> str:
    """`value` with what cannot be shown (lone surrogates) replaced by U+FFFD: for text
    read back from before these rules."""
    return (
        "".join("\ufffd" if _is_surrogate(ch) else ch for ch in value)
        if any(map(_is_surrogate, value))
        else value
    )


# --- symbols ---------------------------------------------------------------------------


def symbol_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{shown(repr(value))} is not a symbol (give it as text)"
    if not SYMBOL.fullmatch(value):
        return f"{shown(value)!r} is not a symbol ({SYMBOL_HELP}, upper-case)"
    return None


def validate_symbols(value: Any, limit: int = MAX_AGENT_SYMBOLS) -> None:
    """A model field validator: a JSON list of distinct symbols."""
    if not isinstance(value, list):
        raise ValidationError(
            'Give the symbols as a JSON list, e.g. ["BTC-USD", "ETH-USD"].', code="bad_symbols"
        )
    problems = [p for p in map(symbol_problem, value) if p]
    if problems:
        raise ValidationError(f"{problems[0][0].upper()}{problems[0][1:]}.", code="bad_symbols")
    if len(set(value)) != len(value):
        raise ValidationError("A symbol is listed twice.", code="bad_symbols")
    if len(value) > limit:
        raise ValidationError(f"At most {limit} symbols.", code="bad_symbols")


def validate_session_symbols(value: Any) -> None:
    validate_symbols(value, MAX_SESSION_SYMBOLS)


def stored_symbols(value: Any) -> list[str]:
    """The symbols of a stored `symbols` value, whatever it holds: its text items if it is
    a list (rows from before validate_symbols may hold anything), else none."""
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


def stored_object(value: Any) -> dict[str, Any]:
    """A stored JSON object (a config) as a dict; anything else as an empty one."""
    return value if isinstance(value, dict) else {}


# --- JSON documents ---------------------------------------------------------------------


def _walk(value: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, Any, bool]]:
    """(path, item, is_key) for every value and key of a JSON document."""
    if depth > MAX_JSON_DEPTH:
        yield path, value, False
        return
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path and isinstance(key, str) else str(key)
            yield where, key, True
            yield from _walk(item, where, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]", depth + 1)
    else:
        yield path, value, False


def json_problem(value: Any, *, numbers: bool = True) -> str | None:
    """Why a JSON document cannot be stored as a person's data, or None: text that cannot
    be encoded or holds control characters (in keys too), nesting deeper than
    MAX_JSON_DEPTH and, with `numbers`, NaN or infinities (PostgreSQL's jsonb has none)
    and integers past 64 bits (a schema that bounds its numbers leaves them to it, so
    its errors name the field)."""
    for path, item, is_key in _walk(value):
        where = f" at {shown(path)}" if path else ""
        if isinstance(item, dict | list):
            return f"is nested more than {MAX_JSON_DEPTH} levels deep{where}"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return f"has {'a key' if is_key else 'text'}{where} that {problem}"
        elif not numbers:
            continue
        elif isinstance(item, float) and not math.isfinite(item):
            return f"holds {item}{where}, which is not a number JSON can store"
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > 2**63:
            return f"holds a whole number too large to store{where}"
    return None


def validate_json(value: Any) -> None:
    problem = json_problem(value)
    if problem:
        raise ValidationError(f"This JSON {problem}.", code="bad_json")


def repaired_json(value: Any, depth: int = 0) -> Any:
    """A document read back with its lone surrogates (keys and text) replaced by U+FFFD."""
    if depth > MAX_JSON_DEPTH * 5:
        return None
    if isinstance(value, str):
        return repaired(value)
    if isinstance(value, list):
        return [repaired_json(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {repaired(k): repaired_json(v, depth + 1) for k, v in value.items()}
    return value


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


class _JSONFormField(JSONFormField):
    """The admin's JSON box: an object with a key twice is refused (json keeps the last
    one silently, and the API refuses it: control.api.parser), JSON too deep for Python's
    parser ("[[[[...") is refused like other bad JSON, and a refused document is shown
    again as it was typed, a lone surrogate as its escape (the page could not be sent
    with the character itself)."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value not in self.empty_values and not self.disabled:
            try:
                json.loads(value, object_pairs_hook=_unique_keys)
            except _DuplicateKey as exc:
                raise ValidationError(
                    f"This JSON object has the key {shown(repr(exc.args[0]))} twice; give each key once.",
                    code="duplicate_key",
                ) from None
            except (ValueError, RecursionError):
                pass  # said by the parse below
        try:
            return super().to_python(value)
        except RecursionError:
            raise ValidationError(f"This JSON is nested more than {MAX_JSON_DEPTH} levels deep.") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        text = super().prepare_value(value)
        if isinstance(text, str) and any(map(_is_surrogate, text)):
            return "".join(f"\\u{ord(ch):04x}" if _is_surrogate(ch) else ch for ch in text)
        return text


class PersonJSONField(models.JSONField):
    """A JSON field a person edits: validate_json on the way in, and on the way out text
    that could not be shown (stored before the rule) repaired, so no page fails on it."""

    default_validators = [validate_json]
    # None is not "empty" here: Model.clean_fields skips the fields whose value is empty
    # and blank is allowed, so a null typed into the admin ("null", or a cleared box)
    # would reach the database's NOT NULL constraint (a 500) instead of validate().
    # An empty list or object stays empty: blank=True allows it where it is today.
    empty_values = [v for v in models.JSONField.empty_values if v is not None]

    def validate(self, value: Any, model_instance: Any) -> None:
        if value is None and not self.null:
            raise ValidationError(
                "Give a JSON value here: null cannot be stored.",
                code="null",
            )
        super().validate(value, model_instance)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return repaired_json(super().from_db_value(value, expression, connection))

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"form_class": _JSONFormField, **kwargs})


# --- whole seconds ----------------------------------------------------------------------


def seconds_problem(value: Any, low: int, high: int) -> str | None:
    """Why `value` is not a whole number of seconds in low..high, or None. Strict: a
    boolean is not a number, and a string must be ASCII digits (int() would also read
    full-width, Arabic-Indic or Devanagari digits and "1_000")."""
    wanted = f"Give a whole number of seconds from {low} to {high:,}, or leave it empty (automatic)."
    if isinstance(value, bool):
        return wanted
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            return wanted
        value = int(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        return wanted
    return None


class OptionalSecondsField(models.PositiveIntegerField):
    """Whole seconds within MIN..MAX, or null ("automatic"), for a person to type: the
    model (so the admin and control.services' full_clean) and its form field refuse a
    boolean, a non-ASCII digit or a value out of range with the same sentence."""

    # Only None means "automatic". Django's full_clean skips a blank field whose value is
    # in empty_values ("", [], {}, ()), so those reached the database unchecked and the
    # edit service raised TypeError (a 500) instead of answering with the sentence.
    empty_values = [None]

    def __init__(self, *args: Any, low: int = 1, high: int = MAX_PRICE_AGE_SECONDS, **kwargs: Any) -> None:
        self.low, self.high = low, high
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[Any, ...]:
        name, path, args, kwargs = super().deconstruct()
        kwargs.update(low=self.low, high=self.high)
        return name, path, args, kwargs

    def to_python(self, value: Any) -> int | None:
        if value is None:
            return None
        # Typed text is the form field's to read; what reaches the model (the edit
        # service, the admin's cleaned form) is a number already, or it is refused.
        problem = "x" if isinstance(value, str) else seconds_problem(value, self.low, self.high)
        if problem:
            raise ValidationError(seconds_problem("x", self.low, self.high), code="invalid")
        return int(value)

    def formfield(self, **kwargs: Any) -> Any:
        return _SecondsFormField(self.low, self.high, **{"required": False, **kwargs})


class _SecondsFormField(forms.Field):
    def __init__(self, low: int, high: int, **kwargs: Any) -> None:
        for key in ("max_value", "min_value", "step_size", "coerce", "empty_value"):
            kwargs.pop(key, None)
        self.low, self.high = low, high
        attrs = {"min": low, "max": high, "step": 1, "placeholder": "automatic"}
        kwargs.setdefault("widget", forms.NumberInput(attrs=attrs))
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        problem = seconds_problem(value, self.low, self.high)
        if problem:
            raise ValidationError(problem, code="invalid")
        return int(str(value).strip()) if isinstance(value, str) else int(value)

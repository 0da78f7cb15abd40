"""The registry of agent kinds: name -> class.

Kinds register themselves when their module is imported (the app configs import
them in `ready()`); kinds that need session data (execution) live in `sessions`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agents.kinds.base import AgentKind, KindConfig

_KINDS: dict[str, type[AgentKind]] = {}


class UnknownKind(LookupError):
    pass


class ConfigError(ValueError):
    """A config refused by its kind's schema; `errors` is [(field, reason), ...]."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{f}: {r}" for f, r in errors))


def register(kind: type[AgentKind]) -> type[AgentKind]:
    """Class decorator adding a kind to the registry."""
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> type[AgentKind]:
    try:
        return _KINDS[name]
    except (KeyError, TypeError):  # (TypeError: a list or an object from JSON is no name)
        raise UnknownKind(f"unknown agent kind {name!r}; known kinds: {', '.join(sorted(_KINDS))}") from None


def kind_names() -> list[str]:
    return sorted(_KINDS)


def validate_config(kind_name: str, data: dict[str, Any] | None, *, strict: bool = False) -> KindConfig:
    """Parse `data` with the kind's schema, raising ConfigError with every bad field.

    `strict` for JSON from outside (the API): each value must already be of its field's
    JSON type ("2" is not a number, "yes" not a boolean), nested fields included."""
    kind = get_kind(kind_name)
    if data is not None and not isinstance(data, dict):
        raise ConfigError([("config", "must be a JSON object")])
    try:
        # (Strict in Python mode: configs hold JSON's own types only; a field of a type JSON
        # spells as a string, an enum or a Decimal, would need JSON mode here.)
        return kind.Config.model_validate(data or {}, strict=strict)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            # A validator's ValueError reads "Value error, <its sentence>": keep the sentence.
            errors.append((loc, err["msg"].removeprefix("Value error, ")))
        raise ConfigError(errors) from None


__all__ = [
    "AgentKind",
    "ConfigError",
    "KindConfig",
    "UnknownKind",
    "get_kind",
    "kind_names",
    "register",
    "validate_config",
]

"""Where prices come from, in the words every card, page and chart shows.

"Simulated", "Simulated, 60x" (an accelerated simulation, see market_time),
"Replay: file.csv" and "Live: Binance". Pure functions of a market_data config or of a
message (a bar, or a signal that passed the bar's source on), so any source the kind
grows (the `exchange` source's messages carry `source: "exchange"` and
`exchange: "<ccxt id>"`, and may carry `exchange_name`) gets its label here, in one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

SIMULATED = "Simulated"
UNKNOWN = "Unknown source"
CSV_PREFIX = "csv:"  # a replayed bar's source: "csv:<file name>"


def source_label(
    source: str | None,
    *,
    speed: Any = None,
    file: str | None = None,
    exchange: str | None = None,
    exchange_name: str | None = None,
) -> str:
    """The label of one source: `source` is a config's ("simulated", "csv", "exchange") or
    a message's ("simulated", "csv:<file>", "exchange")."""
    source = (source or "").strip()
    if source == "simulated":
        factor = _speed(speed)
        return SIMULATED if factor is None else f"{SIMULATED}, {factor:g}x"
    if source == "csv" or source.startswith(CSV_PREFIX):
        name = source[len(CSV_PREFIX) :] if source.startswith(CSV_PREFIX) else ""
        name = PurePath(file).name if file else name
        return f"Replay: {name}" if name else "Replay"
    if source == "exchange":
        name = (exchange_name or "").strip() or _exchange_name((exchange or "").strip())
        return f"Live: {name}" if name else "Live"
    return source or UNKNOWN


def config_label(config: Mapping[str, Any]) -> str:
    """The label of a market_data agent's config (what it will publish)."""
    return source_label(
        str(config.get("source") or "simulated"),
        speed=config.get("speed"),
        file=_text(config.get("csv_path")),
        exchange=_text(config.get("exchange")),
        exchange_name=_text(config.get("exchange_name")),
    )


def message_label(data: Mapping[str, Any]) -> str:
    """The label of a message that carries a `source` (what it was made from)."""
    return source_label(
        _text(data.get("source")),
        speed=data.get("speed"),
        exchange=_text(data.get("exchange")),
        exchange_name=_text(data.get("exchange_name")),
    )


def accelerated(data: Mapping[str, Any]) -> bool:
    """Whether a message comes from an accelerated simulation, whose ts run ahead of the clock."""
    return _speed(data.get("speed")) is not None


def join_labels(labels: Iterable[str]) -> str:
    """Several sources as one line, each once, in a stable order ("; " as a label may hold ", ")."""
    return "; ".join(sorted(set(labels)))


def _speed(value: Any) -> float | None:
    """The acceleration factor, or None for real time (or an unusable value)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 1 else None


def _exchange_name(exchange_id: str) -> str:
    """ccxt's name of the exchange ("Binance", "Coinbase Advanced"); the id as written for
    one ccxt does not know."""
    if not exchange_id:
        return ""
    from agents.kinds.exchange_client import exchange_label  # ccxt loads only when needed

    return exchange_label(exchange_id.lower())


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

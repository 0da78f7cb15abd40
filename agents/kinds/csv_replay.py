"""Streaming replay of a user-supplied OHLCV CSV for the `market_data` kind.

The file is read row by row (never loaded whole) so multi-gigabyte histories replay in
constant memory. Rows are grouped by timestamp: one group is one step's worth of bars.
Files may only come from `settings.MARKET_DATA_DIR`, so a config cannot make the agent
read arbitrary files on the host.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from agents.validators import MAX_PRICE

REQUIRED_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
# Unix times above this are taken as milliseconds (as seconds it would be year 5138).
_MILLIS_THRESHOLD = 1e11


class BadRow(ValueError):
    """A row that cannot be replayed; the reason is the message."""


def resolve_csv_path(value: str, base_dir: Path | str) -> Path:
    """Return the checked file for `value` (relative to `base_dir` or absolute).

    Raises ValueError with a reason a user can act on: outside the folder, missing,
    not a file, unreadable, or without the required header.
    """
    base = Path(base_dir).resolve()
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"must be inside the market data folder {base}")
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"file not readable: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path.name}: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in {h.strip().lower() for h in header}]
    if missing:
        raise ValueError(f"{path.name} header lacks column(s): {', '.join(missing)}")
    return path


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 (naive means UTC) or unix seconds (or milliseconds) -> aware UTC datetime."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise BadRow(f"unparseable timestamp {value!r}") from None
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if not math.isfinite(number):
        raise BadRow(f"unparseable timestamp {value!r}")
    if abs(number) > _MILLIS_THRESHOLD:
        number /= 1000.0
    try:
        return datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise BadRow(f"timestamp out of range {value!r}") from None


def parse_bar(row: dict[str, str]) -> tuple[datetime, dict[str, float]]:
    """Check one row (keys lower-cased) and return its timestamp and OHLCV floats."""
    ts = parse_timestamp(row.get("timestamp") or "")
    bar: dict[str, float] = {}
    for col in REQUIRED_COLUMNS[1:]:
        raw = (row.get(col) or "").strip()
        try:
            bar[col] = float(raw)
        except ValueError:
            raise BadRow(f"{col} is not a number: {raw!r}") from None
        if not math.isfinite(bar[col]):
            raise BadRow(f"{col} is not finite: {raw!r}")
    if min(bar["open"], bar["high"], bar["low"], bar["close"]) <= 0:
        raise BadRow("prices must be positive")
    if bar["high"] >= MAX_PRICE:  # what a fill can be booked at; 1e308 overflowed the analysis
        raise BadRow(f"prices must be below {MAX_PRICE:,.0f}")
    if bar["volume"] < 0:
        raise BadRow("volume is negative")
    if bar["high"] < max(bar["open"], bar["close"]) or bar["low"] > min(bar["open"], bar["close"]):
        raise BadRow("high/low do not contain open/close")
    return ts, bar


class CsvReplay:
    """Yields the file's bars one timestamp group at a time, for the agent's symbols only."""

    def __init__(
        self,
        path: Path,
        symbols: list[str],
        log: logging.Logger,
        after: datetime | None = None,
        loop: bool = False,
        published_at_after: set[str] | None = None,
    ) -> None:
        self.path = path
        self.log = log
        self.after = after  # resume point: rows at or before it were already published...
        # ...except, at `after` itself, the bars of symbols not in this set: a step cut
        # short (a crash, a lost lease) publishes only part of its timestamp's bars.
        # None means the whole group at `after` was published.
        self.published_at_after = published_at_after
        self.loop = loop
        self.bad_rows = 0  # since the last `take_bad_rows()`
        self._wanted = {s.upper(): s for s in symbols}
        self._first_symbol = symbols[0] if symbols else None
        self._fh: IO[str] | None = None
        self._reader: csv.DictReader[str] | None = None
        self._pending: tuple[datetime, str, dict[str, float]] | None = None
        self._seen_ts: datetime | None = None  # newest good row read, to refuse rows out of order

    def next_group(self) -> tuple[datetime, list[dict[str, Any]]] | None:
        """The next timestamp and its bars (symbol added), or None at the end of the file.

        Timestamps with no bar for our symbols are passed over. With `loop`, the end
        rewinds to the top once per call, so a file with nothing for us cannot spin.
        """
        rewound = False
        while True:
            group = self._read_group()
            if group is None:
                if not self.loop or rewound:
                    return None
                self._rewind()
                rewound = True
            elif group[1]:
                return group

    def take_bad_rows(self) -> int:
        """Bad rows seen since the last call (for the step's counters)."""
        count, self.bad_rows = self.bad_rows, 0
        return count

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self._fh = self._reader = None
        self._pending = None

    def _rewind(self) -> None:
        self.close()
        self.after = self._seen_ts = self.published_at_after = None

    def _read_group(self) -> tuple[datetime, list[dict[str, Any]]] | None:
        first = self._pending or self._next_row()
        if first is None:
            return None
        ts, bars = first[0], [self._bar(first)]
        while (row := self._next_row()) is not None and row[0] == ts:
            bars.append(self._bar(row))
        self._pending = row
        return ts, [b for b in bars if b is not None]

    def _bar(self, row: tuple[datetime, str, dict[str, float]]) -> dict[str, Any] | None:
        symbol = self._symbol(row[1])
        return None if symbol is None else {"symbol": symbol, **row[2]}

    def _symbol(self, raw: str) -> str | None:
        """Our name for a row's symbol (the first symbol for a file without that column)."""
        return self._wanted.get(raw.upper()) if raw else self._first_symbol

    def _still_due(self, ts: datetime, raw_symbol: str) -> bool:
        """Whether a good row is after the resume point (or at it, and not yet published)."""
        if self.after is None or ts > self.after:
            return True
        if ts < self.after or self.published_at_after is None:
            return False
        return self._symbol(raw_symbol) not in self.published_at_after

    def _next_row(self) -> tuple[datetime, str, dict[str, float]] | None:
        """The next good row after the resume point, skipping (and counting) bad ones."""
        if self._reader is None:
            self._fh = self.path.open(newline="", encoding="utf-8-sig")
            self._reader = csv.DictReader(self._fh)
            self._reader.fieldnames = [(h or "").strip().lower() for h in self._reader.fieldnames or []]
        has_symbol = "symbol" in self._reader.fieldnames
        while True:
            try:
                raw = next(self._reader)
                ts, bar = parse_bar(raw)
                symbol = (raw.get("symbol") or "").strip()
                if has_symbol and not symbol:
                    raise BadRow("symbol is empty")
                if self._seen_ts is not None and ts < self._seen_ts:
                    raise BadRow(f"timestamp {ts.isoformat()} is earlier than the row before")
            except StopIteration:
                return None
            except (BadRow, csv.Error) as exc:
                self.bad_rows += 1
                self.log.warning("%s line %d skipped: %s", self.path.name, self._reader.line_num, exc)
                continue
            self._seen_ts = ts
            if self._still_due(ts, symbol):
                return ts, symbol, bar

"""Agent logs: a rotating file per agent, batched LogEntry rows, and a cheap tail.

Each agent logs through ``agent_logger(agent_id)``. Every record becomes exactly one line
in ``<LOG_DIR>/<agent_id>.log`` (newlines are escaped) so the tail endpoint can work on
lines without parsing records, and records at INFO and above are buffered in memory as
``LogEntry`` rows which the loop writes in one query with ``flush_log_entries()``; one
INSERT per record would make logging cost a database round trip on the hot path.

``tail()`` reads the file backwards from its end, so its cost grows with the number of
lines asked for (and with how sparse the filter's matches are), never with the file size.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import re
import stat
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction

LOGGER_PREFIX = "agents.agent."

# Rotation of each agent's file: 10 MB x 5 backups keeps at most ~60 MB per agent.
MAX_BYTES = 10 * 1024 * 1024
BACKUP_COUNT = 5

# LogEntry rows waiting for flush_log_entries(), all agents together. Past this bound the
# oldest rows are dropped (and counted): a database outage must not grow memory forever.
MAX_BUFFERED = 1000
# Records below this level go to the file only; the panel shows INFO and above.
DB_LEVEL = logging.INFO

# tail(): size of each backwards read, limit on `lines`, and the most bytes one call may
# scan (a filter that matches nothing must not read a multi-GB file to the start).
BLOCK_SIZE = 64 * 1024
MAX_TAIL_LINES = 5000
MAX_SCAN_BYTES = 256 * 1024 * 1024
# A single line longer than this is returned cut to this many bytes; without the cap one
# huge line (a logged blob) would have to be held in memory whole.
MAX_LINE_BYTES = 64 * 1024

LINE_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

_AGENT_ID_RE = re.compile(r"[-a-zA-Z0-9_]+")
# File names are limited to 255 bytes; longer ids can never be valid agent ids anyway.
_MAX_AGENT_ID_LEN = 200

LEVELS: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
LEVEL_TOKENS: dict[bytes, int] = {name.encode(): value for name, value in LEVELS.items()}

_log = logging.getLogger(__name__)


# --- paths --------------------------------------------------------------------------------


def log_path(agent_id: str) -> Path | None:
    """The log file of `agent_id`, or None when the id could escape LOG_DIR.

    The id must be a plain slug, and the resolved path (symlinks followed) must still lie
    inside LOG_DIR: a symlink planted in LOG_DIR must not let the tail endpoint read
    arbitrary files.
    """
    if not isinstance(agent_id, str) or len(agent_id) > _MAX_AGENT_ID_LEN:
        return None
    # fullmatch, not `^...$`: `$` would also accept a trailing newline.
    if not _AGENT_ID_RE.fullmatch(agent_id):
        return None
    base = Path(settings.LOG_DIR).resolve()
    try:
        path = (base / f"{agent_id}.log").resolve(strict=False)
    except (OSError, RuntimeError):  # symlink loop, or an unreadable component
        return None
    if not path.is_relative_to(base) or path == base:
        return None
    return path


class LogFileRefused(PermissionError):
    """What lies at a log file's path is not a plain file of the log directory."""


def open_log(path: Path) -> BinaryIO:
    """Open a log file named by log_path() for reading: the one rule for every reader
    (the tail endpoint, its download, the live tail, the cards).

    log_path() checks the path when it is built, but the directory may change after:
    a symbolic link planted at the name later would be followed by a plain open(). So
    the file is opened without following a link (O_NOFOLLOW), and what was opened is
    checked: a regular file (a FIFO, device or directory is refused; O_NONBLOCK keeps
    a FIFO from hanging the open), with no other hard link (one could be a secret file
    linked in from outside; the logger never makes them, rotation renames), reached
    through no linked directory (the path is still its own real path) and still the
    file at the path. FileNotFoundError when there is none; LogFileRefused otherwise.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LogFileRefused(f"{path.name} is a symbolic link") from None
        raise
    try:
        opened = os.fstat(fd)
        reason = None
        if not stat.S_ISREG(opened.st_mode):
            reason = "is not a regular file"
        elif opened.st_nlink != 1:
            reason = "has other hard links"
        elif os.path.realpath(path) != str(path):
            reason = "is reached through a symbolic link"
        else:
            now = os.stat(path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
                reason = "was replaced while being opened"
        if reason is not None:
            raise LogFileRefused(f"{path.name} {reason}")
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "rb")  # noqa: SIM115 - the caller closes it


# --- logger -------------------------------------------------------------------------------


class OneLineFormatter(logging.Formatter):
    """The file format: one record per line, so the tail can count records as lines.

    Newlines (in the message and in an appended traceback) are escaped as the two
    characters ``\\n``; the LogEntry row keeps the original text.
    """

    converter = time.gmtime  # the "Z" in the format promises UTC

    def __init__(self) -> None:
        super().__init__(LINE_FORMAT, DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "\\r").replace("\n", "\\n")


# Rows waiting for the next flush: (agent_id, level, message). Shared by all agents so one
# query writes everything; guarded by _buffer_lock since loops run in several threads.
_buffer: deque[tuple[str, int, str]] = deque()
_buffer_lock = threading.Lock()
_dropped = 0


def _buffer_extend(rows: list[tuple[str, int, str]], *, front: bool = False) -> None:
    """Add rows (front=True puts back a failed batch before newer rows), dropping the oldest."""
    global _dropped
    with _buffer_lock:
        if front:
            _buffer.extendleft(reversed(rows))
        else:
            _buffer.extend(rows)
        while len(_buffer) > MAX_BUFFERED:
            _buffer.popleft()
            _dropped += 1


def dropped_log_entries() -> int:
    """How many LogEntry rows were dropped because the buffer was full (since start)."""
    with _buffer_lock:
        return _dropped


class LogEntryHandler(logging.Handler):
    """Buffers records as LogEntry rows of one agent; flush_log_entries() writes them."""

    def __init__(self, agent_id: str, level: int = DB_LEVEL) -> None:
        super().__init__(level)
        self.agent_id = agent_id

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                message = f"{message} [{_exception_summary(record.exc_info[0], record.exc_info[1])}]"
            _buffer_extend([(self.agent_id, record.levelno, message, record.created)])
        except Exception:  # noqa: BLE001 - the logging contract: report, never raise into the caller
            self.handleError(record)


def _exception_summary(exc_type: type[BaseException], exc: BaseException | None) -> str:
    """`ValueError: boom` on one line (the full traceback is in the file)."""
    lines = traceback.format_exception_only(exc_type, exc)
    return " ".join(line.strip() for line in lines if line.strip())


# agent_id -> LOG_DIR its handlers were built for. Rebuilding when LOG_DIR changes keeps
# agent_logger() correct if settings change (tests) without reopening files on each call.
_configured: dict[str, Path] = {}
_setup_lock = threading.Lock()


def agent_logger(agent_id: str) -> logging.Logger:
    """The logger of one agent: its own rotating file plus LogEntry rows for the panel.

    Safe to call from any thread and as often as wanted: handlers are attached once per
    process. The level is inherited (root, from LOG_LEVEL), so DEBUG lines appear in the
    file only when asked for. Raises ValueError for an id that is not a valid file name.
    """
    log_dir = Path(settings.LOG_DIR)
    if _configured.get(agent_id) == log_dir:
        return logging.getLogger(LOGGER_PREFIX + agent_id)
    with _setup_lock:
        if _configured.get(agent_id) == log_dir:
            return logging.getLogger(LOGGER_PREFIX + agent_id)
        path = log_path(agent_id)
        if path is None:
            # Checked before getLogger: loggers are never freed, so no junk names.
            raise ValueError(f"invalid agent id for a log file: {agent_id!r}")
        logger = logging.getLogger(LOGGER_PREFIX + agent_id)
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in [h for h in logger.handlers if getattr(h, "_agent_log_handler", False)]:
            logger.removeHandler(old)
            old.close()
        # delay=True: no file descriptor (and no empty file) until the first record.
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8", delay=True
        )
        file_handler.setFormatter(OneLineFormatter())
        db_handler = LogEntryHandler(agent_id)
        for handler in (file_handler, db_handler):
            handler._agent_log_handler = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        # The console shows the web process and workers; agent chatter goes to its file.
        logger.propagate = False
        _configured[agent_id] = log_dir
    return logger


def flush_log_entries() -> int:
    """Write every buffered LogEntry row (all agents) in one query; returns how many.

    Safe from any thread (each thread uses its own Django connection). On a database
    error the rows go back to the buffer for the next flush (still bounded) and 0 is
    returned: a loop must not die because the panel's log table is briefly locked.
    Rows of agents that no longer exist are dropped (their rows would be deleted with
    the agent anyway). The rows' `ts` is the flush time (the field is auto_now_add),
    at most one flush interval after the event; the file has the exact time.
    """
    with _buffer_lock:
        batch = list(_buffer)
        _buffer.clear()
    if not batch:
        return 0
    try:
        return _insert(batch)
    except IntegrityError:
        # Most likely an agent was deleted while its loop still logged.
        try:
            batch = _drop_unknown_agents(batch)
            return _insert(batch) if batch else 0
        except DatabaseError:
            _log.warning("could not write %d log entries; kept for the next flush", len(batch), exc_info=True)
            _buffer_extend(batch, front=True)
            return 0
    except DatabaseError:
        _log.warning("could not write %d log entries; kept for the next flush", len(batch), exc_info=True)
        _buffer_extend(batch, front=True)
        return 0


def _insert(batch: list[tuple[str, int, str]]) -> int:
    from agents.models import LogEntry

    rows = [
        LogEntry(
            agent_id=aid, level=level, source="agent", message=msg, ts=datetime.fromtimestamp(created, tz=UTC)
        )
        for aid, level, msg, created in batch
    ]
    # atomic: a savepoint inside a caller's transaction, so a failure does not poison it.
    with transaction.atomic():
        LogEntry.objects.bulk_create(rows)
    return len(rows)


def _drop_unknown_agents(batch: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    global _dropped
    from agents.models import Agent

    ids = {row[0] for row in batch}
    known = set(Agent.objects.filter(agent_id__in=ids).values_list("agent_id", flat=True))
    kept = [row for row in batch if row[0] in known]
    with _buffer_lock:
        _dropped += len(batch) - len(kept)
    return kept


# --- tail ---------------------------------------------------------------------------------


@dataclass
class TailResult:
    lines: list[str]
    # True when the file holds more matching lines before these (or the scan limit hit).
    truncated: bool


# Longer search texts are refused: nobody types them, and each costs a scan of the file.
MAX_QUERY_LENGTH = 200


def check_query(q: str | None) -> None:
    """Raise ValueError for a search text too long to be a person's."""
    if q is not None and len(q) > MAX_QUERY_LENGTH:
        raise ValueError(f"The search text is too long (at most {MAX_QUERY_LENGTH} characters).")


def tail(path: Path, lines: int, min_level: str | None = None, q: str | None = None) -> TailResult:
    """The last `lines` lines of `path` passing the filters, oldest first.

    `min_level`: keep lines whose level token (second field) is at least this level;
    lines without one (not written by our formatter) are kept only without a level
    filter. `q`: case-insensitive substring. Raises ValueError for `lines` outside
    1..MAX_TAIL_LINES, an unknown level or a search text over MAX_QUERY_LENGTH,
    FileNotFoundError when there is no file, LogFileRefused when it is not a plain file
    (open_log()).
    """
    if isinstance(lines, bool) or not isinstance(lines, int) or not 1 <= lines <= MAX_TAIL_LINES:
        raise ValueError(f"lines must be between 1 and {MAX_TAIL_LINES}")
    check_query(q)
    threshold: int | None = None
    if min_level is not None:
        threshold = LEVELS.get(min_level.upper())
        if threshold is None:
            raise ValueError(f"unknown level {min_level!r}; use one of {', '.join(LEVELS)}")
    needle = q.casefold() if q else None

    found: list[str] = []  # newest first
    with open_log(path) as f:
        # One match more than asked tells whether there is more before the returned lines.
        reader = _ReverseLines(f, _block_filter(threshold, needle))
        for raw in reader:
            if threshold is not None:
                fields = raw.split(None, 2)
                level = LEVEL_TOKENS.get(fields[1]) if len(fields) > 1 else None
                if level is None or level < threshold:
                    continue
            text = raw.decode("utf-8", errors="replace")
            if needle is not None and needle not in text.casefold():
                continue
            found.append(text)
            if len(found) > lines:
                break
        truncated = len(found) > lines or reader.hit_scan_limit
    del found[lines:]
    found.reverse()
    return TailResult(lines=found, truncated=truncated)


def _block_filter(threshold: int | None, needle: str | None) -> Callable[[bytes], bool] | None:
    """A cheap test on many whole lines at once: False only when none of them can match.

    A sparse filter would otherwise split and decode every line of up to MAX_SCAN_BYTES in
    Python (seconds); a substring search over the block runs in C. It is a necessary
    condition only; lines in blocks that pass are still checked one by one.
    """
    checks: list[Callable[[bytes], bool]] = []
    if threshold is not None:
        tokens = [token for token, value in LEVEL_TOKENS.items() if value >= threshold]
        checks.append(lambda region: any(token in region for token in tokens))
    if needle is not None and needle.isascii():
        ascii_needle = needle.encode()
        # Only on pure-ASCII bytes: some non-ASCII letters casefold to ASCII ones (the
        # Kelvin sign to "k"), and undecodable bytes are replaced; those regions are
        # left to the exact per-line check.
        checks.append(lambda region: not region.isascii() or ascii_needle in region.lower())
    if not checks:
        return None
    return lambda region: all(check(region) for check in checks)


class _ReverseLines:
    """Iterates the lines of a binary file from the last to the first, reading backwards.

    Reads BLOCK_SIZE blocks from the end, so stopping early costs only what was read.
    Lines are bytes without their b"\\n" (and without a trailing b"\\r"); a newline at the
    end of the file does not make an empty last line. Stops (hit_scan_limit=True) before
    reading past MAX_SCAN_BYTES while part of the file is still unread. With
    `may_match`, the complete lines inside a block are skipped together when it says
    none of them can match (skipped lines are simply not yielded).
    """

    def __init__(self, f: BinaryIO, may_match: Callable[[bytes], bool] | None = None) -> None:
        self.f = f
        self.may_match = may_match
        self.hit_scan_limit = False
        self.scanned = 0

    def __iter__(self) -> Iterator[bytes]:
        f = self.f
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return
        f.seek(end - 1)
        if f.read(1) == b"\n":
            end -= 1
        pos = end
        # The part of the current line already read (it started before `pos`), latest
        # piece first; once over MAX_LINE_BYTES only its length is tracked.
        carry: list[bytes] = []
        carry_len = 0
        while pos > 0:
            if self.scanned >= MAX_SCAN_BYTES:
                self.hit_scan_limit = True
                return
            size = min(BLOCK_SIZE, pos)
            pos -= size
            f.seek(pos)
            block = f.read(size)
            self.scanned += len(block)
            cut = len(block)
            if self.may_match is not None and (last := block.rfind(b"\n")) >= 0:
                # The block's last line continues into what was read before: yield it
                # as usual, then test the whole lines between its first and last b"\n".
                yield self._line(block[last + 1 :], carry, carry_len, pos + last + 1)
                carry, carry_len = [], 0
                cut = last
                first = block.find(b"\n", 0, cut)
                if first >= 0 and not self.may_match(block[first + 1 : cut]):
                    cut = first
            while (nl := block.rfind(b"\n", 0, cut)) >= 0:
                yield self._line(block[nl + 1 : cut], carry, carry_len, pos + nl + 1)
                carry, carry_len = [], 0
                cut = nl
            if cut:
                carry_len += cut
                if carry_len <= MAX_LINE_BYTES:
                    carry.append(block[:cut])
                else:
                    carry = []
        # What remains (possibly empty) is the file's first line.
        yield self._line(b"", carry, carry_len, 0)

    def _line(self, head: bytes, carry: list[bytes], carry_len: int, start: int) -> bytes:
        total = len(head) + carry_len
        if total <= MAX_LINE_BYTES:
            line = head + b"".join(reversed(carry))
        else:
            # Too long to have been kept: read its beginning (timestamp and level) again.
            here = self.f.tell()
            self.f.seek(start)
            line = self.f.read(MAX_LINE_BYTES)
            self.scanned += len(line)
            self.f.seek(here)
            line += b" [... %d more bytes]" % (total - MAX_LINE_BYTES)
        return line[:-1] if line.endswith(b"\r") else line

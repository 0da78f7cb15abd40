"""The live log tail: /ws/agents/<agent_id>/logs/ (docs/api.md "Websockets").

The consumer follows the agent's log file like ``tail -F``: it starts at the end of the
file (history comes from the JSON tail endpoint), waits for a file that does not exist
yet, reopens from the start when the file is rotated (another inode at the path) or
truncated (smaller than what was read), and sends one message per new line::

    {"type": "line", "line": "2026-11-24T12:00:01.000Z INFO agents.agent.feed: ..."}

Lines are read every POLL_SECONDS. When more than MAX_LINES_PER_POLL (matching) lines
arrived since the previous read, only the newest are sent, preceded by
``{"type": "skipped", "count": N}``, so a chatty agent cannot flood a browser.
Errors are ``{"type": "error", "detail": "<sentence>"}`` followed by a close.

Query parameters (both optional): ``level`` (minimum level, as in the tail endpoint)
and ``q`` (case-insensitive substring).

Close codes: 4401 anonymous (also when the login ends while open: control.live.socket_auth),
4400 bad parameter, 4404 unknown agent (or what lies at the
log's name is not a plain file: agents.runtime.logs.open_log), 1011 reading failed.

File polling is the mechanism on purpose: it needs nothing from the agent's process (the
worker may be another machine's, sharing LOG_DIR) and nothing from Redis, so the log can
be watched exactly when Redis or the workers are in trouble.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agents.models import Agent

# The level names and file tokens the tail endpoint uses, so `level` means the same on
# the socket as in /system/agents/<id>/logs?level=.
from agents.runtime.logs import (
    LEVEL_TOKENS,
    LEVELS,
    MAX_LINE_BYTES,
    LogFileRefused,
    check_query,
    log_path,
    open_log,
)
from control.live.socket_auth import LoginWatch

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
MAX_LINES_PER_POLL = 200
# One poll processes at most this many bytes line by line; when further behind (a burst
# of megabytes), the older part is skipped by counting its newlines only.
MAX_CATCHUP_BYTES = 4 * 1024 * 1024
READ_CHUNK = 256 * 1024

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_INTERNAL_ERROR = 1011


@dataclass
class Batch:
    """What one poll found: the newest matching lines (oldest first) and how many before
    them were left out."""

    lines: list[str] = field(default_factory=list)
    skipped: int = 0


class _Collector:
    """Filters complete lines and keeps only the newest `limit` of those that match."""

    def __init__(self, limit: int, threshold: int | None, needle: str | None) -> None:
        self.kept: deque[bytes] = deque(maxlen=limit)
        self.matched = 0
        self.skipped_unread = 0  # lines jumped over without being read one by one
        self.threshold = threshold
        self.needle = needle

    def add(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if self.threshold is not None:
            fields = raw.split(None, 2)
            level = LEVEL_TOKENS.get(fields[1]) if len(fields) > 1 else None
            if level is None or level < self.threshold:
                return
        if self.needle is not None and self.needle not in _decode(raw).casefold():
            return
        self.matched += 1
        self.kept.append(raw)

    def batch(self) -> Batch:
        lines = [_decode(raw) for raw in self.kept]
        return Batch(lines=lines, skipped=self.matched - len(lines) + self.skipped_unread)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


class LogFollower:
    """Follows one file like ``tail -F`` (synchronous; the consumer runs it in a thread).

    ``start_at_end()`` once, then ``poll()`` repeatedly; ``close()`` at the end. A lock
    makes ``close()`` wait for a poll still running in its thread.
    """

    def __init__(
        self,
        path: Path,
        *,
        threshold: int | None = None,
        needle: str | None = None,
        max_lines: int = MAX_LINES_PER_POLL,
        max_catchup_bytes: int = MAX_CATCHUP_BYTES,
    ) -> None:
        self.path = path
        self.threshold = threshold
        self.needle = needle.casefold() if needle else None
        self.max_lines = max_lines
        self.max_catchup_bytes = max_catchup_bytes
        self._file: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._pos = 0
        # The line in progress (no newline yet), at most MAX_LINE_BYTES of it, and how
        # many bytes of it were dropped beyond that.
        self._partial = b""
        self._partial_dropped = 0
        # True while the bytes before the next newline are the rest of a line whose
        # beginning was never read (we started at the end of the file mid-line).
        self._discard_partial = False
        self._lock = threading.Lock()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    def start_at_end(self) -> None:
        """Open the file (if it exists) positioned at its end: only new lines will come."""
        with self._lock:
            if self._open() and self._file is not None:
                end = self._file.seek(0, os.SEEK_END)
                if end > 0:
                    self._file.seek(end - 1)
                    self._discard_partial = self._file.read(1) != b"\n"
                self._pos = end

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._close_file()

    @property
    def is_open(self) -> bool:
        return self._file is not None

    # -- polling ------------------------------------------------------------------------

    def poll(self) -> Batch:
        """Everything new since the previous poll (rotation and truncation handled)."""
        with self._lock:
            collector = _Collector(self.max_lines, self.threshold, self.needle)
            if self._closed:
                return collector.batch()
            try:
                # Not following a link: one planted at the name is another file (the
                # reopen below then refuses it).
                current = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            if self._file is not None:
                opened = os.fstat(self._file.fileno())
                if current is None or (current.st_dev, current.st_ino) != self._identity:
                    # Rotated or removed: what the writer put in the old file before it
                    # moved on is still readable through our descriptor.
                    self._read(collector, opened.st_size)
                    self._end_partial(collector)
                    self._close_file()
                elif opened.st_size < self._pos:
                    # Truncated in place: the file starts over.
                    self._file.seek(0)
                    self._pos = 0
                    self._reset_partial()
            if self._file is None and current is not None:
                # A new file (or the first one): everything in it is new.
                self._open()
            if self._file is not None:
                self._read(collector, os.fstat(self._file.fileno()).st_size)
            return collector.batch()

    # -- internals ----------------------------------------------------------------------

    def _open(self) -> bool:
        """Open the file at the path (False when there is none); LogFileRefused when
        what is there is not a plain log file (agents.runtime.logs.open_log, the same
        rule as the tail endpoint's)."""
        try:
            f = open_log(self.path)  # kept open across polls; closed by _close_file()
        except FileNotFoundError:
            return False
        st = os.fstat(f.fileno())
        self._file, self._identity, self._pos = f, (st.st_dev, st.st_ino), 0
        self._reset_partial()
        return True

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._identity = None, None
        self._reset_partial()

    def _reset_partial(self) -> None:
        self._partial, self._partial_dropped, self._discard_partial = b"", 0, False

    def _read(self, collector: _Collector, size: int) -> None:
        """Read from the current position to `size` (the file's size when polled)."""
        assert self._file is not None
        if size - self._pos > self.max_catchup_bytes:
            self._skip(collector, size - self.max_catchup_bytes)
        while self._pos < size:
            chunk = self._file.read(min(READ_CHUNK, size - self._pos))
            if not chunk:
                break
            self._pos += len(chunk)
            self._feed(chunk, collector)

    def _skip(self, collector: _Collector, target: int) -> None:
        """Jump to `target`, counting the complete lines passed (filters not applied)."""
        assert self._file is not None
        while self._pos < target:
            chunk = self._file.read(min(READ_CHUNK, target - self._pos))
            if not chunk:
                break
            self._pos += len(chunk)
            newline = chunk.rfind(b"\n")
            if newline < 0:
                self._add_partial(chunk)
                continue
            lines = chunk.count(b"\n")
            if self._discard_partial:
                lines -= 1  # the first "line" was the tail of one never counted
            collector.skipped_unread += lines
            self._reset_partial()
            self._add_partial(chunk[newline + 1 :])

    def _feed(self, chunk: bytes, collector: _Collector) -> None:
        parts = chunk.split(b"\n")
        rest = parts.pop()  # after the last newline: the start of a line still being written
        for i, part in enumerate(parts):
            if i == 0 and (self._partial or self._partial_dropped or self._discard_partial):
                discard = self._discard_partial
                self._add_partial(part)
                line = self._take_partial()
                if not discard:
                    collector.add(line)
                continue
            if len(part) > MAX_LINE_BYTES:
                part = part[:MAX_LINE_BYTES] + b" [... %d more bytes]" % (len(part) - MAX_LINE_BYTES)
            collector.add(part)
        if rest:
            self._add_partial(rest)

    def _add_partial(self, data: bytes) -> None:
        room = MAX_LINE_BYTES - len(self._partial)
        if len(data) <= room:
            self._partial += data
        else:
            self._partial += data[:room]
            self._partial_dropped += len(data) - room

    def _take_partial(self) -> bytes:
        line, dropped = self._partial, self._partial_dropped
        self._reset_partial()
        if dropped:
            line += b" [... %d more bytes]" % dropped
        return line

    def _end_partial(self, collector: _Collector) -> None:
        """The file ended without a newline: its last line is complete after all."""
        if (self._partial or self._partial_dropped) and not self._discard_partial:
            collector.add(self._take_partial())
        self._reset_partial()


def parse_filters(query_string: bytes) -> tuple[int | None, str | None]:
    """(`level` threshold, `q`) from the socket's query string; ValueError with a sentence."""
    params = parse_qs(query_string.decode("latin-1"), keep_blank_values=False)
    level_name = (params.get("level") or [""])[-1].strip()
    threshold = None
    if level_name:
        threshold = LEVELS.get(level_name.upper())
        if threshold is None:
            raise ValueError(f"Unknown level {level_name!r}; use one of {', '.join(LEVELS)}.")
    needle = (params.get("q") or [""])[-1] or None
    check_query(needle)
    return threshold, needle


class LogTailConsumer(AsyncJsonWebsocketConsumer):
    """Streams new lines of one agent's log file to an authenticated user."""

    poll_seconds = POLL_SECONDS

    follower: LogFollower | None = None
    follow_task: asyncio.Task | None = None
    watch: LoginWatch | None = None

    async def connect(self) -> None:
        # Errors accept first, then close with a code: a close before the accept would
        # reach the browser as a bare HTTP 403, and the code (and sentence) would be lost.
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        agent_id = self.scope["url_route"]["kwargs"]["agent_id"]
        # Looked up in the database first: only a known agent's file is ever opened.
        if not await _agent_exists(agent_id):
            await self._fail(f"There is no agent with id {agent_id!r}.", CLOSE_NOT_FOUND)
            return
        try:
            threshold, needle = parse_filters(self.scope.get("query_string", b""))
        except ValueError as exc:
            await self._fail(str(exc), CLOSE_BAD_REQUEST)
            return
        path = log_path(agent_id)
        if path is None:
            await self._fail(f"The log of agent {agent_id} is not readable.", CLOSE_NOT_FOUND)
            return
        self.follower = LogFollower(path, threshold=threshold, needle=needle)
        # Positioned before the accept: a line written once the client sees the socket
        # open is never missed (and the history endpoint has everything before it).
        try:
            await asyncio.to_thread(self.follower.start_at_end)
        except LogFileRefused:
            await self._fail(f"The log of agent {agent_id} is not readable.", CLOSE_NOT_FOUND)
            return
        await self.accept()
        self.follow_task = asyncio.create_task(self._follow(), name=f"log-tail:{agent_id}")
        # Any logged-in user may read logs: only the login itself is re-checked.
        self.watch = LoginWatch(self.scope, self._login_lost, had_control=False)
        self.watch.start()

    async def _login_lost(self, code: int) -> None:
        task, self.follow_task = self.follow_task, None
        if task is not None:  # no line is sent once the login is gone
            task.cancel()
            await asyncio.wait({task})
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self.watch is not None:
            await self.watch.stop()
        task, self.follow_task = self.follow_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        if self.follower is not None:
            # In a thread: it waits for a poll that may still be reading in its own.
            await asyncio.to_thread(self.follower.close)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """The tail takes no commands; anything a client sends is ignored (not parsed)."""

    async def _fail(self, detail: str, code: int, *, accept: bool = True) -> None:
        if accept:
            await self.accept()
        await self.send_json({"type": "error", "detail": detail})
        await self.close(code=code)

    async def _follow(self) -> None:
        assert self.follower is not None
        try:
            while True:
                batch = await asyncio.to_thread(self.follower.poll)
                if batch.skipped:
                    await self.send_json({"type": "skipped", "count": batch.skipped})
                for line in batch.lines:
                    await self.send_json({"type": "line", "line": line})
                await asyncio.sleep(self.poll_seconds)
        except asyncio.CancelledError:
            raise
        except LogFileRefused:
            # Something other than the log file was put at its name after the connect.
            log.warning("log tail of %s stopped: not a plain log file", self.follower.path)
            with contextlib.suppress(Exception):
                agent_id = self.scope["url_route"]["kwargs"]["agent_id"]
                detail = f"The log of agent {agent_id} is not readable."
                await self._fail(detail, CLOSE_NOT_FOUND, accept=False)
        except Exception:
            log.exception("log tail of %s failed", self.follower.path)
            with contextlib.suppress(Exception):
                await self._fail(
                    "Reading the log failed; see the server log.", CLOSE_INTERNAL_ERROR, accept=False
                )


@database_sync_to_async
def _agent_exists(agent_id: str) -> bool:
    return Agent.objects.filter(pk=agent_id).exists()

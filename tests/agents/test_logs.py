"""Agent log files, LogEntry batching, log_path confinement and the backwards tail."""

from __future__ import annotations

import builtins
import logging
import logging.handlers
import os
import random
import re
import threading
from pathlib import Path
from typing import Self

import pytest
from django.db import OperationalError

from agents.runtime import logs

LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) agents\.agent\.[-\w]+: "
)


@pytest.fixture(autouse=True)
def log_dir(settings, tmp_path):
    """A fresh LOG_DIR per test, and module state (handlers, buffer) reset around it."""
    settings.LOG_DIR = tmp_path / "logs"
    parent = logging.getLogger("agents.agent")
    old_level = parent.level
    # The agent loggers inherit their level; make DEBUG visible whatever LOG_LEVEL says.
    parent.setLevel(logging.DEBUG)
    logs._buffer.clear()
    yield settings.LOG_DIR
    parent.setLevel(old_level)
    for agent_id in list(logs._configured):
        logger = logging.getLogger(logs.LOGGER_PREFIX + agent_id)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    logs._configured.clear()
    logs._buffer.clear()


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --- agent_logger -------------------------------------------------------------------------


def test_logger_writes_documented_format(log_dir):
    log = logs.agent_logger("feed-1")
    log.info("hello %s", "world")
    log.warning("careful")
    log.debug("details")

    lines = read_lines(log_dir / "feed-1.log")
    assert len(lines) == 3
    assert all(LINE_RE.match(line) for line in lines), lines
    assert lines[0].endswith(" INFO agents.agent.feed-1: hello world")
    assert lines[1].split()[1] == "WARNING"
    assert lines[2].split()[1] == "DEBUG"
    assert log.name == "agents.agent.feed-1"
    assert log.propagate is False


def test_logger_times_are_utc():
    record = logging.LogRecord("agents.agent.x", logging.INFO, __file__, 1, "m", None, None)
    record.created = 86400 + 3661.25  # 1970-01-02T01:01:01.250Z
    record.msecs = 250
    assert logs.OneLineFormatter().format(record).startswith("1970-01-02T01:01:01.250Z INFO ")


def test_multiline_message_stays_one_line(log_dir):
    log = logs.agent_logger("a1")
    log.info("first\nsecond\r\nthird")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("step failed")
    log.info("after")

    lines = read_lines(log_dir / "a1.log")
    assert len(lines) == 3
    assert lines[0].endswith(r"first\nsecond\r\nthird")
    assert "step failed\\nTraceback (most recent call last):" in lines[1]
    assert "ValueError: bad\\nvalue" in lines[1]
    assert all(LINE_RE.match(line) for line in lines)


def test_agent_logger_is_idempotent_and_thread_safe(log_dir):
    results: list[logging.Logger] = []

    def get() -> None:
        results.append(logs.agent_logger("a1"))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logs.agent_logger("a1")

    assert len({id(logger) for logger in results}) == 1
    # Only ours: pytest's log capture may add its own handlers.
    handlers = [h for h in results[0].handlers if getattr(h, "_agent_log_handler", False)]
    assert len(handlers) == 2
    file_handler = next(h for h in handlers if isinstance(h, logging.handlers.RotatingFileHandler))
    assert file_handler.maxBytes == logs.MAX_BYTES
    assert file_handler.backupCount == logs.BACKUP_COUNT
    assert next(h for h in handlers if isinstance(h, logs.LogEntryHandler)).level == logging.INFO
    # delay=True: no file until the first record.
    assert not (log_dir / "a1.log").exists()


def test_agent_logger_follows_log_dir_change(settings, tmp_path):
    logs.agent_logger("a1").info("one")
    settings.LOG_DIR = tmp_path / "other"
    logs.agent_logger("a1").info("two")
    assert read_lines(tmp_path / "logs" / "a1.log")[0].endswith("one")
    assert read_lines(tmp_path / "other" / "a1.log")[0].endswith("two")
    handlers = logging.getLogger("agents.agent.a1").handlers
    assert len([h for h in handlers if getattr(h, "_agent_log_handler", False)]) == 2


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "a b"])
def test_agent_logger_rejects_bad_ids(bad):
    with pytest.raises(ValueError):
        logs.agent_logger(bad)


# --- LogEntry rows ------------------------------------------------------------------------


@pytest.mark.django_db
def test_log_entries_written_on_flush(log_dir):
    from agents.models import Agent, LogEntry, Role

    Agent.objects.create(agent_id="a1", name="A1", kind="market_data", role=Role.DATA_FEED)
    Agent.objects.create(agent_id="a2", name="A2", kind="market_data", role=Role.DATA_FEED)
    log1, log2 = logs.agent_logger("a1"), logs.agent_logger("a2")
    log1.info("started\nwith two lines")
    log1.debug("not for the panel")
    log2.warning("slow feed")
    try:
        raise KeyError("price")
    except KeyError:
        log2.exception("tick failed")
    assert LogEntry.objects.count() == 0  # buffered, not written per record

    assert logs.flush_log_entries() == 3
    assert logs.flush_log_entries() == 0

    rows = {(e.agent_id, e.level, e.source, e.message) for e in LogEntry.objects.all()}
    assert rows == {
        ("a1", logging.INFO, "agent", "started\nwith two lines"),
        ("a2", logging.WARNING, "agent", "slow feed"),
        ("a2", logging.ERROR, "agent", "tick failed [KeyError: 'price']"),
    }


@pytest.mark.django_db(transaction=True)
def test_flush_drops_rows_of_deleted_agents(log_dir):
    """The FK check fails at commit; rows of the known agent must still be written."""
    from agents.models import Agent, LogEntry, Role

    Agent.objects.create(agent_id="a1", name="A1", kind="market_data", role=Role.DATA_FEED)
    logs.agent_logger("a1").info("kept")
    logs.agent_logger("ghost").info("lost")
    dropped = logs.dropped_log_entries()

    assert logs.flush_log_entries() == 1
    assert list(LogEntry.objects.values_list("agent_id", "message")) == [("a1", "kept")]
    assert logs.dropped_log_entries() == dropped + 1


def test_flush_keeps_rows_on_database_error(log_dir, monkeypatch):
    written: list[list[tuple[str, int, str]]] = []

    def failing(batch):
        raise OperationalError("database is locked")

    log = logs.agent_logger("a1")
    log.info("one")
    log.info("two")
    monkeypatch.setattr(logs, "_insert", failing)
    assert logs.flush_log_entries() == 0
    log.info("three")

    monkeypatch.setattr(logs, "_insert", lambda batch: written.append(batch) or len(batch))
    assert logs.flush_log_entries() == 3
    assert [row[2] for row in written[0]] == ["one", "two", "three"]  # order kept


def test_buffer_is_bounded(log_dir, monkeypatch):
    monkeypatch.setattr(logs, "MAX_BUFFERED", 5)
    before = logs.dropped_log_entries()
    log = logs.agent_logger("a1")
    for i in range(8):
        log.info("m%d", i)
    assert [row[2] for row in logs._buffer] == ["m3", "m4", "m5", "m6", "m7"]
    assert logs.dropped_log_entries() == before + 3


def test_concurrent_logging_and_flushing_loses_nothing(log_dir, monkeypatch):
    monkeypatch.setattr(logs, "MAX_BUFFERED", 100_000)
    written: list[str] = []
    lock = threading.Lock()

    def insert(batch):
        with lock:
            written.extend(row[2] for row in batch)
        return len(batch)

    monkeypatch.setattr(logs, "_insert", insert)
    done = threading.Event()

    def producer(n: int) -> None:
        log = logs.agent_logger(f"a{n}")
        for i in range(500):
            log.info("%d-%d", n, i)

    def flusher() -> None:
        while not done.is_set():
            logs.flush_log_entries()

    producers = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    flushers = [threading.Thread(target=flusher) for _ in range(2)]
    for t in producers + flushers:
        t.start()
    for t in producers:
        t.join()
    done.set()
    for t in flushers:
        t.join()
    logs.flush_log_entries()
    assert sorted(written) == sorted(f"{n}-{i}" for n in range(4) for i in range(500))


# --- log_path -----------------------------------------------------------------------------


def test_log_path_accepts_normal_id(log_dir):
    assert logs.log_path("feed_1-a") == log_dir.resolve() / "feed_1-a.log"


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "a/b", "..", ".", "/etc/passwd", "", "a\x00b", "a\n", "a.b", "é", "x" * 300]
)
def test_log_path_refuses_unsafe_ids(bad):
    assert logs.log_path(bad) is None


def test_log_path_refuses_symlink_out_of_log_dir(log_dir, tmp_path):
    log_dir.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    os.symlink(secret, log_dir / "evil.log")
    (log_dir / "inside.txt").write_text("ok\n")
    os.symlink(log_dir / "inside.txt", log_dir / "alias.log")

    assert logs.log_path("evil") is None
    assert logs.log_path("alias") == (log_dir / "inside.txt").resolve()


# --- tail ---------------------------------------------------------------------------------


def line(i: int, level: str = "INFO", text: str = "") -> str:
    return f"2024-05-01T12:00:{i % 60:02d}.000Z {level} agents.agent.a1: message {i}{text}"


LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


@pytest.fixture
def sample(tmp_path) -> tuple[Path, list[str]]:
    """20 lines cycling through the levels, every third mentioning "Order", one continuation."""
    lines = [line(i, LEVELS[i % 5], " Order filled" if i % 3 == 0 else "") for i in range(20)]
    lines.insert(10, "    continuation without a level")
    path = tmp_path / "sample.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def test_tail_last_lines(sample):
    path, lines = sample
    assert logs.tail(path, 5) == logs.TailResult(lines=lines[-5:], truncated=True)
    assert logs.tail(path, 21) == logs.TailResult(lines=lines, truncated=False)
    assert logs.tail(path, 5000) == logs.TailResult(lines=lines, truncated=False)
    assert logs.tail(path, 1).lines == [lines[-1]]  # the trailing newline makes no empty line


def test_tail_without_trailing_newline(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"one\ntwo\r\nthree")
    assert logs.tail(path, 2) == logs.TailResult(lines=["two", "three"], truncated=True)
    assert logs.tail(path, 3) == logs.TailResult(lines=["one", "two", "three"], truncated=False)


def test_tail_empty_file(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"")
    assert logs.tail(path, 10) == logs.TailResult(lines=[], truncated=False)


def test_tail_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        logs.tail(tmp_path / "nope.log", 10)


def test_tail_level_filter(sample):
    path, lines = sample
    errors = [x for x in lines if x.split()[1] in ("ERROR", "CRITICAL")]
    assert len(errors) == 8
    assert logs.tail(path, 3, min_level="error") == logs.TailResult(lines=errors[-3:], truncated=True)
    assert logs.tail(path, 8, min_level="ERROR") == logs.TailResult(lines=errors, truncated=False)
    assert logs.tail(path, 100, min_level="Error") == logs.TailResult(lines=errors, truncated=False)
    # DEBUG passes every line with a level, but not the continuation.
    assert logs.tail(path, 100, min_level="debug").lines == [x for x in lines if "continuation" not in x]


def test_tail_query_filter(sample):
    path, lines = sample
    orders = [x for x in lines if "Order" in x]
    assert len(orders) == 7
    assert logs.tail(path, 2, q="order FILLED") == logs.TailResult(lines=orders[-2:], truncated=True)
    assert logs.tail(path, 7, q="order") == logs.TailResult(lines=orders, truncated=False)
    assert logs.tail(path, 50, q="CONTINUATION").lines == ["    continuation without a level"]
    assert logs.tail(path, 50, q="nothing like this") == logs.TailResult(lines=[], truncated=False)


def test_tail_level_and_query(sample):
    path, lines = sample
    both = [x for x in lines if "Order" in x and x.split()[1] in ("WARNING", "ERROR", "CRITICAL")]
    assert both == [
        line(3, "ERROR", " Order filled"),
        line(9, "CRITICAL", " Order filled"),
        line(12, "WARNING", " Order filled"),
        line(18, "ERROR", " Order filled"),
    ]
    assert logs.tail(path, 3, min_level="warning", q="order") == logs.TailResult(both[-3:], True)
    assert logs.tail(path, 4, min_level="warning", q="order") == logs.TailResult(both, False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lines": 0},
        {"lines": 5001},
        {"lines": -1},
        {"lines": True},
        {"lines": 10, "min_level": "verbose"},
        {"lines": 10, "min_level": "WARN"},
    ],
)
def test_tail_rejects_bad_arguments(sample, kwargs):
    path, _ = sample
    with pytest.raises(ValueError):
        logs.tail(path, **kwargs)


def naive_tail(data: bytes, n: int, min_level: str | None, q: str | None) -> logs.TailResult:
    """The obvious whole-file version, to check the backwards reader against."""
    raw = data.split(b"\n")
    if data.endswith(b"\n"):
        raw.pop()
    if not data:
        raw = []
    out = []
    for r in raw:
        r = r[:-1] if r.endswith(b"\r") else r
        text = r.decode("utf-8", errors="replace")
        if min_level is not None:
            fields = text.split(None, 2)
            if len(fields) < 2 or fields[1] not in LEVELS:
                continue
            if LEVELS.index(fields[1]) < LEVELS.index(min_level):
                continue
        if q is not None and q.casefold() not in text.casefold():
            continue
        out.append(text)
    return logs.TailResult(lines=out[-n:], truncated=len(out) > n)


ASCII_PIECES = [b"\n", b"\n", b"x", b" ", b"INFO ", b"ERROR ", b"t ", b"\r\n", b"Ab", b"k"]
# The Kelvin sign casefolds to "k": the per-block ASCII shortcut must not skip it.
OTHER_PIECES = ["é".encode(), b"\xff", "\u212a".encode()]


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 64, 4096])
@pytest.mark.parametrize("pieces", [ASCII_PIECES, ASCII_PIECES + OTHER_PIECES], ids=["ascii", "mixed"])
def test_tail_matches_naive_reading_across_block_boundaries(tmp_path, monkeypatch, block_size, pieces):
    monkeypatch.setattr(logs, "BLOCK_SIZE", block_size)
    rng = random.Random(block_size * len(pieces))
    path = tmp_path / "r.log"
    for _ in range(300):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 80)))
        path.write_bytes(data)
        n = rng.randint(1, 8)
        level = rng.choice([None, "INFO", "ERROR"])
        q = rng.choice([None, "ab", "é", "x ", "k", "K"])
        assert logs.tail(path, n, level, q) == naive_tail(data, n, level, q), (data, n, level, q)


def test_tail_cuts_overlong_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "BLOCK_SIZE", 16)
    monkeypatch.setattr(logs, "MAX_LINE_BYTES", 80)
    long = line(1, "ERROR", " " + "y" * 200)
    path = tmp_path / "x.log"
    path.write_text(f"{line(0)}\n{long}\n{line(2)}\n")
    cut = long[:80] + f" [... {len(long) - 80} more bytes]"
    assert logs.tail(path, 3, min_level="error") == logs.TailResult(lines=[cut], truncated=False)
    assert logs.tail(path, 3, q="yyy") == logs.TailResult(lines=[cut], truncated=False)
    assert logs.tail(path, 3).lines == [line(0), cut, line(2)]


def test_tail_stops_at_scan_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "BLOCK_SIZE", 1024)
    monkeypatch.setattr(logs, "MAX_SCAN_BYTES", 4096)
    path = tmp_path / "x.log"
    path.write_text("\n".join([line(0, "ERROR")] + [line(i) for i in range(1, 1000)]) + "\n")
    assert logs.tail(path, 10, min_level="ERROR") == logs.TailResult(lines=[], truncated=True)
    # Unfiltered, the limit is far away.
    assert logs.tail(path, 10) == logs.TailResult(lines=[line(i) for i in range(990, 1000)], truncated=True)


class CountingFile:
    """Wraps the file tail() opens, counting the bytes it reads."""

    def __init__(self, f) -> None:
        self._f = f
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.bytes_read += len(data)
        return data

    def seek(self, *args) -> int:
        return self._f.seek(*args)

    def tell(self) -> int:
        return self._f.tell()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def test_tail_of_large_file_reads_only_its_end(tmp_path, monkeypatch):
    path = tmp_path / "big.log"
    filler = "".join(line(i, "INFO", " filler") + "\n" for i in range(12_000)).encode()  # ~0.9 MB
    final = [line(i, "ERROR" if i % 10 == 0 else "INFO", f" final {i:04d}") for i in range(150)]
    with open(path, "wb") as f:
        f.writelines(filler for _ in range(300_000_000 // len(filler) + 1))
        f.write(("\n".join(final) + "\n").encode())
    assert path.stat().st_size > 300_000_000

    opened: list[CountingFile] = []

    def counting_open(*args, **kwargs) -> CountingFile:
        opened.append(CountingFile(builtins.open(*args, **kwargs)))  # noqa: SIM115 - closed by __exit__
        return opened[-1]

    monkeypatch.setattr(logs, "open", counting_open, raising=False)

    assert logs.tail(path, 100) == logs.TailResult(lines=final[-100:], truncated=True)
    assert opened[-1].bytes_read < 1024 * 1024

    errors = [x for x in final if " ERROR " in x]
    assert logs.tail(path, 10, min_level="ERROR") == logs.TailResult(lines=errors[-10:], truncated=True)
    assert opened[-1].bytes_read < 1024 * 1024

    assert logs.tail(path, 3, q="FINAL 014") == logs.TailResult(lines=final[-3:], truncated=True)
    assert opened[-1].bytes_read < 1024 * 1024
    path.unlink()  # tmp_path would remove it too, but only after later tests ran

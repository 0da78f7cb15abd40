"""The live log tail /ws/agents/<agent_id>/logs/ (control/live/log_consumer.py).

The consumer is driven through channels' WebsocketCommunicator, routed by the project's
own websocket URLs; a few tests go through the whole ASGI application (origin check,
session cookie). pytest-asyncio is not installed: each test is a plain function that runs
its coroutine with asgiref's async_to_sync. The tests are transactional because the
consumer reads the database from another thread (database_sync_to_async).

The consumer polls its file every POLL_SECONDS: receive timeouts below are deadlines
for a line to arrive, not waits; nothing here sleeps to let the consumer catch up.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from agents.runtime.logs import OneLineFormatter
from control.live.log_consumer import LogFollower
from control.live.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

# Generous deadline for a line to arrive (the consumer polls every 0.25 s).
ARRIVAL = 5


@pytest.fixture
def log_dir(settings, tmp_path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    settings.LOG_DIR = path
    return path


def line(i: int, level: str = "INFO", message: str | None = None) -> str:
    return f"2026-11-24T12:00:{i % 60:02d}.000Z {level} agents.agent.feed: {message or f'message {i}'}"


def append(path: Path, *lines: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(f"{text}\n" for text in lines))


def communicator(path: str, user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    comm.scope["user"] = user
    return comm


def run(coro_fn):
    """Run an async test body to completion on a fresh event loop."""
    async_to_sync(coro_fn)()


async def receive_lines(comm: WebsocketCommunicator, n: int) -> list[str]:
    got = []
    for _ in range(n):
        message = await comm.receive_json_from(timeout=ARRIVAL)
        assert message["type"] == "line", message
        got.append(message["line"])
    return got


async def close_and_check(comm: WebsocketCommunicator) -> None:
    """Disconnect, and check the consumer left no task behind."""
    await comm.disconnect()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not [t for t in others if t.get_name().startswith("log-tail:")], others


# --- who may connect -------------------------------------------------------------------


def test_an_anonymous_connection_is_closed_with_4401(make_agent, log_dir):
    make_agent("feed")
    append(log_dir / "feed.log", line(1))

    async def body():
        comm = communicator("/ws/agents/feed/logs/", AnonymousUser())
        connected, _ = await comm.connect()
        assert connected  # accepted only to be able to say why it closes
        assert await comm.receive_output(timeout=ARRIVAL) == {"type": "websocket.close", "code": 4401}
        await comm.disconnect()

    run(body)


def test_through_the_asgi_application_a_session_cookie_is_needed(make_agent, log_dir, client, operator):
    from tradingsite.asgi import application

    make_agent("feed")
    path = log_dir / "feed.log"
    append(path, line(1))
    client.force_login(operator)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    origin = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]

    async def body():
        anonymous = WebsocketCommunicator(application, "/ws/agents/feed/logs/", headers=origin)
        assert (await anonymous.connect())[0]
        assert (await anonymous.receive_output(timeout=ARRIVAL))["code"] == 4401
        await anonymous.disconnect()

        logged_in = WebsocketCommunicator(
            application, "/ws/agents/feed/logs/", headers=[*origin, (b"cookie", cookie)]
        )
        assert (await logged_in.connect())[0]
        append(path, line(2))
        assert await receive_lines(logged_in, 1) == [line(2)]
        await close_and_check(logged_in)

    run(body)


def test_an_unknown_agent_gets_an_error_sentence_and_a_close(viewer, log_dir):
    # A file without an agent row: the database decides, not the file system.
    append(log_dir / "ghost.log", line(1))

    async def body():
        comm = communicator("/ws/agents/ghost/logs/", viewer)
        assert (await comm.connect())[0]
        assert await comm.receive_json_from(timeout=ARRIVAL) == {
            "type": "error",
            "detail": "There is no agent with id 'ghost'.",
        }
        assert (await comm.receive_output(timeout=ARRIVAL))["code"] == 4404
        await comm.disconnect()

    run(body)


def test_an_unknown_level_is_refused_with_a_sentence(viewer, make_agent, log_dir):
    make_agent("feed")

    async def body():
        comm = communicator("/ws/agents/feed/logs/?level=LOUD", viewer)
        assert (await comm.connect())[0]
        message = await comm.receive_json_from(timeout=ARRIVAL)
        assert message["type"] == "error" and "Unknown level 'LOUD'" in message["detail"]
        assert (await comm.receive_output(timeout=ARRIVAL))["code"] == 4400
        await comm.disconnect()

    run(body)


# --- following the file ----------------------------------------------------------------


def test_it_starts_at_the_end_and_sends_each_appended_line(viewer, make_agent, log_dir):
    make_agent("feed")
    path = log_dir / "feed.log"
    append(path, line(1), line(2))  # history: the JSON endpoint's job, not the socket's

    async def body():
        comm = communicator("/ws/agents/feed/logs/", viewer)
        assert (await comm.connect())[0]
        append(path, line(3))
        assert await receive_lines(comm, 1) == [line(3)]
        append(path, line(4), line(5, "ERROR", "boom <script>alert(1)</script>"))
        assert await receive_lines(comm, 2) == [line(4), line(5, "ERROR", "boom <script>alert(1)</script>")]
        await close_and_check(comm)

    run(body)


def test_it_waits_for_a_file_that_does_not_exist_yet(viewer, make_agent, log_dir):
    make_agent("feed")
    path = log_dir / "feed.log"

    async def body():
        comm = communicator("/ws/agents/feed/logs/", viewer)
        assert (await comm.connect())[0]
        assert await comm.receive_nothing(timeout=0.05)  # no error: it waits
        # Everything in a file that appears later is new.
        append(path, line(1), line(2))
        assert await receive_lines(comm, 2) == [line(1), line(2)]
        await close_and_check(comm)

    run(body)


def test_rotation_keeps_following_without_losing_lines(viewer, make_agent, log_dir):
    """The agents' own RotatingFileHandler rolls the file over between two polls."""
    make_agent("feed")
    path = log_dir / "feed.log"
    append(path, line(0))
    handler = logging.handlers.RotatingFileHandler(path, backupCount=2, encoding="utf-8")
    handler.setFormatter(OneLineFormatter())
    logger = logging.getLogger("tests.log_consumer.rotation")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)

    async def body():
        comm = communicator("/ws/agents/feed/logs/", viewer)
        assert (await comm.connect())[0]
        try:
            logger.info("before rotation 1")
            assert (await receive_lines(comm, 1))[0].endswith("before rotation 1")
            # Written to the old file just before it is renamed: read through the old
            # descriptor, then the new file from its start.
            logger.info("before rotation 2")
            handler.doRollover()
            logger.info("after rotation")
            got = await receive_lines(comm, 2)
            assert [text.split(": ", 1)[1] for text in got] == ["before rotation 2", "after rotation"]
            assert Path(f"{path}.1").exists()
        finally:
            logger.removeHandler(handler)
            handler.close()
        await close_and_check(comm)

    run(body)


def test_a_file_replaced_by_another_is_read_from_its_start(viewer, make_agent, log_dir):
    make_agent("feed")
    path = log_dir / "feed.log"
    append(path, line(1))

    async def body():
        comm = communicator("/ws/agents/feed/logs/", viewer)
        assert (await comm.connect())[0]
        replacement = log_dir / "feed.log.new"
        append(replacement, line(2), line(3))
        os.replace(replacement, path)
        assert await receive_lines(comm, 2) == [line(2), line(3)]
        await close_and_check(comm)

    run(body)


def test_truncation_starts_over_from_the_top(viewer, make_agent, log_dir):
    make_agent("feed")
    path = log_dir / "feed.log"
    append(path, *[line(i, message="a long line of history " * 3) for i in range(5)])

    async def body():
        comm = communicator("/ws/agents/feed/logs/", viewer)
        assert (await comm.connect())[0]
        with open(path, "w", encoding="utf-8") as f:  # copytruncate-style, same inode
            f.write(line(9) + "\n")
        assert await receive_lines(comm, 1) == [line(9)]
        await close_and_check(comm)

    run(body)


def test_a_burst_is_coalesced_into_the_newest_200_lines(viewer, make_agent, log_dir):
    make_agent("feed")
    path = log_dir / "feed.log"
    append(path, line(0))

    async def body():
        comm = communicator("/ws/agents/feed/logs/", viewer)
        assert (await comm.connect())[0]
        # 500 lines that land at once: written beside the log and moved over it, so one
        # poll sees all of them (an append could be read half-way by a poll).
        burst = log_dir / "feed.log.burst"
        append(burst, *[line(i, message=f"burst {i}") for i in range(500)])
        os.replace(burst, path)
        assert await comm.receive_json_from(timeout=ARRIVAL) == {"type": "skipped", "count": 300}
        got = await receive_lines(comm, 200)
        assert got == [line(i, message=f"burst {i}") for i in range(300, 500)]
        # The next line is sent normally.
        append(path, line(1, message="after the burst"))
        assert await receive_lines(comm, 1) == [line(1, message="after the burst")]
        await close_and_check(comm)

    run(body)


def test_the_level_filter_passes_only_that_level_and_above(viewer, make_agent, log_dir):
    make_agent("feed")
    path = log_dir / "feed.log"
    append(path, line(0))

    async def body():
        comm = communicator("/ws/agents/feed/logs/?level=warning", viewer)
        assert (await comm.connect())[0]
        append(path, line(1, "INFO"), line(2, "DEBUG"), "a line without a level", line(3, "WARNING"))
        append(path, line(4, "INFO"), line(5, "ERROR"), line(6, "CRITICAL"))
        # Had the INFO/DEBUG lines passed, they would have come first.
        assert await receive_lines(comm, 3) == [line(3, "WARNING"), line(5, "ERROR"), line(6, "CRITICAL")]
        await close_and_check(comm)

    run(body)


def test_the_search_filter_is_a_case_insensitive_substring(viewer, make_agent, log_dir):
    make_agent("feed")
    path = log_dir / "feed.log"

    async def body():
        comm = communicator("/ws/agents/feed/logs/?q=Order%20Filled", viewer)
        assert (await comm.connect())[0]
        append(path, line(1, message="tick"), line(2, message="ORDER FILLED at 10"), line(3, message="tock"))
        append(path, line(4, message="order filled at 11"))
        assert await receive_lines(comm, 2) == [
            line(2, message="ORDER FILLED at 10"),
            line(4, message="order filled at 11"),
        ]
        await close_and_check(comm)

    run(body)


def test_disconnect_closes_the_file(viewer, make_agent, log_dir):
    make_agent("feed")
    path = log_dir / "feed.log"
    append(path, line(0))

    def open_descriptors() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if _points_to(fd, path))

    async def body():
        comm = communicator("/ws/agents/feed/logs/", viewer)
        assert (await comm.connect())[0]
        assert open_descriptors() == 1
        await close_and_check(comm)
        assert open_descriptors() == 0

    run(body)


def _points_to(fd: Path, path: Path) -> bool:
    try:
        return os.readlink(fd) == str(path)
    except OSError:
        return False


# --- the follower on its own -----------------------------------------------------------


def test_a_line_still_being_written_is_sent_once_complete(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"old\n")
    follower = LogFollower(path)
    follower.start_at_end()
    with open(path, "ab") as f:
        f.write(b"half a li")
        f.flush()
        assert follower.poll().lines == []
        f.write(b"ne\nnext\n")
    assert follower.poll().lines == ["half a line", "next"]
    follower.close()


def test_starting_mid_line_drops_the_rest_of_that_line(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"old\nhalf a li")
    follower = LogFollower(path)
    follower.start_at_end()
    with open(path, "ab") as f:
        f.write(b"ne\nwhole\n")
    assert follower.poll().lines == ["whole"]
    follower.close()


def test_a_huge_line_is_cut(tmp_path):
    from agents.runtime.logs import MAX_LINE_BYTES

    path = tmp_path / "a.log"
    follower = LogFollower(path)
    follower.start_at_end()
    path.write_bytes(b"x" * (MAX_LINE_BYTES + 10) + b"\nshort\n")
    batch = follower.poll()
    assert batch.lines[0] == "x" * MAX_LINE_BYTES + " [... 10 more bytes]"
    assert batch.lines[1] == "short"
    follower.close()


def test_far_behind_it_jumps_ahead_and_counts_what_it_skipped(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"")
    follower = LogFollower(path, max_lines=3, max_catchup_bytes=100)
    follower.start_at_end()
    with open(path, "ab") as f:
        f.write(b"".join(b"line %04d\n" % i for i in range(1000)))  # 10 bytes a line
    batch = follower.poll()
    assert batch.lines == ["line 0997", "line 0998", "line 0999"]
    assert batch.skipped == 997
    follower.close()


def test_undecodable_bytes_are_replaced_not_fatal(tmp_path):
    path = tmp_path / "a.log"
    follower = LogFollower(path)
    follower.start_at_end()
    path.write_bytes(b"caf\xe9\r\n")
    assert follower.poll().lines == ["caf\ufffd"]
    follower.close()

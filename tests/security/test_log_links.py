"""The log readers (the tail endpoint, its download and the live socket) open an agent's
log without following links and check what they opened (agents.runtime.logs.open_log):
a symbolic link, a linked directory, a hard link to another file or a FIFO planted at
the name, before or after a socket connected, is refused and nothing of it is sent."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from agents.runtime.logs import LogFileRefused, open_log
from control.live.routing import websocket_urlpatterns

SECRET = "root:x:0:0:SECRET-LINE"
LINE = "2026-11-24T12:00:01.000Z INFO agents.agent.feed: hello"
ARRIVAL = 5


@pytest.fixture
def dirs(settings, tmp_path) -> tuple[Path, Path]:
    """(LOG_DIR, a file outside it holding a secret line)."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    settings.LOG_DIR = log_dir
    secret = tmp_path / "secret" / "feed.log"
    secret.parent.mkdir()
    secret.write_text(f"{SECRET}\n")
    return log_dir, secret


def plant_symlink(log_dir: Path, secret: Path) -> None:
    (log_dir / "feed.log").symlink_to(secret)


def plant_hard_link(log_dir: Path, secret: Path) -> None:
    os.link(secret, log_dir / "feed.log")


def plant_fifo(log_dir: Path, secret: Path) -> None:
    os.mkfifo(log_dir / "feed.log")


def plant_directory(log_dir: Path, secret: Path) -> None:
    (log_dir / "feed.log").mkdir()


PLANTS = [
    pytest.param(plant_symlink, id="symlink"),
    pytest.param(plant_hard_link, id="hard-link"),
    pytest.param(plant_fifo, id="fifo"),
    pytest.param(plant_directory, id="directory"),
]


@pytest.mark.parametrize("plant", PLANTS)
def test_open_log_refuses_what_is_not_a_plain_file(dirs, plant):
    log_dir, secret = dirs
    plant(log_dir, secret)
    with pytest.raises(LogFileRefused):
        open_log(log_dir / "feed.log")


def test_open_log_refuses_a_linked_directory(dirs, tmp_path):
    _, secret = dirs
    linked = tmp_path / "linked"
    linked.symlink_to(secret.parent)
    with pytest.raises(LogFileRefused):
        open_log(linked / "feed.log")


def test_open_log_opens_a_plain_file(dirs):
    log_dir, _ = dirs
    (log_dir / "feed.log").write_text(f"{LINE}\n")
    with open_log(log_dir / "feed.log") as f:
        assert f.read().decode() == f"{LINE}\n"


# --- the HTTP tail --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("download", ["", "&download=1"])
@pytest.mark.parametrize("plant", PLANTS)
def test_the_tail_endpoint_refuses_a_planted_file(dirs, make_agent, viewer_client, plant, download):
    log_dir, secret = dirs
    make_agent("feed")
    plant(log_dir, secret)
    response = viewer_client.get(f"/system/agents/feed/logs?lines=10{download}")
    assert response.status_code == 404
    assert SECRET not in b"".join(getattr(response, "streaming_content", [response.content])).decode()


# --- the live tail --------------------------------------------------------------------


def _communicator(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/agents/feed/logs/")
    comm.scope["user"] = user
    return comm


async def _until_closed(comm: WebsocketCommunicator) -> list[dict]:
    """Every message until the close; fails after ARRIVAL seconds of silence."""
    seen = []
    while True:
        message = await comm.receive_output(timeout=ARRIVAL)
        seen.append(message)
        if message["type"] == "websocket.close":
            return seen


def swap_log_dir(log_dir: Path, secret: Path) -> None:
    """The log directory itself becomes a link to a directory holding feed.log."""
    log_dir.rename(log_dir.with_name("logs.old"))
    log_dir.symlink_to(secret.parent)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("plant", [*PLANTS, pytest.param(swap_log_dir, id="linked-directory")])
@pytest.mark.parametrize("existing", [True, False], ids=["file-replaced", "no-file-yet"])
def test_a_file_planted_after_the_socket_connected_is_not_streamed(dirs, make_agent, viewer, plant, existing):
    log_dir, secret = dirs
    make_agent("feed")
    if existing:
        (log_dir / "feed.log").write_text(f"{LINE}\n")

    async def body():
        comm = _communicator(viewer)
        connected, _ = await comm.connect(timeout=ARRIVAL)
        assert connected
        if existing and plant is not swap_log_dir:
            (log_dir / "feed.log").unlink()
        await asyncio.to_thread(plant, log_dir, secret)
        messages = await _until_closed(comm)
        assert messages[-1] == {"type": "websocket.close", "code": 4404}
        assert SECRET not in repr(messages)
        assert "not readable" in repr(messages)
        await comm.disconnect()

    async_to_sync(body)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("plant", PLANTS)
def test_a_file_planted_before_the_connect_is_refused(dirs, make_agent, viewer, plant):
    log_dir, secret = dirs
    make_agent("feed")
    plant(log_dir, secret)

    async def body():
        comm = _communicator(viewer)
        connected, _ = await comm.connect(timeout=ARRIVAL)
        assert connected  # accepted only to say why it closes
        messages = await _until_closed(comm)
        assert messages[-1] == {"type": "websocket.close", "code": 4404}
        assert SECRET not in repr(messages)
        await comm.disconnect()

    async_to_sync(body)()


# --- the cards' last lines --------------------------------------------------------------


@pytest.mark.parametrize("plant", [p for p in PLANTS if p.id != "directory"])
def test_the_cards_do_not_show_a_file_planted_after_they_read_the_log(dirs, plant):
    from control.web.dashboard_context import card_log_lines

    log_dir, secret = dirs
    (log_dir / "feed.log").write_text(f"{LINE}\n")
    assert len(card_log_lines("feed")) == 1  # the path is now cached
    (log_dir / "feed.log").unlink()
    plant(log_dir, secret)
    assert not any("SECRET" in text for text in card_log_lines("feed"))

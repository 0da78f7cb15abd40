"""Placeholder: the live log tail consumer (/ws/agents/<id>/logs/) is being written."""

from channels.generic.websocket import WebsocketConsumer


class LogTailConsumer(WebsocketConsumer):
    def connect(self) -> None:
        self.close()

"""Placeholder: the live panel consumers are being written."""

from channels.generic.websocket import WebsocketConsumer


class ControlConsumer(WebsocketConsumer):
    def connect(self) -> None:
        self.close()


class EventsConsumer(WebsocketConsumer):
    def connect(self) -> None:
        self.close()

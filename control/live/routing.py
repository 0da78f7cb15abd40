"""Websocket routes (docs/api.md "Websockets"); all of them require a logged-in user."""

from django.urls import path

from control.live import consumers, log_consumer

websocket_urlpatterns = [
    path("ws/control/", consumers.ControlConsumer.as_asgi()),
    path("ws/events/", consumers.EventsConsumer.as_asgi()),
    path("ws/agents/<str:agent_id>/logs/", log_consumer.LogTailConsumer.as_asgi()),
]

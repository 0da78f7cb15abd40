from django.apps import AppConfig


class TradingSessionsConfig(AppConfig):
    name = "sessions"
    # "sessions" is taken by django.contrib.sessions.
    label = "trading_sessions"
    verbose_name = "Paper trading sessions"

    def ready(self) -> None:
        # The execution kind owns orders and money, so it lives here and plugs itself into
        # the agents' kinds registry on import (agents never imports sessions).
        from sessions import execution  # noqa: F401

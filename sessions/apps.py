from django.apps import AppConfig


class TradingSessionsConfig(AppConfig):
    name = "sessions"
    # "sessions" is taken by django.contrib.sessions.
    label = "trading_sessions"
    verbose_name = "Paper trading sessions"

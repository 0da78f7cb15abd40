from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        # Import the built-in kinds so they register themselves.
        from agents.kinds import decision, market_data, sentiment, technical  # noqa: F401

from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        # Import the built-in kinds so they register themselves, then any the settings
        # name (a kind of one's own, or an example: docs/agent-kinds.md).
        from agents.kinds import decision, market_data, sentiment, technical  # noqa: F401

        for module in settings.AGENT_KIND_MODULES:
            import_module(module)

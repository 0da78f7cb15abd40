"""Example agent kinds, not registered by default: list one in AGENT_KIND_MODULES to use it
(docs/agent-kinds.md walks through `momentum`)."""

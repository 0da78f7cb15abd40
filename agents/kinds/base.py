"""What every agent kind provides: a config schema and a `step()`.

The loop (agents.runtime.loop) owns timing, leases, heartbeats and shutdown; a kind
only does one unit of work per `step()` and says what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agents.runtime.bus import InputMessage


class KindConfig(BaseModel):
    """Base of every kind's config schema. Unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    tick_seconds: float = Field(1.0, ge=0.05, le=60, description="Seconds between steps.")


@dataclass
class StepResult:
    """What one step did, for metrics and the panel."""

    did_work: bool = False
    published: int = 0
    summary: str = ""
    counters: dict[str, int] = field(default_factory=dict)


@dataclass
class StepContext:
    """What the loop hands a kind: who it is and the (fenced) ways it may act."""

    agent_id: str
    symbols: list[str]
    # Append a message to this agent's own stream; raises Fenced when the loop has been
    # superseded, so a stale loop cannot publish.
    publish: Callable[[dict[str, Any]], str]
    # Read this agent's own newest message (to resume after a restart), or None.
    last_published: Callable[[], dict[str, Any] | None]
    log: logging.Logger
    # New messages from the agents this one consumes (`inputs_from`), oldest first.
    read_inputs: Callable[[], list[InputMessage]] = lambda: []
    # The agent ids this agent consumes.
    inputs: list[str] = field(default_factory=list)


class AgentKind:
    """Subclass, set `name`, `roles`, `Config`, implement `step()`, and `register()` it."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]]
    Config: ClassVar[type[KindConfig]] = KindConfig

    def __init__(self, ctx: StepContext, config: KindConfig) -> None:
        self.ctx = ctx
        self.config = config

    def step(self) -> StepResult:
        raise NotImplementedError

    def close(self) -> None:
        """Release anything the kind holds; called once when the loop ends."""

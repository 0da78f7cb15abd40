"""What every agent kind provides: a config schema and a `step()`.

The loop (agents.runtime.loop) owns timing, leases, heartbeats and shutdown; a kind
only does one unit of work per `step()` and says what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from agents.runtime.bus import InputMessage
from agents.validators import MAX_PRICE, json_problem

# A price a config names (a starting price): positive, and what the ledger can hold.
Price = Annotated[float, Field(gt=0, lt=MAX_PRICE)]
# How much one input or component counts; weights are normalised, so 1000 is plenty.
Weight = Annotated[float, Field(ge=0, le=1000)]


def must_exceed(other: str) -> Callable[..., Any]:
    """A field validator: the field must be greater than `other`, declared (validated) before it.

    A field validator rather than a model one, so the error names the field to fix.
    Use as `_name = field_validator("slow")(must_exceed("fast"))`.
    """

    def check(cls: type, value: float, info: ValidationInfo) -> float:
        bound = info.data.get(other)
        if bound is not None and value <= bound:
            raise ValueError(f"must be greater than {other} ({bound:g})")
        return value

    return check


def must_be_below(other: str) -> Callable[..., Any]:
    """A field validator: the field must be less than `other`, declared (validated) before it."""

    def check(cls: type, value: float, info: ValidationInfo) -> float:
        bound = info.data.get(other)
        if bound is not None and value >= bound:
            raise ValueError(f"must be below {other} ({bound:g})")
        return value

    return check


class KindConfig(BaseModel):
    """Base of every kind's config schema. Unknown keys are refused, not ignored; so are
    NaN and infinities (here and in each kind's nested models), and text (keys included)
    that cannot be stored or shown."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # Before the fields, so that no error message repeats the unshowable text.
        problem = json_problem(data, numbers=False)
        if problem:
            raise PydanticCustomError("unstorable", "The config {problem}.", {"problem": problem})
        return data

    tick_seconds: float = Field(1.0, ge=0.05, le=60, description="Seconds between steps.")
    step_timeout_seconds: float | None = Field(
        None,
        ge=0.1,
        le=3600,
        description="A step running longer puts the agent in error (default: setting STEP_TIMEOUT_SECONDS).",
    )


@dataclass
class StepResult:
    """What one step did, for metrics and the panel."""

    did_work: bool = False
    published: int = 0
    summary: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    # Values to show as they are, not summed (a feed's degraded reason, its last price's
    # time): written to the loop's live metrics; "" or 0 clears one.
    gauges: dict[str, str | float] = field(default_factory=dict)


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
    # This agent's own newest `count` messages, newest first (to resume several series
    # after a restart: one per symbol), or [].
    recent_published: Callable[[int], list[dict[str, Any]]] = lambda count: []
    # New messages from the agents this one consumes (`inputs_from`), oldest first.
    read_inputs: Callable[[], list[InputMessage]] = lambda: []
    # The agent ids this agent consumes.
    inputs: list[str] = field(default_factory=list)
    # A transaction in which this loop is still the agent's current run (raises Fenced
    # otherwise): around database writes a superseded loop must not make (fills).
    current_run: Callable[[], AbstractContextManager[None]] = nullcontext
    # Report this agent's condition for its card (a JSON-able dict, e.g. which feeds fail
    # and since when), or None when all is well again. Call it when it changes.
    report_status: Callable[[dict[str, Any] | None], None] = lambda status: None


class AgentKind:
    """Subclass, set `name`, `roles`, `Config`, implement `step()`, and `register()` it."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]]
    Config: ClassVar[type[KindConfig]] = KindConfig

    def __init__(self, ctx: StepContext, config: KindConfig) -> None:
        self.ctx = ctx
        self.config = config

    @classmethod
    def check_agent(cls, config: KindConfig, symbols: list[str]) -> list[tuple[str, str]]:
        """Problems, as (field, sentence), that the schema cannot see: facts outside the
        config (an exchange's market list). Called when a config or symbols are saved."""
        return []

    def step(self) -> StepResult:
        raise NotImplementedError

    def close(self) -> None:
        """Release anything the kind holds; called once when the loop ends."""

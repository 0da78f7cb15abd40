"""Fixtures of the security suite: one agent and one session behind every route's ids."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.conf import settings

from agents.models import Agent
from sessions.models import TradingSession
from tests.security.routes import AGENT_ID, SESSION_ID


def clear_throttle() -> None:
    from agents.runtime.redis import get_redis

    client = get_redis()
    keys = list(client.scan_iter(match=f"{settings.REDIS_PREFIX}throttle:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _throttle_counts_start_at_zero() -> Iterator[None]:
    """Every test client calls from 127.0.0.1: failures (the fuzzer sends bad tokens on
    purpose) must not carry over into other tests and lock them out."""
    clear_throttle()
    yield
    clear_throttle()


@pytest.fixture
def graph(make_agent) -> dict[str, object]:
    """The agent and session that the routes' ids name (tests.security.routes)."""
    feed = make_agent(AGENT_ID, symbols=["BTC-USD"])
    execution = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.set([feed])
    decision = make_agent("decider", kind="decision", role="decision", symbols=["BTC-USD"], config={})
    session = TradingSession.objects.create(
        session_id=SESSION_ID,
        name="Runner",
        symbols=["BTC-USD"],
        decision_agent=decision,
        execution_agent=execution,
        starting_cash=Decimal("10000"),
    )
    return {"feed": feed, "execution": execution, "decision": decision, "session": session}


def desired_states() -> list[tuple[str, str]]:
    """What a control action would change, to prove a refused one changed nothing."""
    return sorted(Agent.objects.values_list("agent_id", "desired_state")) + sorted(
        TradingSession.objects.values_list("session_id", "desired_state")
    )

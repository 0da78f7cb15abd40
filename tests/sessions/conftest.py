"""Fixtures for the ledger: running sessions with a known fill model."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from agents.states import Desired, Status
from sessions.models import TradingSession

D = Decimal


@pytest.fixture
def make_session(db) -> Callable[..., TradingSession]:
    """A session the broker fills for (desired and observed state running)."""

    def make(session_id: str = "alpha", **fields) -> TradingSession:
        defaults = {
            "name": session_id.title(),
            "symbols": ["BTC-USD", "ETH-USD"],
            "starting_cash": D("10000"),
            "desired_state": Desired.RUNNING,
            "status": Status.RUNNING,
            "fee_bps": D("10"),
            "slippage_bps": D("5"),
        }
        defaults.update(fields)
        return TradingSession.objects.create(session_id=session_id, **defaults)

    return make


@pytest.fixture
def frictionless(make_session) -> TradingSession:
    """No fee, no slippage: prices and cash move by the round numbers a person computes."""
    return make_session("frictionless", fee_bps=D(0), slippage_bps=D(0))

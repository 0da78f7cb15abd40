"""Which agents price a session: one fact on the model, used by the loop, the page and the form."""

from decimal import Decimal

import pytest

from control.web.session_market import market_producers
from sessions.forms import SessionCreateForm
from sessions.models import TradingSession

pytestmark = pytest.mark.django_db


def test_the_market_agents_are_the_execution_agents_inputs(make_agent):
    btc = make_agent("btc_feed", symbols=["BTC-USD"])
    make_agent("eth_feed", symbols=["ETH-USD"])  # feeds nobody
    execution = make_agent("broker", kind="execution", role="execution", config={})
    execution.inputs_from.set([btc])
    session = TradingSession(session_id="s", name="S", starting_cash=Decimal(1), execution_agent=execution)
    assert list(session.market_agents().values_list("agent_id", flat=True)) == ["btc_feed"]
    assert market_producers(session) == ["btc_feed"]
    assert not TradingSession(session_id="t", name="T", starting_cash=Decimal(1)).market_agents().exists()
    # The form refuses a symbol none of them publishes.
    form = SessionCreateForm(
        data={"name": "S", "starting_cash": "1000", "symbols": ["ETH-USD"], "execution_agent": "broker"}
    )
    assert not form.is_valid()
    assert "Execution agent broker has no prices for ETH-USD" in str(form.errors["symbols"])

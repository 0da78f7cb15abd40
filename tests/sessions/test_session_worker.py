"""Sessions in a real Celery worker: a real simulated market, a real execution agent and
the session loop. The decision agent's stream is written by the test (its directives are
the input under test), so each step of the story is deterministic."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from agents.models import Agent
from agents.runtime import keys
from agents.states import Status
from control import services
from sessions import broker
from sessions.models import EquityPoint, Fill, Order, OrderStatus, Position, TradingSession
from tests.conftest import wait_for

D = Decimal


@pytest.fixture
def graph(make_agent):
    """A simulated BTC market, a paper broker fed by it, and a decision agent (not run)."""
    feed = make_agent("sw_feed", config={"source": "simulated", "tick_seconds": 0.1, "seed": 11})
    execution = make_agent(
        "sw_exec", kind="execution", role="execution", symbols=[], config={"tick_seconds": 0.1}
    )
    execution.inputs_from.add(feed)
    decision = make_agent("sw_decision", kind="decision", role="decision", config={"tick_seconds": 1.0})
    return feed, execution, decision


def new_session(session_id: str = "sw", **extra) -> TradingSession:
    return services.create_session(
        {
            "session_id": session_id,
            "name": session_id.upper(),
            "symbols": ["BTC-USD"],
            "decision_agent": "sw_decision",
            "execution_agent": "sw_exec",
            "starting_cash": "10000",
            **extra,
        }
    )


def direct(client, action: str, target: float | None) -> None:
    """Publish one directive on the decision agent's stream, as the decision kind does."""
    payload = {
        "type": "directive",
        "ts": time.time(),
        "symbol": "BTC-USD",
        "action": action,
        "target_weight": target,
        "score": 0.5 if action == "buy" else -0.5,
        "reason": f"{action}: test directive",
        "source": "test",
    }
    client.xadd(keys.stream("agent", "sw_decision"), {"data": json.dumps(payload)})


def status(session_id: str) -> str:
    return TradingSession.objects.values_list("status", flat=True).get(pk=session_id)


def start_trading(graph, session_id: str = "sw", **extra) -> TradingSession:
    feed, execution, _decision = graph
    session = new_session(session_id, **extra)
    services.start_agent(feed.agent_id)
    services.start_agent(execution.agent_id)
    services.start_session(session.session_id)
    wait_for(
        lambda: (
            Agent.objects.filter(status=Status.RUNNING).count() == 2 and status(session_id) == Status.RUNNING
        ),
        what="market, broker and session running",
    )
    return session


def assert_ledger_reconciles(session_id: str) -> None:
    """Cash and positions are exactly what the fills say."""
    session = TradingSession.objects.get(pk=session_id)
    fills = list(Fill.objects.filter(session_id=session_id))
    assert session.cash == session.starting_cash + sum((f.cash_delta for f in fills), D(0))
    held = sum((f.quantity if f.side == "buy" else -f.quantity for f in fills), D(0))
    position = Position.objects.filter(session_id=session_id, symbol="BTC-USD").first()
    assert (position.quantity if position else D(0)) == held
    for fill in fills:
        assert Order.objects.get(pk=fill.order_id).status == OrderStatus.FILLED


def test_pause_stops_fills_while_equity_keeps_moving_and_resume_trades_again(
    celery_worker, graph, redis_client
):
    start_trading(graph)
    direct(redis_client, "buy", 0.5)
    buy = wait_for(lambda: Fill.objects.filter(session_id="sw", side="buy").first(), what="the buy filled")
    assert buy.price > buy.mark_price and buy.fee > 0  # slippage and fee cost
    position = Position.objects.get(session_id="sw", symbol="BTC-USD")
    # Sized to the target weight at the session's price: about half the equity (the price
    # may move a little between sizing and filling).
    assert D("4000") < position.quantity * buy.mark_price < D("5100")

    services.pause_session("sw")
    wait_for(lambda: status("sw") == Status.PAUSED, what="the pause acknowledged")
    fills_before = Fill.objects.filter(session_id="sw").count()
    points_before = EquityPoint.objects.filter(session_id="sw").count()
    # Advice and a direct order both arrive while paused: neither may fill.
    direct(redis_client, "sell", 0.0)
    sneaky = broker.place_order("sw", "BTC-USD", "buy", D("0.001"))
    redis_client.xadd(
        keys.orders("agent", "sw_exec"), {"data": json.dumps({"order_id": sneaky.pk, "session_id": "sw"})}
    )
    wait_for(
        lambda: Order.objects.get(pk=sneaky.pk).status == OrderStatus.REJECTED, what="the broker to refuse"
    )
    assert "paused" in Order.objects.get(pk=sneaky.pk).reason
    # The loop stays alive and marks to market: several new points while the price moves.
    wait_for(
        lambda: EquityPoint.objects.filter(session_id="sw").count() >= points_before + 4,
        timeout=20,
        what="equity points while paused",
    )
    paused_curve = list(
        EquityPoint.objects.filter(session_id="sw").order_by("id").values_list("equity", flat=True)
    )[points_before:]
    assert len(set(paused_curve)) > 1, "the equity of a held position moves with the market"
    assert Fill.objects.filter(session_id="sw").count() == fills_before
    assert not Order.objects.filter(session_id="sw", status__in=("new", "sent")).exists()

    services.resume_session("sw")
    wait_for(lambda: status("sw") == Status.RUNNING, what="the resume acknowledged")
    direct(redis_client, "sell", 0.0)
    sell = wait_for(lambda: Fill.objects.filter(session_id="sw", side="sell").first(), what="the sell filled")
    assert sell.quantity == position.quantity  # target 0: the whole position
    assert sell.realized_pnl is not None
    assert_ledger_reconciles("sw")


def test_stop_with_flatten_sells_everything_and_restart_keeps_the_ledger(celery_worker, graph, redis_client):
    start_trading(graph, flatten_on_stop=True)
    direct(redis_client, "buy", 0.3)
    wait_for(lambda: Fill.objects.filter(session_id="sw", side="buy").exists(), what="the buy filled")
    services.stop_session("sw")
    wait_for(lambda: status("sw") == Status.STOPPED, timeout=20, what="stopped")
    assert Position.objects.get(session_id="sw", symbol="BTC-USD").quantity == 0
    flatten = Fill.objects.get(session_id="sw", side="sell")
    assert Order.objects.get(pk=flatten.order_id).reduce_only
    assert_ledger_reconciles("sw")
    stopped = TradingSession.objects.get(pk="sw")
    assert stopped.stopped_at is not None and stopped.cash < stopped.starting_cash  # fees cost

    services.start_session("sw")
    wait_for(lambda: status("sw") == Status.RUNNING, what="restarted")
    assert TradingSession.objects.get(pk="sw").cash == stopped.cash  # same account, not a reset

"""Small steps the ledger tests share."""

from __future__ import annotations

from decimal import Decimal

from sessions import broker
from sessions.models import Order, TradingSession

D = Decimal


def trade(session: TradingSession, side: str, quantity, mark, symbol: str = "BTC-USD") -> broker.FillOutcome:
    """Place a market order and fill it at `mark`."""
    order = broker.place_order(session.pk, symbol, side, D(str(quantity)))
    return broker.fill_market_order(order.pk, D(str(mark)))


def fresh(session: TradingSession) -> TradingSession:
    return TradingSession.objects.get(pk=session.pk)


def order_of(outcome: broker.FillOutcome) -> Order:
    return Order.objects.get(pk=outcome.order_id)

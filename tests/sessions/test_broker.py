"""The paper broker: fills with slippage and fees, rejections with reasons, limit orders."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from agents.states import Desired
from sessions import broker, money
from sessions.broker import Outcome
from sessions.models import EquityPoint, Fill, Order, OrderStatus, Position, TradingSession
from tests.sessions.helpers import fresh, order_of, trade

D = Decimal
pytestmark = pytest.mark.django_db


def position(session: TradingSession, symbol: str = "BTC-USD") -> Position:
    return Position.objects.get(session=session, symbol=symbol)


# --- market orders ---------------------------------------------------------------------


def test_a_market_buy_fills_at_the_mark_plus_slippage_and_pays_the_fee(make_session):
    session = make_session(fee_bps=D("10"), slippage_bps=D("5"))
    outcome = trade(session, "buy", "1", "1000")
    assert outcome.outcome == Outcome.FILLED
    fill = outcome.fill
    assert (fill.price, fill.mark_price, fill.notional) == (D("1000.5"), D("1000"), D("1000.5"))
    assert (fill.fee, fill.slippage, fill.realized_pnl) == (D("1.0005"), D("0.5"), None)
    assert fresh(session).cash == D("10000") - D("1000.5") - D("1.0005")
    held = position(session)
    assert (held.quantity, held.cost_basis, held.avg_cost) == (D(1), D("1001.5005"), D("1001.5005"))
    assert order_of(outcome).status == OrderStatus.FILLED


def test_a_sell_realizes_the_pnl_net_of_both_fees(make_session):
    session = make_session(fee_bps=D("10"), slippage_bps=D("5"))
    trade(session, "buy", "1", "1000")
    outcome = trade(session, "sell", "1", "1100")
    fill = outcome.fill
    assert (fill.price, fill.fee, fill.slippage) == (D("1099.45"), D("1.09945"), D("0.55"))
    # 1099.45 received - 1.09945 fee - 1001.5005 paid (fee included) for the unit.
    assert fill.realized_pnl == D("96.85005")
    assert fresh(session).cash == D("10096.85005")
    held = position(session)
    assert (held.quantity, held.cost_basis, held.avg_cost, held.realized_pnl) == (0, 0, 0, D("96.85005"))


def test_a_partial_sell_releases_its_share_of_the_cost_basis(frictionless):
    trade(frictionless, "buy", "3", "100")
    outcome = trade(frictionless, "sell", "1", "110")
    assert outcome.fill.realized_pnl == D("10")
    held = position(frictionless)
    assert (held.quantity, held.cost_basis, held.avg_cost) == (D(2), D(200), D(100))


def test_buys_at_two_prices_average_the_cost(frictionless):
    trade(frictionless, "buy", "1", "100")
    trade(frictionless, "buy", "3", "120")
    assert position(frictionless).avg_cost == D("115")


def test_slippage_scaled_by_size_grows_beyond_the_reference_notional(make_session):
    session = make_session(
        fee_bps=D(0), slippage_bps=D("5"), slippage_size_scaled=True, slippage_size_reference=D("10000")
    )
    small = trade(session, "buy", "1", "1000")  # 1,000 notional: the base 5 bps
    assert small.fill.price == D("1000.5")
    session = make_session(
        "big", fee_bps=D(0), slippage_bps=D("5"), slippage_size_scaled=True, slippage_size_reference=D("2000")
    )
    big = trade(session, "buy", "4", "1000")  # 4,000 notional, twice the reference: 10 bps
    assert big.fill.price == D("1001")


def test_the_fill_time_is_the_one_given(frictionless):
    from datetime import UTC, datetime

    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    order = broker.place_order(frictionless.pk, "BTC-USD", "buy", D(1))
    outcome = broker.fill_market_order(order.pk, D(100), ts=when)
    assert outcome.fill.ts == when and order_of(outcome).filled_at == when


# --- each order at most once -------------------------------------------------------------


def test_filling_the_same_order_twice_makes_one_fill_and_charges_once(make_session):
    session = make_session()
    order = broker.place_order(session.pk, "BTC-USD", "buy", D(1))
    first = broker.fill_market_order(order.pk, D(1000))
    cash = fresh(session).cash
    again = broker.fill_market_order(order.pk, D(900))
    assert again.outcome == Outcome.ALREADY_DONE
    assert again.fill == first.fill and again.order_status == OrderStatus.FILLED
    assert Fill.objects.filter(order=order).count() == 1
    assert fresh(session).cash == cash
    assert position(session).quantity == D(1)


def test_the_database_itself_refuses_a_second_fill_of_an_order(make_session):
    session = make_session()
    outcome = trade(session, "buy", "1", "1000")
    with pytest.raises(IntegrityError), transaction.atomic():
        Fill.objects.create(
            order_id=outcome.order_id,
            session=session,
            symbol="BTC-USD",
            side="buy",
            quantity=D(1),
            mark_price=D(1000),
            price=D(1000),
            notional=D(1000),
            fee=D(0),
            slippage=D(0),
        )


def test_the_database_refuses_negative_cash(make_session):
    session = make_session()
    with pytest.raises(IntegrityError), transaction.atomic():
        TradingSession.objects.filter(pk=session.pk).update(cash=D("-0.01"))


# --- rejections ---------------------------------------------------------------------------


def assert_rejected(outcome: broker.FillOutcome, session: TradingSession, cash: Decimal, words: str) -> None:
    assert outcome.outcome == Outcome.REJECTED
    assert words in outcome.reason
    order = order_of(outcome)
    assert (order.status, order.reason) == (OrderStatus.REJECTED, outcome.reason)
    assert not Fill.objects.filter(order=order).exists()
    assert fresh(session).cash == cash


def test_an_unknown_symbol_is_rejected_with_the_symbols_traded(make_session):
    session = make_session()
    assert_rejected(trade(session, "buy", "1", "10", symbol="DOGE-USD"), session, D(10000), "Unknown symbol")


def test_an_order_without_a_price_is_rejected(make_session):
    session = make_session()
    order = broker.place_order(session.pk, "BTC-USD", "buy", D(1))
    assert_rejected(broker.fill_market_order(order.pk, None), session, D(10000), "No price for BTC-USD yet")


def test_a_buy_beyond_the_cash_is_rejected_fee_included(make_session):
    session = make_session(fee_bps=D("10"), slippage_bps=D(0))
    # 10,000 notional plus a 10 fee: 10 more than the session has.
    outcome = trade(session, "buy", "10", "1000")
    assert_rejected(outcome, session, D(10000), "Insufficient cash: this buy needs 10010")
    assert not Position.objects.filter(session=session).exists()


def test_a_buy_of_exactly_all_the_cash_fills_and_leaves_zero(frictionless):
    assert trade(frictionless, "buy", "10", "1000").filled
    assert fresh(frictionless).cash == 0


def test_a_sell_larger_than_the_position_is_rejected_long_only(frictionless):
    trade(frictionless, "buy", "1", "100")
    outcome = trade(frictionless, "sell", "1.5", "100")
    assert_rejected(outcome, frictionless, D(9900), "holds 1 and positions are long-only")
    assert position(frictionless).quantity == D(1)


def test_a_sell_without_a_position_is_rejected(frictionless):
    assert_rejected(trade(frictionless, "sell", "1", "100"), frictionless, D(10000), "holds 0")


def test_a_rejected_order_is_never_filled_later(frictionless):
    outcome = trade(frictionless, "buy", "1", "100", symbol="DOGE-USD")
    again = broker.fill_market_order(outcome.order_id, D(100))
    assert again.outcome == Outcome.ALREADY_DONE and again.order_status == OrderStatus.REJECTED
    assert "Unknown symbol" in again.reason


def test_a_paused_session_fills_no_market_order(make_session):
    session = make_session(desired_state=Desired.PAUSED)
    assert_rejected(trade(session, "buy", "1", "100"), session, D(10000), "is paused")


def test_a_stopped_session_fills_only_flatten_orders(frictionless):
    trade(frictionless, "buy", "2", "100")
    TradingSession.objects.filter(pk=frictionless.pk).update(desired_state=Desired.STOPPED)
    assert_rejected(trade(frictionless, "buy", "1", "100"), frictionless, D(9800), "is stopped")
    flatten = broker.place_order(frictionless.pk, "BTC-USD", "sell", D(2), reduce_only=True)
    assert broker.fill_market_order(flatten.pk, D(110)).filled
    assert position(frictionless).quantity == 0 and fresh(frictionless).cash == D(10020)


def test_reject_order_closes_an_open_order_only(frictionless):
    order = broker.place_order(frictionless.pk, "BTC-USD", "buy", D(1))
    assert broker.reject_order(order.pk, "Risk: too many orders this minute.") is True
    assert broker.reject_order(order.pk, "again") is False
    assert Order.objects.get(pk=order.pk).reason == "Risk: too many orders this minute."


def test_cancel_open_orders_cancels_only_open_orders_of_that_session(frictionless, make_session):
    filled = trade(frictionless, "buy", "1", "100")
    open_orders = [broker.place_order(frictionless.pk, "BTC-USD", "buy", D(1)) for _ in range(2)]
    other = broker.place_order(make_session("other").pk, "BTC-USD", "buy", D(1))
    assert broker.cancel_open_orders(frictionless.pk, "Session stopped.") == 2
    statuses = {o.pk: o.status for o in Order.objects.all()}
    assert statuses[filled.order_id] == OrderStatus.FILLED and statuses[other.pk] == OrderStatus.NEW
    assert {statuses[o.pk] for o in open_orders} == {OrderStatus.CANCELLED}
    assert broker.fill_market_order(open_orders[0].pk, D(100)).outcome == Outcome.ALREADY_DONE


# --- limit orders -------------------------------------------------------------------------


def test_a_buy_limit_waits_until_the_price_falls_to_it(frictionless):
    order = broker.place_order(frictionless.pk, "BTC-USD", "buy", D(1), "limit", D(100))
    waiting = broker.fill_limit_order_if_crossed(order.pk, D("100.01"))
    assert waiting.outcome == Outcome.NOT_CROSSED and Order.objects.get(pk=order.pk).is_open
    crossed = broker.fill_limit_order_if_crossed(order.pk, D("99"))
    assert crossed.filled and crossed.fill.price == D("99")


def test_a_sell_limit_fills_when_the_price_rises_to_it(frictionless):
    trade(frictionless, "buy", "1", "100")
    order = broker.place_order(frictionless.pk, "BTC-USD", "sell", D(1), "limit", D(120))
    assert broker.fill_limit_order_if_crossed(order.pk, D(119)).outcome == Outcome.NOT_CROSSED
    assert broker.fill_limit_order_if_crossed(order.pk, D(120)).fill.price == D(120)


def test_a_limit_order_never_fills_worse_than_its_limit(make_session):
    session = make_session(fee_bps=D(0), slippage_bps=D("100"))
    order = broker.place_order(session.pk, "BTC-USD", "buy", D(1), "limit", D(100))
    # The mark crossed (99.5), slipped 1% it would be 100.495: capped at the limit.
    outcome = broker.fill_limit_order_if_crossed(order.pk, D("99.5"))
    assert outcome.fill.price == D(100) and outcome.fill.slippage == D("0.5")


def test_a_limit_order_of_a_paused_session_stays_open_and_fills_after_resume(make_session):
    session = make_session(fee_bps=D(0), slippage_bps=D(0), desired_state=Desired.PAUSED)
    order = broker.place_order(session.pk, "BTC-USD", "buy", D(1), "limit", D(100))
    held = broker.fill_limit_order_if_crossed(order.pk, D(90))
    assert held.outcome == Outcome.HELD and "paused" in held.reason
    assert Order.objects.get(pk=order.pk).is_open and not Fill.objects.exists()
    TradingSession.objects.filter(pk=session.pk).update(desired_state=Desired.RUNNING)
    assert broker.fill_limit_order_if_crossed(order.pk, D(90)).filled


def test_the_wrong_fill_function_for_the_order_type_is_a_programming_error(frictionless):
    order = broker.place_order(frictionless.pk, "BTC-USD", "buy", D(1), "limit", D(100))
    with pytest.raises(ValueError, match="is a limit order"):
        broker.fill_market_order(order.pk, D(90))
    assert Order.objects.get(pk=order.pk).is_open


# --- placing orders -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, sentence",
    [
        ({"quantity": D(0)}, "Quantity must be between"),
        ({"quantity": D("0.000000001")}, "Quantity must be between"),
        ({"side": "short"}, "Side must be buy or sell"),
        ({"order_type": "limit"}, "needs a limit price"),
        ({"limit_price": D(5)}, "takes no limit price"),
        ({"reduce_only": True}, "Only a sell can be reduce-only"),
    ],
)
def test_a_malformed_order_is_refused_with_a_sentence(frictionless, kwargs, sentence):
    fields = {"side": "buy", "quantity": D(1), **kwargs}
    with pytest.raises(ValueError, match=sentence):
        broker.place_order(frictionless.pk, "BTC-USD", **fields)
    assert not Order.objects.exists()


def test_an_order_quantity_is_rounded_down_to_the_quantity_step(frictionless):
    order = broker.place_order(frictionless.pk, "BTC-USD", "buy", D("0.123456789"))
    assert Order.objects.get(pk=order.pk).quantity == D("0.12345678")


# --- mark to market ---------------------------------------------------------------------------


def test_mark_to_market_records_cash_plus_positions_at_the_marks(frictionless):
    trade(frictionless, "buy", "2", "100")
    trade(frictionless, "buy", "0.5", "40", symbol="ETH-USD")
    equity = broker.mark_to_market(frictionless.pk, {"BTC-USD": D("110.5"), "ETH-USD": D("42")})
    assert equity == D(9780) + D(221) + D(21)
    point = EquityPoint.objects.get(session=frictionless)
    assert (point.equity, point.cash) == (equity, D(9780))


def test_a_symbol_missing_from_the_marks_is_valued_at_its_last_mark(frictionless):
    trade(frictionless, "buy", "2", "100")
    broker.mark_to_market(frictionless.pk, {"BTC-USD": D(120)})
    assert broker.mark_to_market(frictionless.pk, {}) == D(9800) + D(240)


# --- the ledger's exact range ------------------------------------------------------------------


def test_a_fill_beyond_the_amounts_the_ledger_keeps_exactly_is_rejected(make_session):
    session = make_session(starting_cash=money.MAX_STARTING_CASH, fee_bps=D(0), slippage_bps=D(0))
    assert trade(session, "buy", "9000000", "10").filled
    # Selling at 200 would bring in 1.8 billion: past MAX_MONEY, so refused, not rounded.
    outcome = trade(session, "sell", "9000000", "200")
    assert_rejected(outcome, session, D(10000000), "Too large: the notional would be 1800000000")
    assert position(session).quantity == D(9000000)


def test_a_mark_beyond_the_largest_price_is_rejected(frictionless):
    outcome = trade(frictionless, "buy", "0.00000001", "10000000")
    assert_rejected(outcome, frictionless, D(10000), "beyond 9999999.99999999")

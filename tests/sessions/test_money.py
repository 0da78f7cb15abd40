"""Rounding rules: whatever moves money rounds against the trader; stored amounts are exact."""

from decimal import Decimal

import pytest

from sessions import money
from sessions.models import Position, TradingSession

D = Decimal


def test_a_buy_is_slipped_up_and_a_sell_down_by_the_basis_points():
    assert money.slipped_price(D("1000"), D("5"), "buy") == D("1000.5")
    assert money.slipped_price(D("1000"), D("5"), "sell") == D("999.5")


def test_a_price_beyond_the_price_step_rounds_against_the_trader():
    assert money.slipped_price(D("0.123456789"), D(0), "buy") == D("0.12345679")
    assert money.slipped_price(D("0.123456789"), D(0), "sell") == D("0.12345678")


def test_a_fee_rounds_up_to_the_money_step():
    # 10 bps of 1.000001 is 0.0010000010: a trader never pays less than the fee.
    assert money.fee(D("1.000001"), D("10")) == D("0.001001")


def test_no_basis_points_no_fee():
    assert money.fee(D("1234.5"), D(0)) == 0


def test_money_paid_rounds_up_and_money_received_rounds_down():
    assert money.paid(D("1.0000001")) == D("1.000001")
    assert money.received(D("1.0000009")) == D("1.000000")


def test_quantities_sized_from_a_budget_round_down():
    assert money.quantize_qty(D("0.123456789")) == D("0.12345678")


def test_display_is_half_up_to_cents_without_exponent():
    assert money.as_str_cents(D("0.125")) == "0.13"
    assert money.as_str_cents(D("10234.554999")) == "10234.55"
    assert money.as_str_cents(D("1E+3")) == "1000.00"


def test_full_precision_strings_drop_trailing_zeros():
    assert money.as_str(D("0.01500000")) == "0.015"
    assert money.as_str(D("64000.00000000")) == "64000"
    assert money.as_str(D("0E-8")) == "0"


def test_a_float_from_a_feed_is_read_through_its_repr():
    assert money.to_decimal(0.1) == D("0.1")
    assert money.to_decimal("64012.10") == D("64012.10")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "NaN", "abc", True])
def test_anything_but_a_finite_number_is_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        money.to_decimal(bad)


def test_products_are_exact_beyond_the_default_28_digits():
    a, b = D("1234567.12345678"), D("64012.12345678")
    assert money.mul(a, b) == D(123456712345678 * 6401212345678) / D(10) ** 16


def test_the_largest_supported_amounts_round_trip_through_the_database_exactly(db):
    # SQLite keeps decimals as doubles (15 significant digits); the precision is chosen so
    # every supported amount has at most 15.
    big_cash = D("999999999.999999")
    session = TradingSession.objects.create(
        session_id="big", name="Big", starting_cash=money.MAX_STARTING_CASH, cash=big_cash
    )
    Position.objects.create(
        session=session, symbol="X", quantity=D("9999999.99999999"), avg_cost=D("9999999.99999999")
    )
    stored = TradingSession.objects.get(pk="big")
    position = Position.objects.get(session=session)
    assert stored.cash == big_cash and stored.starting_cash == money.MAX_STARTING_CASH
    assert position.quantity == D("9999999.99999999") and position.avg_cost == D("9999999.99999999")
    small = TradingSession.objects.create(session_id="small", name="Small", starting_cash=D("0.01"))
    Position.objects.create(session=small, symbol="X", quantity=D("0.00000001"))
    assert Position.objects.get(session=small).quantity == D("0.00000001")

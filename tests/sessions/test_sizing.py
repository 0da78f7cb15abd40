"""How the session loop turns a directive into an order (sessions.runtime.size_order)."""

from decimal import Decimal

from sessions.models import TradingSession
from sessions.runtime import Directive, size_order

D = Decimal


def risk(**fields) -> TradingSession:
    defaults = {"max_position_weight": D("0.5"), "fee_bps": D("10"), "slippage_bps": D("5")}
    return TradingSession(**{**defaults, **fields})


def buy(target: str) -> Directive:
    return Directive(ref="d:1-0", action="buy", target_weight=D(target), reason="buy: test")


SELL = Directive(ref="d:2-0", action="sell", target_weight=D(0), reason="sell: test")


def test_a_buy_moves_the_position_to_its_target_weight():
    side, qty = size_order(buy("0.3"), D("100"), D(0), D("10000"), D("10000"), risk())
    assert (side, qty) == ("buy", D("30"))  # 30% of 10,000 at 100


def test_the_session_cap_beats_the_directive():
    side, qty = size_order(
        buy("0.9"), D("100"), D(0), D("10000"), D("10000"), risk(max_position_weight=D("0.25"))
    )
    assert (side, qty) == ("buy", D("25"))


def test_a_buy_never_spends_more_than_the_cash_can_pay_with_fees():
    side, qty = size_order(buy("1"), D("100"), D("80"), D("1000"), D("9000"), risk(max_position_weight=D(1)))
    assert side == "buy"
    cost = qty * D("100") * (1 + D("0.0015"))
    assert cost <= D("1000") and cost > D("980")


def test_a_sell_directive_sells_the_whole_position():
    assert size_order(SELL, D("100"), D("12.5"), D(0), D("1250"), risk()) == ("sell", D("12.5"))


def test_a_lower_target_sells_down_to_it():
    side, qty = size_order(buy("0.2"), D("100"), D("50"), D("5000"), D("10000"), risk())
    assert (side, qty) == ("sell", D("30"))


def test_moves_under_one_percent_of_equity_are_not_worth_a_trade():
    assert size_order(buy("0.3"), D("100"), D("29.5"), D("7050"), D("10000"), risk())[0] is None
    assert size_order(SELL, D("100"), D(0), D("10000"), D("10000"), risk())[0] is None  # nothing held


def test_a_directive_without_a_target_does_nothing():
    nothing = Directive(ref="d:3-0", action="buy", target_weight=None, reason="")
    assert size_order(nothing, D("100"), D(0), D("10000"), D("10000"), risk())[0] is None

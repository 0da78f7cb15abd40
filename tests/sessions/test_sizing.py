"""How the session loop turns a directive into an order (sessions.runtime.size_order)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agents.runtime.bus import InputMessage
from sessions.models import TradingSession
from sessions.runtime import Directive, SessionLoop, size_order

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


def loop_reading(*messages: dict) -> SessionLoop:
    loop = SessionLoop("s", "run")
    loop.symbols, loop._decision_id = ["BTC-USD"], "dec"
    loop._take_in([InputMessage("dec", f"{i}-0", m) for i, m in enumerate(messages, 1)])
    return loop


def directive(action: str, age_seconds: float, target: float | None = 0.3) -> dict:
    ts = datetime.now(UTC) - timedelta(seconds=age_seconds)
    return {
        "type": "directive",
        "ts": ts.isoformat(),
        "symbol": "BTC-USD",
        "action": action,
        "target_weight": target,
        "reason": f"{action}: test",
    }


def test_a_hold_after_a_buy_does_not_cancel_the_buy():
    loop = loop_reading(directive("buy", 2), directive("hold", 1, None))
    assert loop.pending["BTC-USD"].action == "buy"


def test_directives_older_than_a_minute_are_history_not_advice():
    assert loop_reading(directive("buy", 120)).pending == {}
    assert loop_reading(directive("buy", 5)).pending["BTC-USD"].target_weight == D("0.3")


def test_other_symbols_and_producers_are_ignored():
    other = {**directive("buy", 1), "symbol": "ETH-USD"}
    loop = SessionLoop("s", "run")
    loop.symbols, loop._decision_id = ["BTC-USD"], "dec"
    loop._take_in([InputMessage("dec", "1-0", other), InputMessage("someone", "2-0", directive("buy", 1))])
    assert loop.pending == {}

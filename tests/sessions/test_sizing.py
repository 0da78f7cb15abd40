"""How the session loop turns a directive into an order (sessions.runtime.size_order)."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.runtime.bus import InputMessage
from agents.states import Desired, Status
from sessions import broker, money
from sessions.models import TradingSession
from sessions.runtime import (
    CASH_BUFFER,
    MIN_TRADE_FRACTION,
    MIN_TRADE_VALUE,
    Directive,
    SessionLoop,
    size_order,
)

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


# --- a cash-limited buy fits the broker's own fill model ---

session_numbers = itertools.count()


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=D(low), max_value=D(high), places=places, allow_nan=False, allow_infinity=False
    )


fill_models = st.fixed_dictionaries(
    {
        "cash": decimals("1", "100000000", 2),
        "fee_bps": st.one_of(st.just(D(0)), decimals("0", "500", 2)),
        "slippage_bps": st.one_of(st.just(D(0)), decimals("0", "500", 2)),
        "slippage_size_scaled": st.booleans(),
        "slippage_size_reference": decimals("0.01", "1000000", 2),
    }
)
marks = (
    st.integers(0, 8)
    .flatmap(lambda places: decimals("0.00000001", "1000000", places))
    .filter(lambda d: d > 0)
)


def affordable(session: TradingSession, mark: Decimal, quantity: Decimal) -> bool:
    terms = broker.fill_terms(session, "buy", quantity, mark)
    return terms.notional + terms.fee <= session.cash


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=fill_models, mark=marks, target=decimals("0.05", "1", 2))
def test_a_cash_limited_buy_is_sized_to_what_the_broker_fills(db, model, mark, target):
    """All the cash at a weight of 1: the buy is the largest the fill model lets the cash
    pay (at the mark raised by the cash buffer), and the broker fills it, cash >= 0."""
    session = TradingSession.objects.create(
        session_id=f"sz{next(session_numbers)}",
        name="sizing",
        symbols=["BTC-USD"],
        starting_cash=model["cash"],
        cash=model["cash"],
        desired_state=Desired.RUNNING,
        status=Status.RUNNING,
        max_position_weight=D(1),
        **{k: v for k, v in model.items() if k != "cash"},
    )
    least = max(MIN_TRADE_VALUE, money.mul(session.cash, MIN_TRADE_FRACTION))
    side, quantity = size_order(buy(str(target)), mark, D(0), session.cash, session.cash, session)
    if side is None:
        # Not worth a trade: the move, or what the cash can buy of it, is under the minimum.
        most = broker.buy_quantity(session, money.mul(mark, 1 + CASH_BUFFER), session.cash)
        assert money.mul(session.cash, target) <= least or money.mul(most, mark) < least
        return
    assert side == "buy" and quantity <= money.MAX_QTY
    buffered = money.mul(mark, 1 + CASH_BUFFER)
    assert affordable(session, buffered, quantity)
    wanted = money.quantize_qty(money.div(money.mul(session.cash, target), mark))
    # Not needlessly small: one quantity step more is over the cash (or over the move, or
    # over what the ledger holds).
    more = quantity + money.QTY_STEP
    assert more > wanted or more > money.MAX_QTY or not affordable(session, buffered, more)

    order = broker.place_order(session.pk, "BTC-USD", side, quantity)
    outcome = broker.fill_market_order(order.pk, mark)
    if outcome.outcome == broker.Outcome.REJECTED:
        # Only the ledger's own limits may refuse it, never the cash.
        assert "Insufficient cash" not in outcome.reason and "Too large" in outcome.reason
        return
    assert outcome.filled
    assert TradingSession.objects.get(pk=session.pk).cash >= 0


def test_a_size_scaled_buy_of_all_the_cash_is_sized_down_not_rejected(make_session):
    """The reported case: slippage grows with the order, so cash / (1 + fixed bps) was too much."""
    session = make_session(
        "scaled",
        slippage_size_scaled=True,
        slippage_size_reference=D("1000"),
        slippage_bps=D("20"),
        max_position_weight=D(1),
    )
    side, quantity = size_order(buy("1"), D("65000"), D(0), session.cash, session.cash, session)
    assert side == "buy"
    outcome = broker.fill_market_order(
        broker.place_order(session.pk, "BTC-USD", side, quantity).pk, D("65000")
    )
    assert outcome.filled, outcome.reason
    cash = TradingSession.objects.get(pk=session.pk).cash
    assert D(0) <= cash < D("10000") * (CASH_BUFFER * 2 + D("0.001"))


def test_a_buy_of_a_cheap_coin_stays_within_what_the_ledger_holds(make_session):
    session = make_session("tiny", max_position_weight=D(1), starting_cash=D("100000"), cash=D("100000"))
    side, quantity = size_order(buy("1"), D("0.001"), D(0), session.cash, session.cash, session)
    assert side == "buy" and quantity == money.MAX_QTY  # the cash would buy ten times more
    assert broker.fill_market_order(
        broker.place_order(session.pk, "BTC-USD", side, quantity).pk, D("0.001")
    ).filled

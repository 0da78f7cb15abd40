"""Ledger invariants after any sequence of fills (hypothesis).

Random sessions (fees, slippage, size scaling, starting cash) trade random buys and sells
of two symbols at random marks, some orders too large to fill. After every step:

* equity = cash + sum(quantity x mark), exactly;
* per symbol, the signed sum of the fills is the position;
* cash = starting cash + what the fills did to it, and no money appears or vanishes:
  cash + cost basis - realized P&L = starting cash;
* a fill is at the mark moved against the trader, its fee is charged, and equity at the
  same marks is lower right after it (fees and slippage always cost);
* cash is never negative; a rejected order changes nothing; a filled order fills once.
"""

from __future__ import annotations

import itertools
from decimal import Decimal, localcontext

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sessions import broker, metrics, money
from sessions.broker import Outcome
from sessions.models import EquityPoint, Fill, Order, OrderStatus, Position, TradingSession

D = Decimal
SYMBOLS = ("BTC-USD", "ETH-USD")
session_ids = itertools.count()


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=D(low), max_value=D(high), places=places, allow_nan=False, allow_infinity=False
    )


# Each symbol moves between half and twice a base price; marks have up to 10 places,
# beyond the price step, so the rounding of marks is exercised too.
bases = st.integers(0, 6).flatmap(lambda places: decimals("0.01", "100000", places))
moves = decimals("0.5", "2", 4)
sessions = st.fixed_dictionaries(
    {
        "starting_cash": decimals("10", "1000000", 2),
        "fee_bps": st.one_of(st.just(D(0)), decimals("0", "100", 2)),
        "slippage_bps": st.one_of(st.just(D(0)), decimals("0", "200", 2)),
        "slippage_size_scaled": st.booleans(),
        # The reference as a share of the starting cash: 0.05 makes a buy of all the cash
        # slip 20 times the base basis points.
        "slippage_size_reference": decimals("0.05", "2", 2),
    }
)
# A buy spends a share of the cash (1: all of it, rejected when there is a fee; over 1:
# too much, rejected); a sell sells a share of the position (1: all of it; over 1: more
# than held, rejected), or that many units when nothing is held (rejected).
within = decimals("0.01", "0.6", 3)
shares = st.one_of(within, within, within, within, st.just(D(1)), decimals("1.001", "1.5", 3))
steps = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(SYMBOLS),
        shares,
        moves,
        st.booleans(),  # try to fill the same order again afterwards
    ),
    min_size=3,
    max_size=25,
)


class Ledger:
    """Reads one session's books from the database."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id

    def cash(self) -> Decimal:
        return TradingSession.objects.get(pk=self.session_id).cash

    def positions(self) -> dict[str, Position]:
        return {p.symbol: p for p in Position.objects.filter(session_id=self.session_id)}

    def quantity(self, symbol: str) -> Decimal:
        held = self.positions().get(symbol)
        return held.quantity if held else D(0)

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        holdings = [(p.quantity, marks[s]) for s, p in self.positions().items() if p.quantity]
        return metrics.equity(self.cash(), holdings)


def expected_price(session: TradingSession, side: str, quantity: Decimal, mark: Decimal) -> Decimal:
    slip = session.slippage_bps
    if session.slippage_size_scaled:
        slip = min(slip * max(quantity * mark / session.slippage_size_reference, D(1)), D(9999))
    return money.slipped_price(mark, slip, side)


def check_books(session: TradingSession, ledger: Ledger, marks: dict[str, Decimal]) -> None:
    cash = ledger.cash()
    positions = ledger.positions()
    fills = list(Fill.objects.filter(session_id=session.pk))
    assert cash >= 0
    assert cash == session.starting_cash + sum((f.cash_delta for f in fills), D(0))
    basis = sum((p.cost_basis for p in positions.values()), D(0))
    realized = sum((p.realized_pnl for p in positions.values()), D(0))
    assert cash + basis - realized == session.starting_cash
    for symbol in SYMBOLS:
        signed = sum(
            (f.quantity if f.side == "buy" else -f.quantity for f in fills if f.symbol == symbol), D(0)
        )
        assert signed == ledger.quantity(symbol)
        assert ledger.quantity(symbol) >= 0
    assert len({f.order_id for f in fills}) == len(fills)

    exact = cash + sum((p.quantity * marks[s] for s, p in positions.items() if p.quantity), D(0))
    assert ledger.equity(marks) == exact
    assert broker.mark_to_market(session.pk, marks) == money.storable(exact)
    assert EquityPoint.objects.filter(session_id=session.pk).last().equity == money.storable(exact)
    # P&L splits exactly into realized and unrealized.
    unrealized = sum((p.quantity * marks[s] - p.cost_basis for s, p in positions.items()), D(0))
    assert exact - session.starting_cash == realized + unrealized


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=sessions, base=st.tuples(bases, bases), steps=steps)
def test_the_books_balance_after_any_sequence_of_fills(db, config, base, steps):
    # The test's own arithmetic must be exact too: products of two 15-digit numbers need
    # more than the default 28 digits.
    with localcontext(prec=60):
        trade_and_check(config, base, steps)


def trade_and_check(config: dict, base: tuple[Decimal, Decimal], steps: list) -> None:
    config = dict(config)
    reference = money.quantize_money(config["starting_cash"] * config.pop("slippage_size_reference"))
    session = TradingSession.objects.create(
        session_id=f"prop-{next(session_ids)}",
        name="Property",
        symbols=list(SYMBOLS),
        desired_state="running",
        status="running",
        slippage_size_reference=reference,
        **config,
    )
    ledger = Ledger(session.pk)
    latest = dict(zip(SYMBOLS, base, strict=True))
    for side, symbol, share, move, retry in steps:
        if side == "sell" and not ledger.quantity(symbol):
            symbol = max(SYMBOLS, key=ledger.quantity)  # sell what is held, if anything
        mark = base[SYMBOLS.index(symbol)] * move
        latest[symbol] = mark
        if side == "buy":
            quantity = money.quantize_qty(ledger.cash() * share / mark)
        else:
            quantity = money.quantize_qty(ledger.quantity(symbol) * share) or share
        quantity = min(quantity, money.MAX_QTY)  # the largest order place_order takes
        if quantity <= 0:
            continue
        cash_before, equity_before = ledger.cash(), ledger.equity(latest)
        held_before = {s: p.quantity for s, p in ledger.positions().items()}
        fills_before = Fill.objects.filter(session_id=session.pk).count()
        order = broker.place_order(session.pk, symbol, side, quantity)
        outcome = broker.fill_market_order(order.pk, mark)
        event(f"{side} {outcome.outcome}")

        if outcome.outcome == Outcome.REJECTED:
            assert outcome.reason
            assert ledger.cash() == cash_before
            assert {s: p.quantity for s, p in ledger.positions().items()} == held_before
            assert Fill.objects.filter(session_id=session.pk).count() == fills_before
        else:
            assert outcome.outcome == Outcome.FILLED
            fill = outcome.fill
            assert fill.price == expected_price(session, side, quantity, mark)
            assert fill.price >= mark if side == "buy" else fill.price <= mark
            if session.slippage_bps > 0:
                assert fill.price > mark if side == "buy" else fill.price < mark
                assert fill.slippage > 0
            assert fill.fee == money.fee(fill.notional, session.fee_bps) >= 0
            if session.fee_bps > 0 and fill.notional > 0:
                assert fill.fee > 0
            equity_after = ledger.equity(latest)
            assert equity_after <= equity_before
            if session.fee_bps > 0 or session.slippage_bps > 0:
                assert equity_after < equity_before
        if retry:
            cash = ledger.cash()
            again = broker.fill_market_order(order.pk, mark)
            assert again.outcome == Outcome.ALREADY_DONE
            assert ledger.cash() == cash
            assert Order.objects.get(pk=order.pk).status in (OrderStatus.FILLED, OrderStatus.REJECTED)
        check_books(session, ledger, latest)

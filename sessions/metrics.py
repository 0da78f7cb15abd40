"""Performance of a session: equity, P&L, return, trades, win rate, drawdown, exposure.

The functions over numbers are pure, so they can be checked on hand-computed examples;
session_metrics() gathers the numbers of one session from the database for the API and
the loop's snapshot. All amounts are Decimals; ratios are fractions (0.1 = 10%) except
pnl_pct, which is a percentage as the API shows it (2.3 = 2.3%).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from sessions import money
from sessions.models import EquityPoint, Fill, Position, Side, TradingSession

Holding = tuple[Decimal, Decimal]  # (quantity, mark)


@dataclass(frozen=True)
class Drawdown:
    """The largest fall of an equity curve from a running peak to a later point."""

    fraction: Decimal  # (peak - trough) / peak; 0 for a curve that never falls
    amount: Decimal  # peak - trough, in money
    peak: Decimal | None = None
    trough: Decimal | None = None


def equity(cash: Decimal, holdings: Iterable[Holding]) -> Decimal:
    """cash + sum(quantity x mark), exact (no rounding)."""
    return cash + sum((money.mul(qty, mark) for qty, mark in holdings), money.ZERO)


def pnl(equity_now: Decimal, starting_cash: Decimal) -> Decimal:
    return equity_now - starting_cash


def pnl_pct(equity_now: Decimal, starting_cash: Decimal) -> Decimal:
    """The return since the start as a percentage (10230 from 10000 -> 2.3), 6 places."""
    return money.quantize_ratio(money.div(money.mul(equity_now - starting_cash, Decimal(100)), starting_cash))


def win_rate(realized_pnls: Iterable[Decimal | None]) -> Decimal | None:
    """The share of sell fills that made money, or None before the first sell.

    Every sell fill is one closed trade (a partial sell counts on its own). It is a win
    when its realized P&L is above zero; realized P&L is net of the buy's and the sell's
    fees, so a trade that only covered slippage and lost on fees counts as a loss, and a
    trade that made exactly nothing is not a win. Buys (realized P&L None) are skipped.
    """
    sells = [value for value in realized_pnls if value is not None]
    if not sells:
        return None
    wins = sum(1 for value in sells if value > 0)
    return money.quantize_ratio(money.div(Decimal(wins), Decimal(len(sells))))


def max_drawdown(curve: Iterable[Decimal]) -> Drawdown:
    """The largest peak-to-trough fall of an equity curve (points in time order).

    For every point, the fall from the highest point before it (or at it); the largest
    fall as a fraction of its peak wins, and `amount` is that same fall in money. A curve
    that only rises has a drawdown of 0.
    """
    best = Drawdown(money.ZERO, money.ZERO)
    peak: Decimal | None = None
    for value in curve:
        if peak is None or value > peak:
            peak = value
            continue
        if peak <= 0:
            continue
        fraction = money.div(peak - value, peak)
        if fraction > best.fraction:
            best = Drawdown(fraction, peak - value, peak, value)
    return Drawdown(money.quantize_ratio(best.fraction), best.amount, best.peak, best.trough)


def exposure(holdings: Iterable[Holding], equity_now: Decimal) -> Decimal | None:
    """sum(|quantity x mark|) / equity: 0 in cash, 1 fully invested; None without equity."""
    gross = sum((abs(money.mul(qty, mark)) for qty, mark in holdings), money.ZERO)
    if equity_now <= 0:
        return None
    return money.quantize_ratio(money.div(gross, equity_now))


def session_metrics(session_id: str, marks: Mapping[str, Decimal] | None = None) -> dict:
    """Every metric of one session, valued at `marks` (a held symbol missing there is
    valued at its last known mark).

    The drawdown runs over the starting cash, the recorded equity points and the equity
    now. Cash and positions are read under the session lock, so they never straddle a fill.
    Sums are made in Python: SQLite would add decimals in floating point.
    """
    marks = {symbol: money.to_decimal(price) for symbol, price in (marks or {}).items() if price is not None}
    with transaction.atomic():
        # Locked, so no fill of this session commits between these reads.
        session = TradingSession.objects.select_for_update().get(pk=session_id)
        positions = list(Position.objects.filter(session_id=session_id))
        fills = Fill.objects.filter(session_id=session_id)
        trades = fills.count()
        fees = sum(fills.values_list("fee", flat=True), money.ZERO)
        sells = list(fills.filter(side=Side.SELL).values_list("realized_pnl", flat=True))
        curve = [session.starting_cash]
        curve.extend(
            EquityPoint.objects.filter(session_id=session_id)
            .order_by("ts", "id")
            .values_list("equity", flat=True)
        )
    holdings = []
    cost_basis = realized = money.ZERO
    for position in positions:
        realized += position.realized_pnl
        if position.quantity > 0:
            mark = marks.get(position.symbol, position.last_mark)
            holdings.append((position.quantity, mark if mark is not None else position.avg_cost))
            cost_basis += position.cost_basis
    positions_value = equity(money.ZERO, holdings)
    equity_now = money.storable(session.cash + positions_value)
    curve.append(equity_now)
    drawdown = max_drawdown(curve)
    return {
        "equity": equity_now,
        "cash": session.cash,
        "positions_value": money.quantize_money(positions_value),
        "pnl": pnl(equity_now, session.starting_cash),
        "pnl_pct": pnl_pct(equity_now, session.starting_cash),
        "realized_pnl": realized,
        "unrealized_pnl": money.quantize_money(positions_value - cost_basis),
        "fees": fees,
        "trades": trades,
        "win_rate": win_rate(sells),
        "max_drawdown": drawdown.fraction,
        "max_drawdown_amount": drawdown.amount,
        "exposure": exposure(holdings, equity_now),
    }


def snapshot(metrics: Mapping[str, object]) -> dict[str, object]:
    """The metrics as JSON for TradingSession.metrics: Decimals become exact strings."""
    return {
        key: money.as_str(value) if isinstance(value, Decimal) else value for key, value in metrics.items()
    }

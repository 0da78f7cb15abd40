"""The paper broker: fills, rejects and cancels orders, and marks sessions to market.

Pure database work (no Redis, no Celery), called by the session loop and the execution
agent. Every function is safe to call from several processes at once:

* A fill is one transaction. It first locks the session row (select_for_update; on
  SQLite the IMMEDIATE transaction holds the database's write lock from BEGIN), so the
  cash and position it reads cannot change under it and fills of one session queue up
  instead of overwriting each other. It then claims the order with a conditional update
  (status new/sent -> filled) and checks the row count: an order already filled, rejected
  or cancelled is left alone ("already_done"). The Fill's one-to-one key on the order is
  the database's own guard against a second fill.
* Money is computed in Python (sessions.money) from the locked rows and written back with
  conditional updates, never save(): save() would also write back the status the loop
  changed meanwhile, and SQLite would do SQL arithmetic on decimals in floating point.
* Locks: a fill takes the session row, then the position row, then the order row. Fills
  of one session queue on the session row, so they cannot deadlock one another;
  rejections and cancellations lock only order rows and wait for nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from django.db import transaction
from django.utils import timezone

from agents.states import Desired
from sessions import money
from sessions.models import (
    OPEN_STATUSES,
    EquityPoint,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TradingSession,
)

Amount = Decimal | str | int | float


class Outcome(StrEnum):
    FILLED = "filled"
    REJECTED = "rejected"  # refused for good, with a reason; nothing else changed
    ALREADY_DONE = "already_done"  # filled, rejected or cancelled before; nothing changed
    NOT_CROSSED = "not_crossed"  # a limit order whose price has not been reached; still open
    HELD = "held"  # a limit order of a session that is not running; still open


@dataclass(frozen=True)
class FillOutcome:
    outcome: Outcome
    order_id: str
    reason: str = ""
    fill: Fill | None = None  # the fill made now, or for ALREADY_DONE the earlier one if any
    order_status: str = ""  # the order's status after the call

    @property
    def filled(self) -> bool:
        return self.outcome == Outcome.FILLED


def place_order(
    session_id: str,
    symbol: str,
    side: str,
    quantity: Amount,
    order_type: str = OrderType.MARKET,
    limit_price: Amount | None = None,
    *,
    reduce_only: bool = False,
    directive_ref: str = "",
    order_id: str | None = None,
) -> Order:
    """Record a new order, its quantity rounded down to the quantity step.

    Raises ValueError (a sentence) for an order that is malformed whatever the market
    does. Whether it can be filled (symbol, price, cash, position, session state) is the
    broker's question at fill time, answered with a rejection and a reason.
    """
    if side not in Side.values:
        raise ValueError(f"Side must be buy or sell, not {side!r}.")
    if order_type not in OrderType.values:
        raise ValueError(f"Order type must be market or limit, not {order_type!r}.")
    qty = money.quantize_qty(money.to_decimal(quantity))
    if not money.QTY_STEP <= qty <= money.MAX_QTY:
        raise ValueError(
            f"Quantity must be between {money.QTY_STEP} and {money.as_str(money.MAX_QTY)}, not {quantity}."
        )
    price = None
    if order_type == OrderType.LIMIT:
        if limit_price is None:
            raise ValueError("A limit order needs a limit price.")
        price = money.quantize_price(money.to_decimal(limit_price))
        if not money.PRICE_STEP <= price <= money.MAX_PRICE:
            raise ValueError(
                f"The limit price must be between {money.PRICE_STEP} and {money.as_str(money.MAX_PRICE)}, "
                f"not {limit_price}."
            )
    elif limit_price is not None:
        raise ValueError("A market order takes no limit price.")
    if reduce_only and side != Side.SELL:
        raise ValueError("Only a sell can be reduce-only: positions are long-only.")
    fields = {
        "session_id": session_id,
        "symbol": symbol,
        "side": side,
        "order_type": order_type,
        "quantity": qty,
        "limit_price": price,
        "reduce_only": reduce_only,
        "directive_ref": directive_ref,
    }
    if order_id:
        fields["order_id"] = order_id
    return Order.objects.create(**fields)


def fill_market_order(order_id: str, mark_price: Amount | None, ts: dt.datetime | None = None) -> FillOutcome:
    """Fill a market order at `mark_price` moved against the trader by the slippage.

    Rejected, with a sentence, for an unknown symbol, no price, a session that is paused
    or stopped (a market order means now, not after a resume; flatten orders may fill
    while it stops), a sell larger than the position, a fill whose cost and fee exceed
    the cash, or amounts beyond what the ledger keeps exactly (see money). Raises
    Order.DoesNotExist for an unknown order and ValueError for a limit order.
    """
    return _execute(order_id, mark_price, ts, OrderType.MARKET)


def fill_limit_order_if_crossed(
    order_id: str, mark_price: Amount | None, ts: dt.datetime | None = None
) -> FillOutcome:
    """Fill a limit order if `mark_price` has crossed its limit, never at a worse price.

    A buy crosses when the mark is at or below the limit, a sell at or above it; the fill
    price is the slipped mark capped at the limit. Not crossed, or the session not
    running: the order stays open (NOT_CROSSED, HELD). Otherwise rejected like a market
    order.
    """
    return _execute(order_id, mark_price, ts, OrderType.LIMIT)


def reject_order(order_id: str, reason: str) -> bool:
    """Reject an open order with a reason; False if it was no longer open."""
    return _close(order_id, OrderStatus.REJECTED, reason)


def cancel_open_orders(session_id: str, reason: str) -> int:
    """Cancel every open order of a session (on stop, or before a flatten); how many."""
    return Order.objects.filter(session_id=session_id, status__in=OPEN_STATUSES).update(
        status=OrderStatus.CANCELLED, reason=reason, updated_at=timezone.now()
    )


def mark_to_market(
    session_id: str,
    marks: Mapping[str, Amount],
    ts: dt.datetime | None = None,
    marked_at: Mapping[str, dt.datetime] | None = None,
) -> Decimal:
    """Value the session at `marks`, record an EquityPoint and return its equity.

    A position's last_mark_at is when its mark was observed: `marked_at[symbol]` (the
    market moment of the price, which may be older than the point), else `ts`.

    equity = cash + sum(quantity x mark), rounded half-even to the money step (to 15
    significant digits beyond a billion, see money.storable). A symbol held but missing
    from `marks` (or with None) is valued at its last known mark. The session row is
    locked while cash and positions are read, so they come from the same moment and
    never straddle a fill.
    """
    ts = ts or timezone.now()
    fresh = {symbol: money.to_decimal(price) for symbol, price in marks.items() if price is not None}
    with transaction.atomic():
        cash = TradingSession.objects.select_for_update().values_list("cash", flat=True).get(pk=session_id)
        holdings = []
        for position in Position.objects.filter(session_id=session_id, quantity__gt=0):
            mark = fresh.get(position.symbol, position.last_mark)
            if mark is None:  # unreachable: a position is made by a fill, which records its mark
                mark = position.avg_cost
            holdings.append((position.quantity, mark))
            if position.symbol in fresh:
                last_mark = money.storable(mark, money.PRICE_PLACES)
                seen = (marked_at or {}).get(position.symbol, ts)
                Position.objects.filter(pk=position.pk).update(last_mark=last_mark, last_mark_at=seen)
        equity = money.storable(cash + sum((money.mul(q, m) for q, m in holdings), money.ZERO))
        EquityPoint.objects.create(session_id=session_id, ts=ts, equity=equity, cash=cash)
    return equity


# --- the fill -------------------------------------------------------------------------


def _execute(
    order_id: str, mark_price: Amount | None, ts: dt.datetime | None, order_type: str
) -> FillOutcome:
    ts = ts or timezone.now()
    mark = None if mark_price is None else money.to_decimal(mark_price)
    with transaction.atomic():
        # session_id and order_type never change, so reading them before the lock is safe.
        session_id, actual_type = Order.objects.values_list("session_id", "order_type").get(pk=order_id)
        if actual_type != order_type:
            raise ValueError(f"Order {order_id} is a {actual_type} order, not a {order_type} order.")
        session = TradingSession.objects.select_for_update().get(pk=session_id)
        order = Order.objects.get(pk=order_id)
        if not order.is_open:
            return _already_done(order)

        if order.order_type == OrderType.LIMIT and not _session_accepts(session, order):
            return FillOutcome(Outcome.HELD, order.pk, _not_accepting(session), order_status=order.status)
        refusal = _refusal(session, order, mark)
        if refusal:
            return _reject(order, refusal)
        if order.order_type == OrderType.LIMIT and not _crossed(order, mark):
            return FillOutcome(Outcome.NOT_CROSSED, order.pk, order_status=order.status)

        position = (
            Position.objects.select_for_update().filter(session_id=session.pk, symbol=order.symbol).first()
        )
        held = position.quantity if position else money.ZERO
        if order.side == Side.SELL and order.quantity > held:
            return _reject(
                order,
                f"Cannot sell {money.as_str(order.quantity)} {order.symbol}: the session holds "
                f"{money.as_str(held)} and positions are long-only.",
            )
        terms = _terms(session, order, mark)
        if terms.price <= 0:
            return _reject(order, f"Slippage leaves no price for {order.symbol} at a mark of {mark}.")
        cash_after = session.cash + terms.cash_delta
        if cash_after < 0:
            needed = terms.notional + terms.fee if order.side == Side.BUY else terms.fee - terms.notional
            return _reject(
                order,
                f"Insufficient cash: this {order.side} needs {money.as_str(needed)} "
                f"(fee included) and the session has {money.as_str(session.cash)}.",
            )
        after = _position_after(position, order, terms)
        too_large = _beyond_range(terms, after, cash_after)
        if too_large:
            return _reject(order, too_large)

        now = timezone.now()
        claimed = Order.objects.filter(pk=order.pk, status__in=OPEN_STATUSES).update(
            status=OrderStatus.FILLED, filled_at=ts, reason="", updated_at=now
        )
        if not claimed:  # rejected or cancelled by someone who does not take the session lock
            return _already_done(Order.objects.get(pk=order.pk))
        values = {
            "quantity": after.quantity,
            "cost_basis": after.cost_basis,
            "avg_cost": after.avg_cost,
            "realized_pnl": after.realized_total,
            "last_mark": money.quantize_price(mark),
            "last_mark_at": ts,
        }
        if position is None:  # a first buy; the session lock keeps a twin from being created
            Position.objects.create(session_id=session.pk, symbol=order.symbol, **values)
        else:
            Position.objects.filter(pk=position.pk).update(updated_at=now, **values)
        fill = Fill.objects.create(
            order_id=order.pk,
            session_id=session.pk,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            mark_price=money.quantize_price(mark),
            price=terms.price,
            notional=terms.notional,
            fee=terms.fee,
            slippage=terms.slippage,
            realized_pnl=after.realized,
            ts=ts,
        )
        TradingSession.objects.filter(pk=session.pk).update(cash=cash_after, updated_at=now)
    return FillOutcome(Outcome.FILLED, order.pk, fill=fill, order_status=OrderStatus.FILLED)


@dataclass(frozen=True)
class _Terms:
    price: Decimal
    notional: Decimal
    fee: Decimal
    slippage: Decimal
    cash_delta: Decimal


def _terms(session: TradingSession, order: Order, mark: Decimal) -> _Terms:
    """Price, notional, fee and slippage of filling `order` at `mark`, all against the trader."""
    limit_price = order.limit_price if order.order_type == OrderType.LIMIT else None
    return fill_terms(session, order.side, order.quantity, mark, limit_price)


def fill_terms(
    session: TradingSession, side: str, quantity: Decimal, mark: Decimal, limit_price: Decimal | None = None
) -> _Terms:
    """The fill model: what filling `quantity` at `mark` costs or brings, with the session's
    fee and (maybe size-scaled) slippage, all rounded against the trader. The one place
    that says what a fill costs: the broker fills with it and buy_quantity() sizes with it."""
    slippage_bps = session.slippage_bps
    if session.slippage_size_scaled:
        # Up to the reference notional an order slips slippage_bps; beyond it, in proportion.
        size = money.div(money.mul(quantity, mark), session.slippage_size_reference)
        slippage_bps = money.mul(slippage_bps, max(size, Decimal(1)))
        # Capped below 100%, so a sell never fills at a price of zero or less.
        slippage_bps = min(slippage_bps, Decimal("9999"))
    price = money.slipped_price(mark, slippage_bps, side)
    if limit_price is not None:
        # A limit order never fills worse than its limit (the mark has crossed it).
        price = min(price, limit_price) if side == Side.BUY else max(price, limit_price)
    gross = money.mul(quantity, price)
    at_mark = money.mul(quantity, mark)
    if side == Side.BUY:
        notional = money.paid(gross)
        slippage = money.paid(gross - at_mark)
    else:
        notional = money.received(gross)
        slippage = money.paid(at_mark - gross)
    fee = money.fee(notional, session.fee_bps)
    cash_delta = -(notional + fee) if side == Side.BUY else notional - fee
    return _Terms(price, notional, fee, max(slippage, money.ZERO), cash_delta)


def buy_quantity(
    session: TradingSession, mark: Decimal, budget: Decimal, limit: Decimal = money.MAX_QTY
) -> Decimal:
    """The largest quantity (a multiple of the quantity step, at most `limit`) whose market
    buy at `mark` costs at most `budget`, fee and slippage included, as fill_terms counts.

    The cost only grows with the quantity (more units, and with size-scaled slippage a
    worse price), so a binary search over whole quantity steps finds the largest one that
    fits: about 50 evaluations of the fill model for any budget.
    """
    if budget <= 0 or mark <= 0 or limit < money.QTY_STEP:
        return money.ZERO
    # The price is never below the mark, so nothing above budget / mark can fit.
    high = min(money.quantize_qty(money.div(budget, mark)), money.quantize_qty(limit))
    low, high = (
        0,
        int(money.div(high, money.QTY_STEP)),
    )  # in quantity steps: `low` fits, above `high` does not
    while low < high:
        middle = (low + high + 1) // 2
        terms = fill_terms(session, Side.BUY, money.QTY_STEP * middle, mark)
        if terms.notional + terms.fee <= budget:
            low = middle
        else:
            high = middle - 1
    return money.QTY_STEP * low


@dataclass(frozen=True)
class _PositionAfter:
    quantity: Decimal
    cost_basis: Decimal
    avg_cost: Decimal
    realized_total: Decimal
    realized: Decimal | None  # this sell's realized P&L; None for a buy


def _position_after(position: Position | None, order: Order, terms: _Terms) -> _PositionAfter:
    """The position once `order` is filled on `terms`.

    Cost basis includes fees, so a round trip's realized P&L is what it did to cash.
    A partial sell releases its share of the basis (rounded half-even); a full sell
    releases all of it, so nothing is left over. Money is conserved exactly:
    cash + sum(cost_basis) - sum(realized_pnl) stays equal to the starting cash.
    """
    qty = position.quantity if position else money.ZERO
    basis = position.cost_basis if position else money.ZERO
    realized_total = position.realized_pnl if position else money.ZERO
    realized = None
    if order.side == Side.BUY:
        qty += order.quantity
        basis += terms.notional + terms.fee
    else:
        released = (
            basis
            if order.quantity == qty
            else money.quantize_money(money.div(money.mul(basis, order.quantity), qty))
        )
        qty -= order.quantity
        basis -= released
        realized = terms.notional - terms.fee - released
        realized_total += realized
    avg_cost = money.storable(money.div(basis, qty), money.PRICE_PLACES) if qty else money.ZERO
    return _PositionAfter(qty, basis, avg_cost, realized_total, realized)


def _beyond_range(terms: _Terms, after: _PositionAfter, cash_after: Decimal) -> str:
    """Why the fill would store an amount the ledger cannot keep exactly (see money), or ""."""
    for what, value, limit in (
        ("the fill price", terms.price, money.MAX_PRICE),
        ("the position", after.quantity, money.MAX_QTY),
        ("the notional", terms.notional, money.MAX_MONEY),
        ("the cash", cash_after, money.MAX_MONEY),
        ("the cost basis", after.cost_basis, money.MAX_MONEY),
        ("the realized P&L", abs(after.realized_total), money.MAX_MONEY),
    ):
        if value > limit:
            return (
                f"Too large: {what} would be {money.as_str(value)}, beyond {money.as_str(limit)}, "
                "the largest amount the ledger keeps exactly."
            )
    return ""


# --- checks and endings -----------------------------------------------------------------


def _session_accepts(session: TradingSession, order: Order) -> bool:
    """Fills happen only while the person wants the session running; a flatten order
    (reduce-only) may also fill while it stops. desired_state is read under the session
    lock, so a pause recorded by control.services is never overtaken by a fill."""
    if session.desired_state == Desired.RUNNING:
        return True
    return session.desired_state == Desired.STOPPED and order.reduce_only


def _not_accepting(session: TradingSession) -> str:
    if session.desired_state == Desired.PAUSED:
        return f"Session {session.pk} is paused: a paused session fills no orders."
    return f"Session {session.pk} is stopped: only flatten (reduce-only) orders fill while it stops."


def _refusal(session: TradingSession, order: Order, mark: Decimal | None) -> str:
    """Why the order cannot be filled at all, or ""."""
    if not _session_accepts(session, order):
        return _not_accepting(session)
    if order.symbol not in (session.symbols or []):
        listed = ", ".join(session.symbols or []) or "none"
        return f"Unknown symbol {order.symbol}: session {session.pk} trades {listed}."
    if mark is None:
        return f"No price for {order.symbol} yet, so the order cannot be filled."
    if mark <= 0:
        return f"The price of {order.symbol} ({mark}) is not positive."
    if mark > money.MAX_PRICE:
        return (
            f"The price of {order.symbol} ({mark}) is beyond {money.as_str(money.MAX_PRICE)}, "
            "the largest the ledger keeps."
        )
    return ""


def _crossed(order: Order, mark: Decimal) -> bool:
    if order.side == Side.BUY:
        return mark <= order.limit_price
    return mark >= order.limit_price


def _reject(order: Order, reason: str) -> FillOutcome:
    if not _close(order.pk, OrderStatus.REJECTED, reason):
        return _already_done(Order.objects.get(pk=order.pk))
    return FillOutcome(Outcome.REJECTED, order.pk, reason, order_status=OrderStatus.REJECTED)


def _close(order_id: str, status: str, reason: str) -> bool:
    return bool(
        Order.objects.filter(pk=order_id, status__in=OPEN_STATUSES).update(
            status=status, reason=reason, updated_at=timezone.now()
        )
    )


def _already_done(order: Order) -> FillOutcome:
    fill = Fill.objects.filter(order_id=order.pk).first()
    return FillOutcome(
        Outcome.ALREADY_DONE,
        order.pk,
        order.reason or f"Order {order.pk} is already {order.status}.",
        fill=fill,
        order_status=order.status,
    )

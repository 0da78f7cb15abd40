"""Decimal money: the one place for precision, rounding and basis-point arithmetic.

Precision. SQLite (the default database) keeps a DECIMAL column as a double, and Django
reads it back to 15 significant digits; PostgreSQL keeps numeric exactly. So that the
ledger is exact on both, every amount it stores has at most 15 significant digits:

* quantities and prices: 8 decimal places (a satoshi), up to MAX_QTY / MAX_PRICE
  (just under 10,000,000);
* money (cash, notional, fees, cost basis, P&L): 6 decimal places, up to MAX_MONEY
  (just under 1,000,000,000); starting cash is capped at MAX_STARTING_CASH (1e8) so a
  session can grow tenfold.

The broker rejects, with a reason, a fill that would take an amount past its limit:
a loud refusal instead of a silent rounding in the database. Valuations that are not
ledger entries (an equity point, the average cost) are stored `storable()`: rounded to
15 significant digits when they are larger.

Arithmetic never happens in SQL (SQLite would do it in floating point): amounts are read,
computed here in Python under EXACT and written back as Decimals.

Rounding. Whatever moves money rounds against the trader, so fees and slippage always
cost and rounding can never create money: a buy's fill price and cost round up, a sell's
fill price and proceeds round down, fees round up. Valuations (equity, average cost, the
share of cost basis a partial sell releases, ratios) round half-even. Quantities a caller
derives from a budget round down, so an order never exceeds what it was sized for.
Display rounds half-up to cents, as people expect.
"""

from __future__ import annotations

import math
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)

MAX_DIGITS = 28  # the column size (PostgreSQL numeric(28, places)); SQLite ignores it
QTY_PLACES = 8
PRICE_PLACES = 8
MONEY_PLACES = 6
RATIO_PLACES = 6
BPS_PLACES = 4

QTY_STEP = Decimal(1).scaleb(-QTY_PLACES)
PRICE_STEP = Decimal(1).scaleb(-PRICE_PLACES)
MONEY_STEP = Decimal(1).scaleb(-MONEY_PLACES)
RATIO_STEP = Decimal(1).scaleb(-RATIO_PLACES)
CENT = Decimal("0.01")

SIGNIFICANT_DIGITS = 15  # what SQLite keeps of a decimal
MAX_QTY = Decimal(10**7) - QTY_STEP
MAX_PRICE = Decimal(10**7) - PRICE_STEP
MAX_MONEY = Decimal(10**9) - MONEY_STEP
MAX_STARTING_CASH = Decimal(10**8)  # room to grow tenfold below MAX_MONEY
BPS_PER_UNIT = Decimal(10000)

# Two 15-digit factors make a 30-digit product; the default context (28 digits) would
# round it silently. Traps turn a NaN, an infinity or a division by zero into an error.
EXACT = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])

ZERO = Decimal(0)


def to_decimal(value: Decimal | str | int | float) -> Decimal:
    """A finite Decimal from what a feed or form gives.

    Floats arrive from JSON price feeds; they are converted through their shortest
    repr (0.1 -> Decimal("0.1")), never through their binary value.
    """
    if isinstance(value, bool):
        raise TypeError("A boolean is not an amount.")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite amount.")
        value = repr(value)
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"{value!r} is not a number.") from exc
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite amount.")
    return result


def positive_price(value: object) -> Decimal | None:
    """A price from a feed message (a float, a string): a positive finite Decimal, or None
    for anything else (missing, zero, negative, not a number)."""
    if value is None:
        return None
    try:
        price = to_decimal(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return price if price > 0 else None


def mul(*factors: Decimal) -> Decimal:
    """The exact product (no rounding up to 60 significant digits)."""
    result = Decimal(1)
    for factor in factors:
        result = EXACT.multiply(result, factor)
    return result


def div(numerator: Decimal, denominator: Decimal) -> Decimal:
    """A quotient to 60 significant digits, to be quantized by the caller."""
    return EXACT.divide(numerator, denominator)


def bps(amount: Decimal, basis_points: Decimal) -> Decimal:
    """`basis_points` of `amount` (1 bp = 1/10,000), exact."""
    return EXACT.divide(mul(amount, basis_points), BPS_PER_UNIT)


def quantize_qty(value: Decimal, rounding: str = ROUND_DOWN) -> Decimal:
    """Quantities: 8 places, rounded down by default (an order never exceeds its budget)."""
    return value.quantize(QTY_STEP, rounding=rounding, context=EXACT)


def quantize_price(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    return value.quantize(PRICE_STEP, rounding=rounding, context=EXACT)


def quantize_money(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    return value.quantize(MONEY_STEP, rounding=rounding, context=EXACT)


def quantize_ratio(value: Decimal) -> Decimal:
    """Fractions and percentages (win rate, drawdown, exposure, P&L %): 6 places."""
    return value.quantize(RATIO_STEP, rounding=ROUND_HALF_EVEN, context=EXACT)


def storable(value: Decimal, places: int = MONEY_PLACES) -> Decimal:
    """A valuation for the database: `places` decimals, or 15 significant digits if that
    is coarser (both half-even), so it reads back from SQLite as it was written."""
    value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=EXACT)
    _, digits, exponent = value.as_tuple()
    excess = len(digits) - SIGNIFICANT_DIGITS
    if excess > 0 and not value.is_zero():
        value = value.quantize(Decimal(1).scaleb(exponent + excess), rounding=ROUND_HALF_EVEN, context=EXACT)
    return value


def paid(amount: Decimal) -> Decimal:
    """Money the trader pays (a buy's cost, a fee), rounded up to the money step."""
    return quantize_money(amount, ROUND_CEILING)


def received(amount: Decimal) -> Decimal:
    """Money the trader receives (a sell's proceeds), rounded down to the money step."""
    return quantize_money(amount, ROUND_FLOOR)


def slipped_price(mark: Decimal, slippage_bps: Decimal, side: str) -> Decimal:
    """The fill price: `mark` moved `slippage_bps` against the trader, rounded against him.

    A buy pays mark * (1 + bps/10,000) rounded up; a sell gets mark * (1 - bps/10,000)
    rounded down. With 0 bps the price is the mark (rounded against the trader if the mark
    has more than 8 places).
    """
    move = bps(mark, slippage_bps)
    if side == "buy":
        return quantize_price(mark + move, ROUND_CEILING)
    return quantize_price(mark - move, ROUND_FLOOR)


def fee(notional: Decimal, fee_bps: Decimal) -> Decimal:
    """The fee on a notional amount: `fee_bps` of it, rounded up, never negative."""
    return paid(bps(abs(notional), max(fee_bps, ZERO)))


def as_str_cents(value: Decimal) -> str:
    """Money for people and the API: "10234.55" (half-up to cents, no exponent)."""
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP, context=EXACT):f}"


def as_str(value: Decimal) -> str:
    """A quantity or price at its full stored precision, without trailing zeros or exponent."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"

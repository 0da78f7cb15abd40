"""The session loop: directives in, orders out, the ledger marked to market.

Each tick it reads, with its own cursors, the stream of its decision agent (directives)
and the streams of its execution agent's market inputs (bars: the prices the broker
fills at). The latest fresh directive per symbol waits until it can be acted on: the
session is running, the symbol has a price and no open order, and the order rate is
under `max_orders_per_minute`. It is then sized toward its target weight (capped by
`max_position_weight`) and, when the move is worth a trade, recorded with the broker and
sent to the execution agent's order stream.

Pause: the broker refuses fills from the moment control.services commits the pause
(it reads desired_state under the session lock); the loop, when it sees the pause,
cancels the open orders, drops waiting directives and keeps marking to market.
Stop: open orders are cancelled; with flatten_on_stop every position is sold by
reduce-only orders, filled by the execution agent or, if it does not answer in time, by
the broker at the session's own latest price.

Crash safety: an order is recorded before it is sent, and orders still "new" when a loop
starts are sent again; the broker's idempotent fill makes a second delivery harmless.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import Agent, LogEntry
from agents.runtime import keys
from agents.runtime.bus import InputMessage, InputReader, edge_counts
from agents.runtime.loop import Loop
from agents.states import LIVE_STATUSES, Status
from sessions import broker, freshness, money
from sessions.metrics import session_metrics, snapshot
from sessions.models import OPEN_STATUSES, Order, OrderStatus, OrderType, Position, Side, TradingSession

log = logging.getLogger(__name__)

# A directive older than this when the session first sees it is history, not advice.
DIRECTIVE_MAX_AGE_SECONDS = 60.0
# An equity point every settings.SESSION_EQUITY_SECONDS while the equity moves, at least
# every FLAT_EQUITY_SECONDS while it does not, and after every fill.
FLAT_EQUITY_SECONDS = 60.0
# Moves smaller than this share of equity are not worth a trade (and its fee).
MIN_TRADE_FRACTION = Decimal("0.01")
MIN_TRADE_VALUE = Decimal("1")
# Kept aside when buying, so a price that moves before the fill does not leave the
# order short of cash (fees and slippage are added on top).
CASH_BUFFER = Decimal("0.005")
# How long a stopping session waits for the execution agent to fill its flatten orders.
FLATTEN_WAIT_SECONDS = 3.0
# A market order is filled or rejected within a tick of its execution agent. One still
# open this long after it was sent was most likely lost with Redis (the order stream
# deleted, or Redis restarted empty), and it would block its symbol for good: it is
# sent again, as often as this. The broker's idempotent fill makes a second message for
# an order that was only slow harmless.
RESEND_AFTER_SECONDS = 10.0
ORDERS_MAXLEN = 100_000
# "buy: ...", "sell: ..." or "hold: ...": how a directive's reason starts.
ACTION_PREFIX = re.compile(r"^\s*(buy|sell|hold)\s*:", re.IGNORECASE)
# How often the loop re-reads its price age limit (a person may edit it while it runs)
# and the bar intervals of its feeds (the automatic limit follows them).
LIMIT_REFRESH_SECONDS = 5.0


def session_event(session_id: str, message: str, level: int = logging.INFO) -> None:
    """A line for the activity feed (LogEntry) and the worker's log."""
    log.log(level, "session %s: %s", session_id, message)
    LogEntry.objects.create(level=level, session_id=session_id, source="session", message=message)


@dataclass
class Directive:
    ref: str  # "<producer>:<stream id>"
    action: str
    target_weight: Decimal | None
    reason: str


class SessionLoop(Loop):
    kind = "session"
    model = TradingSession

    def __init__(self, rid: str, run_id: str) -> None:
        super().__init__(rid, run_id)
        self.session_id = rid
        self.prices: dict[str, Decimal] = {}
        self.pending: dict[str, Directive] = {}
        self._reader: InputReader | None = None
        self._decision_id = ""
        self._execution_id = ""
        self._open_orders = 0
        self._last_equity: Decimal | None = None
        self._last_point = float("-inf")
        self._metrics: dict[str, Any] = {}
        self._started = False
        self._rate_limited_logged = False
        self._next_resend_check = 0.0
        # When each price in self.prices was observed (Unix seconds, sessions.freshness).
        self.price_at: dict[str, float] = {}
        self._stale = freshness.StaleWatch()
        self._price_age_limit = freshness.AUTO_MIN_SECONDS
        self._price_age_automatic = True
        self._next_limit_refresh = 0.0

    # --- the Loop hooks -----------------------------------------------------------

    def tick_for(self, row: TradingSession) -> float:
        return settings.SESSION_TICK_SECONDS

    def setup(self, row: TradingSession) -> None:
        self.symbols = list(row.symbols or [])
        self._decision_id = row.decision_agent_id or ""
        self._execution_id = row.execution_agent_id or ""
        markets = list(row.market_agents().values_list("agent_id", flat=True))
        producers = sorted({self._decision_id, *markets} - {""})
        self._reader = InputReader(self.client, self.session_id, producers, consumer_kind="session")
        self._resend_unsent()
        self._open_orders = self._count_open()
        self._note_last_marks()

    def step(self) -> dict[str, int]:
        counters: dict[str, int] = {"orders": 0}
        messages = self._reader.read() if self._reader is not None else []
        counters.update(edge_counts(messages))
        self._take_in(messages)
        self._watch_freshness()
        if not self.paused:
            counters["orders"] = self._trade()
        open_now = self._count_open() if self._open_orders or counters["orders"] else 0
        if open_now:
            self._resend_stale()
        settled = open_now < self._open_orders  # an order was filled, rejected or cancelled
        self._open_orders = open_now
        self._mark(force=settled)
        return counters

    def on_paused_changed(self, paused: bool) -> None:
        if paused:
            cancelled = broker.cancel_open_orders(self.session_id, "Cancelled: the session was paused.")
            self.pending.clear()
            self._open_orders = 0
            session_event(
                self.session_id,
                f"paused: no new orders; {cancelled} open order(s) cancelled; still marking to market",
            )
        elif self._started:
            session_event(self.session_id, "resumed: trading again with the same cash and positions")

    def on_stop(self) -> None:
        cancelled = broker.cancel_open_orders(self.session_id, "Cancelled: the session was stopped.")
        if cancelled:
            session_event(self.session_id, f"stopping: {cancelled} open order(s) cancelled")
        row = TradingSession.objects.get(pk=self.session_id)
        if row.flatten_on_stop:
            self._flatten()
        self._mark(force=True)

    def status_fields(self, status: str) -> dict[str, Any]:
        now = timezone.now()
        # started_at is the person's start (control.services), not this incarnation's.
        if status == Status.RUNNING:
            self._started = True
            return {"paused_at": None}
        if status == Status.PAUSED:
            self._started = True  # a loop started paused: its resume is a resume
            # Kept when a paused session's loop starts again: it was paused back then.
            return {"paused_at": Coalesce(F("paused_at"), Value(now))}
        if status == Status.STOPPED:
            return {"stopped_at": now}
        return {}

    def heartbeat_fields(self) -> dict[str, Any]:
        return {"metrics": dict(self._metrics)} if self._metrics else {}

    def _note_last_marks(self) -> None:
        """Say which holdings are valued at an old price until their next bar (a restart)."""
        held = Position.objects.filter(session_id=self.session_id, quantity__gt=0, last_mark__isnull=False)
        notes = [
            f"{p.symbol} at {money.as_str(p.last_mark)}"
            + (f" from {p.last_mark_at:%Y-%m-%d %H:%M:%S} UTC" if p.last_mark_at else "")
            for p in held.exclude(symbol__in=list(self.prices))
        ]
        if notes:
            session_event(self.session_id, f"valuing {', '.join(notes)} (last marks) until new bars come")

    # --- inputs -------------------------------------------------------------------

    def _take_in(self, messages: list[InputMessage]) -> None:
        latest: dict[str, tuple[InputMessage, dict[str, Any]]] = {}
        for message in messages:
            data = message.data
            symbol = data.get("symbol")
            if symbol not in self.symbols:
                continue
            if data.get("type") == "bar":
                price = money.positive_price(data.get("close"))
                if price is not None:
                    self.prices[symbol] = price
                    self.price_at[symbol] = freshness.observed_at(data, message.id)
            elif (
                data.get("type") == "directive"
                and message.producer == self._decision_id
                # A hold says "keep what you hold": it neither trades nor cancels advice.
                and data.get("action") in ("buy", "sell")
            ):
                latest[symbol] = (message, data)
        if self.paused:
            return  # a paused session takes no advice; resume acts on new directives only
        for symbol, (message, data) in latest.items():
            if _age_seconds(data.get("ts")) > DIRECTIVE_MAX_AGE_SECONDS:
                continue
            self.pending[symbol] = Directive(
                ref=f"{message.producer}:{message.id}",
                action=data["action"],
                target_weight=_ratio(data.get("target_weight")),
                reason=str(data.get("reason") or "")[:300],
            )

    # --- price freshness --------------------------------------------------------------

    def _refresh_price_age_limit(self) -> None:
        now = time.monotonic()
        if now < self._next_limit_refresh:
            return
        self._next_limit_refresh = now + LIMIT_REFRESH_SECONDS
        own = TradingSession.objects.values_list("max_price_age_seconds", flat=True).get(pk=self.session_id)
        self._price_age_automatic = own is None
        if own is not None:
            self._price_age_limit = float(own)
            return
        configs = TradingSession.market_agents_of(self._execution_id).values_list("config", flat=True)
        self._price_age_limit = freshness.automatic_limit(
            freshness.feed_interval_seconds(config if isinstance(config, dict) else None)
            for config in configs
        )

    def price_ages(self) -> dict[str, float]:
        """How old each known price is, in seconds."""
        now = time.time()
        return {symbol: now - self.price_at.get(symbol, now) for symbol in self.prices}

    def _watch_freshness(self) -> None:
        """One activity line when prices go stale and one when they are fresh again."""
        self._refresh_price_age_limit()
        ages = self.price_ages()
        began, ended = self._stale.update(ages, self._price_age_limit)
        if began:
            how = "the automatic limit" if self._price_age_automatic else "the session's limit"
            shown = ", ".join(f"{s} (last price {freshness.age_text(ages[s])} old)" for s in began)
            session_event(
                self.session_id,
                f"stale prices: no orders on {shown}; {how} is {self._price_age_limit:.0f} s. Their "
                "directives are refused until a fresh bar comes; positions stay marked at the last price",
                logging.WARNING,
            )
        if ended:
            fresh = ", ".join(ended)
            session_event(self.session_id, f"prices fresh again for {fresh}: trading on them resumes")

    # --- orders -------------------------------------------------------------------

    def _trade(self) -> int:
        if not self.pending:
            return 0
        row = TradingSession.objects.get(pk=self.session_id)
        open_symbols = set(
            Order.objects.filter(session_id=self.session_id, status__in=OPEN_STATUSES).values_list(
                "symbol", flat=True
            )
        )
        since = timezone.now() - timedelta(seconds=60)
        budget = (
            row.max_orders_per_minute
            - Order.objects.filter(session_id=self.session_id, created_at__gte=since).count()
        )
        held = list(
            Position.objects.filter(session_id=self.session_id).values_list(
                "symbol", "quantity", "last_mark", "avg_cost"
            )
        )
        positions = {symbol: quantity for symbol, quantity, _mark, _cost in held}
        # A held symbol without a bar since this loop started (a restart) is worth its last
        # mark, as the ledger values it (broker.mark_to_market), not nothing.
        equity = row.cash + sum(
            (money.mul(qty, self.prices.get(sym) or mark or cost) for sym, qty, mark, cost in held),
            money.ZERO,
        )
        placed = 0
        for symbol, directive in list(self.pending.items()):
            price = self.prices.get(symbol)
            if symbol in open_symbols or price is None:
                continue  # wait for the open order to settle, or for a price
            if symbol in self._stale.stale:
                # Refused, not kept: advice waiting out a stale spell would be acted on
                # at whatever price comes back. The spell's line already says why.
                del self.pending[symbol]
                continue
            if budget <= 0:
                if not self._rate_limited_logged:
                    self._rate_limited_logged = True
                    session_event(
                        self.session_id,
                        f"order rate limit reached ({row.max_orders_per_minute}/min); directives wait",
                        logging.WARNING,
                    )
                break
            del self.pending[symbol]
            side, quantity = size_order(
                directive, price, positions.get(symbol, money.ZERO), row.cash, equity, row
            )
            if side is None:
                continue
            with self.as_current_run():
                order = broker.place_order(
                    self.session_id, symbol, side, quantity, directive_ref=directive.ref[:200]
                )
            self._send(order)
            budget -= 1
            placed += 1
            self._rate_limited_logged = False
            session_event(
                self.session_id,
                f"order {side} {money.as_str(quantity)} {symbol} at about {price}: "
                f"{order_reason(side, directive, row)}",
            )
        return placed

    def _send(self, order: Order) -> None:
        payload = {"order_id": order.order_id, "session_id": self.session_id, "ts": time.time()}
        # Only while this loop holds the lease: a superseded loop's order never leaves.
        self.lease.publish(keys.orders("agent", self._execution_id), payload, ORDERS_MAXLEN)
        # updated_at says when it was last sent (auto_now does not apply to update()).
        Order.objects.filter(pk=order.pk, status__in=(OrderStatus.NEW, OrderStatus.SENT)).update(
            status=OrderStatus.SENT, updated_at=timezone.now()
        )

    def _resend_unsent(self) -> None:
        """Orders recorded but maybe never sent (a crash between the two): send them now."""
        for order in Order.objects.filter(session_id=self.session_id, status=OrderStatus.NEW):
            self._send(order)

    def _resend_stale(self) -> None:
        """Send again the market orders sent RESEND_AFTER_SECONDS ago and still open."""
        now = time.monotonic()
        if now < self._next_resend_check:
            return
        self._next_resend_check = now + RESEND_AFTER_SECONDS / 2
        stale = Order.objects.filter(
            session_id=self.session_id,
            status=OrderStatus.SENT,
            order_type=OrderType.MARKET,
            updated_at__lt=timezone.now() - timedelta(seconds=RESEND_AFTER_SECONDS),
        )
        for order in stale:
            self._send(order)
            session_event(
                self.session_id,
                f"order {order.side} {order.symbol} was not answered within {RESEND_AFTER_SECONDS:.0f} s; "
                "sent again",
                logging.WARNING,
            )

    def _count_open(self) -> int:
        return Order.objects.filter(session_id=self.session_id, status__in=OPEN_STATUSES).count()

    def _flatten(self) -> None:
        positions = list(Position.objects.filter(session_id=self.session_id, quantity__gt=0))
        if not positions:
            return
        orders = [
            broker.place_order(
                self.session_id, p.symbol, Side.SELL, p.quantity, reduce_only=True, directive_ref="flatten"
            )
            for p in positions
        ]
        execution_live = Agent.objects.filter(pk=self._execution_id, status__in=LIVE_STATUSES).exists()
        if execution_live:
            for order in orders:
                self._send(order)
            deadline = time.monotonic() + FLATTEN_WAIT_SECONDS
            ids = [o.order_id for o in orders]
            while time.monotonic() < deadline:
                if not Order.objects.filter(pk__in=ids, status__in=OPEN_STATUSES).exists():
                    break
                self.wait(0.2)
        # Whatever the execution agent did not fill, the broker fills at the session's own
        # latest price (the same market feed); already-filled orders are left alone.
        for order in orders:
            outcome = broker.fill_market_order(
                order.order_id, self.prices.get(order.symbol) or _last_mark(order)
            )
            if outcome.outcome == broker.Outcome.REJECTED:
                session_event(
                    self.session_id, f"flatten of {order.symbol} rejected: {outcome.reason}", logging.WARNING
                )
        session_event(self.session_id, f"flattened {len(orders)} position(s) on stop")

    # --- valuation ----------------------------------------------------------------

    def _mark(self, *, force: bool = False) -> None:
        now = time.monotonic()
        since = now - self._last_point
        if not force and since < settings.SESSION_EQUITY_SECONDS:
            return
        # The metrics already count the equity now in the drawdown, so recording the point
        # afterwards does not change them.
        metrics = session_metrics(self.session_id, self.prices)
        equity = metrics["equity"]
        if force or equity != self._last_equity or since >= FLAT_EQUITY_SECONDS:
            with self.as_current_run():
                marked_at = {s: datetime.fromtimestamp(t, UTC) for s, t in self.price_at.items()}
                self._last_equity = broker.mark_to_market(self.session_id, self.prices, marked_at=marked_at)
            self._last_point = now
        self._metrics = snapshot(metrics)


def size_order(
    directive: Directive,
    price: Decimal,
    held: Decimal,
    cash: Decimal,
    equity: Decimal,
    risk: TradingSession,
) -> tuple[str | None, Decimal]:
    """The order that moves the position toward the directive's target weight, capped by
    the session's max position weight: (side, quantity), or (None, 0) when the move is
    too small to be worth a trade or there is nothing to do."""
    target = target_weight(directive, risk)
    if target is None:
        return None, money.ZERO
    current = money.mul(held, price)
    diff = money.mul(equity, target) - current
    least = max(MIN_TRADE_VALUE, money.mul(equity, MIN_TRADE_FRACTION))
    if diff > least:
        # As much of the move as the cash pays for by the broker's own fill model (fee and
        # slippage, size-scaled or not), even if the price rises by CASH_BUFFER before the
        # fill; and no more than the ledger can hold.
        wanted = money.quantize_qty(money.div(diff, price))
        room = min(wanted, money.MAX_QTY - held)
        buffered = money.mul(price, Decimal(1) + CASH_BUFFER)
        quantity = broker.buy_quantity(risk, buffered, cash, limit=room)
        if money.mul(quantity, price) < least:
            return None, money.ZERO
        return Side.BUY, quantity
    if held > 0 and (target == 0 or -diff > least):
        quantity = held if target == 0 else min(held, money.quantize_qty(money.div(-diff, price)))
        if quantity <= 0:
            return None, money.ZERO
        return Side.SELL, quantity
    return None, money.ZERO


def target_weight(directive: Directive, risk: TradingSession) -> Decimal | None:
    """The share of equity the directive has the session hold, capped by the session's
    max position weight: 0 for a sell, None when it names no target."""
    if directive.action == "sell":
        return Decimal(0)
    if directive.target_weight is None:
        return None
    return min(directive.target_weight, risk.max_position_weight)


def order_reason(side: str, directive: Directive, risk: TradingSession) -> str:
    """Why an order was placed, in its own words: its side and goal, then the directive
    behind it. A buy directive with a lower target makes a sell, so the directive's reason
    (which starts "buy: ...") is quoted as the directive's, never as the order's."""
    target = target_weight(directive, risk) or Decimal(0)
    if side == Side.BUY:
        goal = f"buy up to {_percent(target)} of equity"
    elif target == 0:
        goal = "sell the whole position"
    else:
        goal = f"sell down to {_percent(target)} of equity"
    if (
        directive.action != "sell"
        and directive.target_weight is not None
        and directive.target_weight > target
    ):
        goal += f", the session's cap (the directive asked for {_percent(directive.target_weight)})"
    # The directive's own action word is dropped: the sentence names the directive's action
    # itself, and a leading "buy:" must not read as the side of a sell.
    why = ACTION_PREFIX.sub("", directive.reason).strip()
    return f"{goal}, per a {directive.action} directive" + (f" ({why})" if why else "")


def _percent(weight: Decimal) -> str:
    return f"{money.as_str(money.quantize_ratio(weight * 100))}%"


def _age_seconds(ts: Any) -> float:
    """How old a message's ts (ISO 8601 or Unix seconds) is; infinite when unreadable."""
    if isinstance(ts, int | float):
        return time.time() - ts
    try:
        when = datetime.fromisoformat(str(ts))
    except ValueError:
        return float("inf")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return time.time() - when.timestamp()


def _ratio(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        ratio = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return ratio if ratio.is_finite() and 0 <= ratio <= 1 else None


def _last_mark(order: Order) -> Decimal | None:
    return (
        Position.objects.filter(session_id=order.session_id, symbol=order.symbol)
        .values_list("last_mark", flat=True)
        .first()
    )

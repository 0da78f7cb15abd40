"""Paper trading sessions and their ledger: orders, fills, positions, the equity curve.

Money, quantities and prices are Decimals at the precision sessions.money defines. Cash,
positions and order statuses change only through sessions.broker (one transaction per
fill, conditional updates); the loop writes the observed state fields; control.services
writes desired_state. Nothing here is read, modified and save()d by two writers.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_slug
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent, RunnableState
from agents.states import Status
from agents.validators import (
    MAX_ORDERS_PER_MINUTE,
    MAX_PRICE_AGE_SECONDS,
    OptionalSecondsField,
    PersonJSONField,
    validate_session_symbols,
    validate_text,
)
from sessions import money


def new_id() -> str:
    return str(uuid.uuid4())


def qty_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.QTY_PLACES, **kwargs)


def price_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.PRICE_PLACES, **kwargs)


def money_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.MONEY_PLACES, **kwargs)


def bps_field(default: str, **kwargs) -> models.DecimalField:
    # Under 10,000 bps (100%): a sell slipped by 100% would fill at a price of zero.
    return models.DecimalField(
        max_digits=8,
        decimal_places=money.BPS_PLACES,
        default=Decimal(default),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal("9999"))],
        **kwargs,
    )


ORDER_RATE_HELP = f"Between 1 and {MAX_ORDERS_PER_MINUTE} orders a minute."


class TradingSession(RunnableState):
    """A simulated account following one decision agent for some symbols."""

    session_id = models.CharField(primary_key=True, max_length=64, validators=[validate_slug])
    name = models.CharField(max_length=120, validators=[validate_text])
    symbols = PersonJSONField(default=list, blank=True, validators=[validate_session_symbols])
    decision_agent = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="trading_sessions",
    )
    # The paper broker its orders go to: an agent of kind "execution".
    execution_agent = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="executed_sessions",
    )
    # Kept for its history, but left out of "start everything" (docs/api.md system start).
    archived = models.BooleanField(default=False)
    starting_cash = money_field(
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(money.MAX_STARTING_CASH)]
    )
    # Set to starting_cash on creation; afterwards only sessions.broker moves it.
    cash = money_field()

    # "ready": created, never started (agents start out "stopped").
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    # Risk rules the session loop applies when it turns directives into orders.
    max_position_weight = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.5"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="Largest share of equity one symbol may take (0..1).",
    )
    max_orders_per_minute = models.PositiveIntegerField(
        default=6,
        validators=[
            MinValueValidator(1, ORDER_RATE_HELP),
            MaxValueValidator(MAX_ORDERS_PER_MINUTE, ORDER_RATE_HELP),
        ],
    )
    flatten_on_stop = models.BooleanField(
        default=False, help_text="Sell every position when the session stops."
    )
    # Null: automatic, from the bar interval of the feeds it trades on (sessions.freshness).
    max_price_age_seconds = OptionalSecondsField(
        low=1,
        high=MAX_PRICE_AGE_SECONDS,
        help_text="No order on a price older than this many seconds (1 to 86,400); empty: "
        "automatic, twice the feed's bar interval plus 30 s, at least 60 s.",
    )
    # The paper broker's fill model.
    fee_bps = bps_field("10", help_text="Fee in basis points of the notional, charged on every fill.")
    slippage_bps = bps_field("5", help_text="Price moved against the trader on every fill, in bps.")
    slippage_size_scaled = models.BooleanField(
        default=False, help_text="Orders larger than the reference notional slip proportionally more."
    )
    slippage_size_reference = money_field(
        default=Decimal("10000"),
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(money.MAX_MONEY)],
        help_text="Notional up to which an order slips slippage_bps when slippage is size-scaled.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["session_id"]
        constraints = [
            # The broker refuses such fills first; the database is the last guard.
            models.CheckConstraint(condition=Q(cash__gte=0), name="session_cash_not_negative"),
            models.CheckConstraint(condition=Q(starting_cash__gt=0), name="session_starting_cash_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.session_id})"

    def market_agents(self) -> models.QuerySet[Agent]:
        """The agents whose streams price this session: its execution agent's market
        inputs, whose bars the session loop reads its prices from (and the page charts)."""
        return self.market_agents_of(self.execution_agent_id)

    @staticmethod
    def market_agents_of(execution_agent_id: str | None) -> models.QuerySet[Agent]:
        """market_agents() for a session that would use this execution agent (a form)."""
        if not execution_agent_id:
            return Agent.objects.none()
        return Agent.objects.filter(outputs_to__agent_id=execution_agent_id).order_by("agent_id")

    def clean(self) -> None:
        """The rules across fields, and those a field's validators cannot say (an empty
        list skips them), for every form that edits a session: the admin's and
        sessions.forms.SessionCreateForm (the page and the API)."""
        from agents.models import Role  # agents is loaded first; kept beside its use

        errors: dict[str, str] = {}
        if isinstance(self.symbols, list) and not self.symbols:
            errors["symbols"] = "Give at least one symbol to trade."
        for field, role, what in (
            ("decision_agent", Role.DECISION, "decision"),
            ("execution_agent", Role.EXECUTION, "execution"),
        ):
            agent = getattr(self, field) if getattr(self, f"{field}_id") else None
            if agent is None:
                errors[field] = f"Choose the {what} agent this session uses."
            elif agent.role != role:
                errors[field] = (
                    f"Agent {agent.agent_id} has the role {agent.get_role_display()!r}; "
                    f"a session's {what} agent needs the role {role.label!r}."
                )
        weight = self.max_position_weight
        if weight is not None and weight <= 0:
            # The field's validators allow 0..1; a weight of 0 would never buy anything.
            errors["max_position_weight"] = (
                "The largest share of equity per symbol must be above 0 (and at most 1)."
            )
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs) -> None:
        # Creation only: later changes to cash go through the broker's conditional updates.
        if self._state.adding and self.cash is None:
            self.cash = self.starting_cash
        super().save(*args, **kwargs)


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"


class OrderStatus(models.TextChoices):
    NEW = "new", "New"
    SENT = "sent", "Sent"  # handed to the execution agent
    FILLED = "filled", "Filled"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


# Orders the broker may still fill, reject or cancel; every other status is final.
OPEN_STATUSES = (OrderStatus.NEW, OrderStatus.SENT)


class Order(models.Model):
    order_id = models.CharField(primary_key=True, max_length=64, default=new_id, editable=False)
    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="orders")
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4, choices=Side.choices)
    order_type = models.CharField(max_length=8, choices=OrderType.choices, default=OrderType.MARKET)
    quantity = qty_field()
    limit_price = price_field(null=True, blank=True)
    # A flatten order (sell only): it may fill while the session is stopping.
    reduce_only = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=OrderStatus.choices, default=OrderStatus.NEW)
    reason = models.TextField(blank=True, default="")  # why it was rejected or cancelled
    # The decision directive this order came from (stream message id or similar).
    directive_ref = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    filled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["session", "status"])]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=Q(order_type=OrderType.MARKET) | Q(limit_price__gt=0),
                name="order_limit_has_price",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} ({self.order_type}, {self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class Fill(models.Model):
    """One execution of one order. The one-to-one key makes the database itself refuse a
    second fill of an order, whatever the code above it does."""

    fill_id = models.CharField(primary_key=True, max_length=64, default=new_id, editable=False)
    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="fill")
    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="fills")
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = qty_field()
    mark_price = price_field()  # the market price the fill was made against
    price = price_field()  # what the trader got, slippage included
    notional = money_field()  # quantity x price, rounded against the trader; excludes the fee
    fee = money_field()
    slippage = money_field()  # what the slippage cost: quantity x |price - mark|
    realized_pnl = money_field(null=True, blank=True)  # sells only, net of buy and sell fees
    ts = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-ts", "-fill_id"]
        indexes = [models.Index(fields=["session", "ts"])]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="fill_quantity_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="fill_fee_not_negative"),
            models.CheckConstraint(condition=Q(slippage__gte=0), name="fill_slippage_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} @ {self.price}"

    @property
    def cash_delta(self) -> Decimal:
        """What this fill did to cash (negative for buys)."""
        if self.side == Side.BUY:
            return -(self.notional + self.fee)
        return self.notional - self.fee


class Position(models.Model):
    """A long position in one symbol. `cost_basis` is the ledger's truth (money paid for
    the open quantity, fees included); `avg_cost` is cost_basis / quantity for display."""

    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="positions")
    symbol = models.CharField(max_length=32)
    quantity = qty_field(default=Decimal(0))
    cost_basis = money_field(default=Decimal(0))
    avg_cost = price_field(default=Decimal(0))
    realized_pnl = money_field(default=Decimal(0))
    # The latest mark seen (at a fill or a mark to market): values the position when the
    # caller has no fresh price for it.
    last_mark = price_field(null=True, blank=True)
    # When last_mark was seen, so a valuation from it can say how old its price is.
    last_mark_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["session_id", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["session", "symbol"], name="position_one_per_symbol"),
            # Long-only: the broker rejects a sell larger than the position.
            models.CheckConstraint(condition=Q(quantity__gte=0), name="position_long_only"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.symbol}"


class EquityPoint(models.Model):
    session = models.ForeignKey(TradingSession, on_delete=models.CASCADE, related_name="equity_points")
    ts = models.DateTimeField(default=timezone.now)
    equity = money_field()
    cash = money_field()

    class Meta:
        ordering = ["ts", "id"]
        indexes = [models.Index(fields=["session", "ts"])]

    def __str__(self) -> str:
        return f"{self.ts:%Y-%m-%d %H:%M:%S} {self.equity}"

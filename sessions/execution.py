"""The `execution` agent kind: the paper broker's front door.

Prices: the latest close per symbol, from the `{"type": "bar", "symbol", "close", ...}`
messages its inputs (market data agents) publish; other message types are ignored.

Orders: a session records the order (`broker.place_order`) and then appends
`{"data": json.dumps({"order_id", "session_id", "ts"})}` to `keys.orders("agent", <id>)`.
This kind reads that stream through the consumer group "execution" (created with
MKSTREAM), as consumer <agent id>, so an order is handed to one consumer only, and a
restarted loop (same agent id, same consumer name) finds its own unacknowledged entries
again by reading from id "0". Entries a dead consumer of another name left pending are
taken over with XAUTOCLAIM once idle longer than `claim_idle_ms`.

An entry is acknowledged (XACK) only after the broker call returned a final outcome
(filled, rejected, already done). The broker is idempotent, so a crash between the fill
and the XACK leads to a redelivery that finds the order done and changes nothing.

Open limit orders (not crossed yet, or their session paused) are NOT acknowledged: they
stay in the group's pending entries list, which is thus the durable set of open limit
orders of this consumer, and are retried every step from memory. After a restart they
come back with the pending read; if this consumer dies for good, another takes them over
with XAUTOCLAIM. To keep a live consumer's waiting entries from looking idle (and being
claimed by another), each step re-claims them to itself (XCLAIM JUSTID, which resets the
idle time). This was chosen over re-querying the database for open limit orders on
start: the database does not say which execution agent an order was sent to, so with
several execution agents every one of them would retry every order, at its own prices.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import redis
from django.db import DatabaseError
from pydantic import Field

from agents.kinds import register
from agents.kinds.base import AgentKind, KindConfig, StepContext, StepResult
from agents.runtime import keys
from agents.runtime.bus import newest_messages
from agents.runtime.redis import get_redis
from sessions import broker, money
from sessions.broker import Outcome
from sessions.models import Order, OrderType

_T = TypeVar("_T")

GROUP = "execution"
# How far back a starting broker looks for the last bar of each symbol.
SEED_LOOKBACK = 200


class ExecutionConfig(KindConfig):
    tick_seconds: float = Field(0.5, ge=0.05, le=60, description="Seconds between steps.")
    max_orders_per_step: int = Field(
        200, ge=1, le=10_000, description="Most new order messages read from the stream per step."
    )
    claim_idle_ms: int = Field(
        30_000,
        ge=100,
        le=3_600_000,
        description="Take over orders another (dead) consumer left unacknowledged this long (ms).",
    )


@dataclass
class _Waiting:
    """An entry held without XACK: an open limit order, or one whose broker call failed."""

    order_id: str
    order_type: str


@register
class Execution(AgentKind):
    name = "execution"
    description = "Paper broker: fills the sessions' orders at the latest prices of its inputs."
    roles = ("execution",)
    Config = ExecutionConfig

    def __init__(self, ctx: StepContext, config: KindConfig, client: redis.Redis | None = None) -> None:
        super().__init__(ctx, config)
        assert isinstance(config, ExecutionConfig)
        self.cfg: ExecutionConfig = config
        self.client = client or get_redis()
        self.stream = keys.orders("agent", ctx.agent_id)
        # Stable across restarts, so a new incarnation re-reads its predecessor's pending entries.
        self.consumer = ctx.agent_id
        self.prices: dict[str, Decimal] = {}
        # Stream entry id -> order, for entries retried every step and not yet acknowledged.
        self.waiting: dict[str, _Waiting] = {}
        self._group_ready = False
        self._prices_seeded = False
        self._pending_read = False
        self._claim_cursor = "0-0"
        self._next_claim = 0.0  # monotonic time of the next XAUTOCLAIM

    # --- the step -------------------------------------------------------------------

    def step(self) -> StepResult:
        counts = {"orders_in": 0, "filled": 0, "rejected": 0, "already_done": 0, "limit_waiting": 0}
        self._update_prices()
        self._ensure_group()
        # Retry what waits before taking new orders: limit orders placed earlier get the
        # first chance at this price.
        for entry_id, item in list(self.waiting.items()):
            self._handle(entry_id, item.order_id, counts, retry=True)
        entries: list[tuple[str, dict[str, str] | None]] = []
        if not self._pending_read:
            entries += self._with_group(self._read_pending)
            self._pending_read = True
        entries += self._with_group(self._claim_idle)
        entries += self._with_group(self._read_new)
        for entry_id, fields in entries:
            counts["orders_in"] += 1
            order_id = self._order_id(entry_id, fields)
            if order_id is None:
                self.client.xack(self.stream, GROUP, entry_id)
                continue
            self._handle(entry_id, order_id, counts, retry=False)
        self._with_group(self._keep_waiting_claimed)
        counts["limit_waiting"] = len(self.waiting)
        did_work = bool(counts["orders_in"] or counts["filled"] or counts["rejected"])
        return StepResult(did_work=did_work, summary=self._summary(counts), counters=counts)

    # --- prices ---------------------------------------------------------------------

    def _update_prices(self) -> None:
        if not self._prices_seeded:
            self._seed_prices()
        for message in self.ctx.read_inputs():
            self._take_bar(message.data)

    def _seed_prices(self) -> None:
        """The newest bar of each input stream, read once at start: a restarted broker
        (its cursor past every old bar) knows the last price before the next bar comes,
        instead of rejecting the orders redelivered to it for "no price yet"."""
        self._prices_seeded = True
        for messages in newest_messages(self.client, self.ctx.inputs, SEED_LOOKBACK).values():
            for data in reversed(messages):  # oldest first: the newest bar wins
                self._take_bar(data)

    def _take_bar(self, data: dict[str, Any]) -> None:
        if data.get("type") != "bar":
            return
        symbol, price = data.get("symbol"), money.positive_price(data.get("close"))
        if isinstance(symbol, str) and price is not None:
            self.prices[symbol] = price

    # --- the stream -----------------------------------------------------------------

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # "0": a group created after orders were appended still sees them.
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _with_group(self, call: Callable[[], _T]) -> _T:
        """Run a consumer-group command; when Redis lost the stream and its group (it
        restarted empty, or the keys were deleted), make the group again and retry once.
        Of the entries lost with it, those waiting here are still retried from memory,
        and the sessions send a market order again when it stays open too long."""
        try:
            return call()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        self.ctx.log.warning("the order stream's consumer group was gone (Redis lost it); created it again")
        self._group_ready = False
        self._claim_cursor = "0-0"
        self._ensure_group()
        return call()

    def _read_pending(self) -> list[tuple[str, dict[str, str] | None]]:
        """Every entry delivered to this consumer name and never acknowledged (a crash)."""
        out: list[tuple[str, dict[str, str] | None]] = []
        start = "0"
        while True:
            reply = self.client.xreadgroup(
                GROUP, self.consumer, {self.stream: start}, count=self.cfg.max_orders_per_step
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return out
            out += entries
            start = entries[-1][0]

    def _claim_idle(self) -> list[tuple[str, dict[str, str] | None]]:
        """Entries another consumer left pending for longer than claim_idle_ms (it died)."""
        now = time.monotonic()
        if now < self._next_claim:
            return []
        # Scanning the pending list every tick is wasted work; a few times per idle period is enough.
        self._next_claim = now + self.cfg.claim_idle_ms / 4000
        reply = self.client.xautoclaim(
            self.stream,
            GROUP,
            self.consumer,
            min_idle_time=self.cfg.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.cfg.max_orders_per_step,
        )
        self._claim_cursor = reply[0] or "0-0"
        # Entries already waiting here (ours, claimed back after a long stall) are retried anyway.
        return [(eid, fields) for eid, fields in reply[1] if eid not in self.waiting]

    def _read_new(self) -> list[tuple[str, dict[str, str] | None]]:
        reply = self.client.xreadgroup(
            GROUP, self.consumer, {self.stream: ">"}, count=self.cfg.max_orders_per_step
        )
        return reply[0][1] if reply else []

    def _keep_waiting_claimed(self) -> None:
        # Resets the idle time of entries this live consumer holds on purpose, so another
        # consumer's XAUTOCLAIM takes them only once this one has stopped stepping.
        if self.waiting:
            self.client.xclaim(self.stream, GROUP, self.consumer, 0, list(self.waiting), justid=True)

    def _order_id(self, entry_id: str, fields: dict[str, str] | None) -> str | None:
        if not fields:  # trimmed from the stream while pending: nothing left to read
            self.ctx.log.warning("order message %s has no data any more; dropped", entry_id)
            return None
        try:
            data: Any = json.loads(fields["data"])
            order_id = data["order_id"]
        except (KeyError, TypeError, ValueError):
            self.ctx.log.warning("malformed order message %s: %r; dropped", entry_id, fields)
            return None
        if not isinstance(order_id, str) or not order_id:
            self.ctx.log.warning("order message %s has no order id: %r; dropped", entry_id, fields)
            return None
        return order_id

    # --- one order --------------------------------------------------------------------

    def _handle(self, entry_id: str, order_id: str, counts: dict[str, int], retry: bool) -> None:
        """Give one order to the broker; XACK once the outcome is final."""
        try:
            outcome = self._execute(order_id)
        except Order.DoesNotExist:
            self.ctx.log.warning("order %s (message %s) does not exist; dropped", order_id, entry_id)
            self._done(entry_id)
            return
        except DatabaseError as exc:
            # Not acknowledged: kept to retry next step (the broker call rolled back).
            self.ctx.log.warning("order %s: database error, will retry: %s", order_id, exc)
            self.waiting[entry_id] = _Waiting(order_id, "")
            return
        if outcome is None or outcome.outcome in (Outcome.NOT_CROSSED, Outcome.HELD):
            self.waiting[entry_id] = _Waiting(order_id, OrderType.LIMIT)
            return
        if outcome.outcome == Outcome.FILLED:
            counts["filled"] += 1
            fill = outcome.fill
            if fill is not None:
                self.ctx.log.info(
                    "filled %s %s %s at %s (mark %s, fee %s) for session %s",
                    fill.side, fill.quantity, fill.symbol, fill.price, fill.mark_price, fill.fee,
                    fill.session_id,
                )  # fmt: skip
        elif outcome.outcome == Outcome.REJECTED:
            counts["rejected"] += 1
            self.ctx.log.info("rejected order %s: %s", order_id, outcome.reason)
        else:
            counts["already_done"] += 1
        self._done(entry_id)

    def _execute(self, order_id: str) -> broker.FillOutcome | None:
        """The broker's outcome, or None for a limit order left waiting for a price."""
        order = Order.objects.select_related("session").get(pk=order_id)
        price = self.prices.get(order.symbol)
        if order.order_type != OrderType.MARKET and price is None:
            if order.is_open and order.symbol in (order.session.symbols or []):
                # A limit order can wait for its first price; an unknown symbol is rejected below.
                return None
        # Only while this loop is the agent's current run: a superseded broker fills nothing.
        with self.ctx.current_run():
            if order.order_type == OrderType.MARKET:
                # No price: the broker rejects it with its reason (a market order means now).
                return broker.fill_market_order(order_id, price)
            return broker.fill_limit_order_if_crossed(order_id, price)

    def _done(self, entry_id: str) -> None:
        self.client.xack(self.stream, GROUP, entry_id)
        self.waiting.pop(entry_id, None)

    @staticmethod
    def _summary(counts: dict[str, int]) -> str:
        parts = [
            f"{counts[name]} {label}"
            for name, label in (
                ("filled", "filled"),
                ("rejected", "rejected"),
                ("already_done", "already done"),
            )
            if counts[name]
        ]
        if counts["limit_waiting"]:
            parts.append(f"{counts['limit_waiting']} limit waiting")
        return ", ".join(parts) or "no orders"

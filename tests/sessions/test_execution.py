"""The execution kind against real Redis (this run's prefix) and the test database.

Steps are driven by hand with a StepContext whose read_inputs returns scripted bars;
orders are submitted as a session does: broker.place_order, then XADD to the agent's
order stream.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from agents.kinds import get_kind, validate_config
from agents.kinds.base import StepContext
from agents.models import Agent
from agents.runtime import keys
from agents.runtime.bus import InputMessage
from agents.states import Desired, Status
from control import services
from sessions import broker
from sessions.execution import GROUP, Execution
from sessions.models import Fill, Order, OrderStatus, OrderType, TradingSession
from tests.conftest import wait_for

D = Decimal


class Ctx(StepContext):
    """A StepContext whose inputs are whatever bars the test queued since the last step."""

    def __init__(self, agent_id: str) -> None:
        self.queued: list[InputMessage] = []
        super().__init__(
            agent_id=agent_id,
            symbols=[],
            publish=lambda _msg: "0-0",
            last_published=lambda: None,
            log=logging.getLogger("tests.execution"),
            read_inputs=self._read,
            inputs=["md1"],
        )

    def _read(self) -> list[InputMessage]:
        out, self.queued = self.queued, []
        return out

    def bar(self, close: Any, symbol: str = "BTC-USD") -> None:
        data = {"type": "bar", "ts": "2024-01-01T00:00:00+00:00", "symbol": symbol, "close": close}
        self.queued.append(InputMessage("md1", f"{len(self.queued) + 1}-0", data))


@pytest.fixture
def agent_id(redis_client) -> Iterator[str]:
    """A fresh execution agent id per test; its order stream is deleted afterwards."""
    rid = f"exec-{uuid.uuid4().hex[:8]}"
    yield rid
    redis_client.delete(keys.orders("agent", rid))


@pytest.fixture
def make_exec(agent_id) -> Callable[..., tuple[Execution, Ctx]]:
    def make(**config: Any) -> tuple[Execution, Ctx]:
        ctx = Ctx(agent_id)
        kind = Execution(ctx, validate_config("execution", config))
        return kind, ctx

    return make


def submit(redis_client, agent_id: str, order: Order) -> str:
    """What a session does after place_order: hand the order to the execution agent."""
    data = {"order_id": order.pk, "session_id": order.session_id, "ts": "2024-01-01T00:00:00+00:00"}
    return redis_client.xadd(keys.orders("agent", agent_id), {"data": json.dumps(data)})


def pending(redis_client, agent_id: str) -> int:
    return redis_client.xpending(keys.orders("agent", agent_id), GROUP)["pending"]


def counters(**nonzero: int) -> dict[str, int]:
    return {"orders_in": 0, "filled": 0, "rejected": 0, "already_done": 0, "limit_waiting": 0, **nonzero}


def cash(session: TradingSession) -> Decimal:
    return TradingSession.objects.get(pk=session.pk).cash


def test_registered_with_its_schema():
    assert get_kind("execution") is Execution
    config = validate_config("execution", {})
    assert (config.tick_seconds, config.max_orders_per_step, config.claim_idle_ms) == (0.5, 200, 30_000)


def test_market_order_fills_at_latest_price_with_slippage_and_fee(make_session, make_exec, redis_client):
    session = make_session(fee_bps=D("10"), slippage_bps=D("5"))
    kind, ctx = make_exec()
    ctx.bar(90)
    ctx.bar(100.0)  # the latest close counts
    ctx.bar(5, symbol="ETH-USD")
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("2"))
    submit(redis_client, kind.ctx.agent_id, order)

    result = kind.step()

    fill = Fill.objects.get(order=order)
    assert fill.mark_price == D("100")
    assert fill.price == D("100.05")  # 5 bps against the buyer
    assert fill.notional == D("200.10")
    assert fill.fee == D("0.2001")  # 10 bps of the notional
    assert cash(session) == D("10000") - D("200.10") - D("0.2001")
    assert result.counters == counters(orders_in=1, filled=1)
    assert result.did_work and result.summary == "1 filled"
    assert pending(redis_client, kind.ctx.agent_id) == 0


def test_size_scaled_slippage_costs_more_for_a_large_order(make_session, make_exec, redis_client):
    session = make_session(
        fee_bps=D(0), slippage_bps=D("10"), slippage_size_scaled=True, slippage_size_reference=D("100")
    )
    kind, ctx = make_exec()
    ctx.bar(100)
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("2"))  # 2x the reference notional
    submit(redis_client, kind.ctx.agent_id, order)
    kind.step()
    assert Fill.objects.get(order=order).price == D("100.2")  # 20 bps


@pytest.mark.parametrize(
    ("symbol", "quantity", "bar", "reason"),
    [
        ("BTC-USD", "1", None, "No price for BTC-USD yet"),
        ("DOGE-USD", "1", ("DOGE-USD", 1), "Unknown symbol DOGE-USD"),
        ("BTC-USD", "1000", ("BTC-USD", 100), "Insufficient cash"),
    ],
    ids=["no-price", "unknown-symbol", "insufficient-cash"],
)
def test_orders_it_cannot_fill_are_rejected_with_a_reason(
    make_session, make_exec, redis_client, symbol, quantity, bar, reason
):
    session = make_session()
    kind, ctx = make_exec()
    if bar:
        ctx.bar(bar[1], symbol=bar[0])
    order = broker.place_order(session.pk, symbol, "buy", D(quantity))
    submit(redis_client, kind.ctx.agent_id, order)

    result = kind.step()

    order.refresh_from_db()
    assert order.status == OrderStatus.REJECTED
    assert reason in order.reason
    assert result.counters["rejected"] == 1 and result.summary == "1 rejected"
    assert not Fill.objects.exists() and cash(session) == D("10000")
    assert pending(redis_client, kind.ctx.agent_id) == 0


def test_limit_buy_waits_until_the_price_crosses(make_session, make_exec, redis_client):
    session = make_session(fee_bps=D(0), slippage_bps=D(0))
    kind, ctx = make_exec()
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("1"), OrderType.LIMIT, D("95"))
    submit(redis_client, kind.ctx.agent_id, order)

    first = kind.step()  # no price yet: a limit order waits for one instead of being rejected
    assert first.counters["limit_waiting"] == 1
    ctx.bar(100)
    second = kind.step()
    assert second.counters == counters(limit_waiting=1)
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW
    # Waiting entries stay unacknowledged: the pending list is the durable set of open limits.
    assert pending(redis_client, kind.ctx.agent_id) == 1

    ctx.bar(94)
    third = kind.step()
    assert third.counters["filled"] == 1 and third.counters["limit_waiting"] == 0
    assert Fill.objects.get(order=order).price == D("94")
    assert cash(session) == D("9906")
    assert pending(redis_client, kind.ctx.agent_id) == 0


def test_open_limit_order_survives_a_restart(make_session, make_exec, redis_client):
    session = make_session(fee_bps=D(0), slippage_bps=D(0))
    kind, ctx = make_exec()
    ctx.bar(100)
    order = broker.place_order(session.pk, "BTC-USD", "sell", D("1"), OrderType.LIMIT, D("105"))
    broker.fill_market_order(broker.place_order(session.pk, "BTC-USD", "buy", D("1")).pk, D("90"))
    submit(redis_client, kind.ctx.agent_id, order)
    assert kind.step().counters["limit_waiting"] == 1

    # A new incarnation (same agent id) knows nothing in memory; it finds the order pending.
    again, ctx2 = make_exec()
    ctx2.bar(106)
    result = again.step()
    assert result.counters["filled"] == 1
    assert Fill.objects.get(order=order).price == D("106")


def test_same_order_submitted_twice_is_filled_once(make_session, make_exec, redis_client):
    session = make_session()
    kind, ctx = make_exec()
    ctx.bar(100)
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("1"))
    submit(redis_client, kind.ctx.agent_id, order)
    submit(redis_client, kind.ctx.agent_id, order)

    result = kind.step()

    assert result.counters["orders_in"] == 2
    assert result.counters["filled"] == 1 and result.counters["already_done"] == 1
    fill = Fill.objects.get(order=order)
    assert Fill.objects.count() == 1
    assert cash(session) == D("10000") + fill.cash_delta
    assert pending(redis_client, kind.ctx.agent_id) == 0


def test_crash_between_fill_and_ack_changes_nothing_on_redelivery(
    make_session, make_exec, redis_client, monkeypatch
):
    session = make_session()
    kind, ctx = make_exec()
    ctx.bar(100)
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("1"))
    submit(redis_client, kind.ctx.agent_id, order)

    # The process "dies" right after the broker committed the fill, before XACK.
    def crash(_entry_id: str) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(kind, "_done", crash)
    with pytest.raises(SystemExit):
        kind.step()
    assert Fill.objects.filter(order=order).count() == 1
    charged = cash(session)
    assert pending(redis_client, kind.ctx.agent_id) == 1

    # The restarted loop re-reads its pending entry: the broker says already done.
    again, ctx2 = make_exec()
    ctx2.bar(50)  # a new price must not produce a second fill
    result = again.step()
    assert result.counters == counters(orders_in=1, already_done=1)
    assert Fill.objects.filter(order=order).count() == 1
    assert cash(session) == charged
    assert pending(redis_client, kind.ctx.agent_id) == 0
    # And a later step reads nothing again.
    assert again.step().counters["orders_in"] == 0


def test_two_consumers_share_the_stream_and_fill_each_order_once(make_session, agent_id, redis_client):
    session = make_session(starting_cash=D("1000000"))
    kinds = []
    for name in ("a", "b"):
        ctx = Ctx(agent_id)
        kind = Execution(ctx, validate_config("execution", {"max_orders_per_step": 7}))
        kind.consumer = f"{agent_id}-{name}"  # two consumers of the one group
        ctx.bar(100)
        kinds.append(kind)
    orders = [broker.place_order(session.pk, "BTC-USD", "buy", D("1")) for _ in range(40)]
    for order in orders:
        submit(redis_client, agent_id, order)

    handled = {"a": 0, "b": 0}
    for _ in range(10):
        for name, kind in zip(("a", "b"), kinds, strict=True):
            counters = kind.step().counters
            handled[name] += counters["orders_in"]
            assert counters["already_done"] == 0  # nobody saw an order the other had
    assert handled["a"] + handled["b"] == 40 and handled["a"] and handled["b"]
    assert Fill.objects.count() == 40
    assert set(Fill.objects.values_list("order_id", flat=True)) == {o.pk for o in orders}
    spent = sum((f.cash_delta for f in Fill.objects.all()), D(0))
    assert cash(session) == D("1000000") + spent
    assert pending(redis_client, agent_id) == 0


def test_entries_of_a_dead_consumer_are_claimed_after_the_idle_time(make_session, agent_id, redis_client):
    session = make_session()
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("1"))
    # A consumer of another name read the entry and died before handling it.
    Execution(Ctx(agent_id), validate_config("execution", {}))._ensure_group()
    stream = keys.orders("agent", agent_id)
    submit(redis_client, agent_id, order)
    redis_client.xreadgroup(GROUP, "dead", {stream: ">"}, count=10)

    ctx = Ctx(agent_id)
    kind = Execution(ctx, validate_config("execution", {"claim_idle_ms": 100}))
    ctx.bar(100)
    assert kind.step().counters["orders_in"] == 0  # not idle long enough yet
    time.sleep(0.15)
    kind._next_claim = 0  # skip the throttle between claims
    result = kind.step()
    assert result.counters["filled"] == 1
    assert Fill.objects.filter(order=order).count() == 1
    assert pending(redis_client, agent_id) == 0


def test_malformed_and_unknown_orders_are_dropped(make_session, make_exec, redis_client):
    make_session()
    kind, ctx = make_exec()
    stream = keys.orders("agent", kind.ctx.agent_id)
    redis_client.xadd(stream, {"data": "not json"})
    redis_client.xadd(stream, {"data": json.dumps({"order_id": "no-such-order"})})
    result = kind.step()
    assert result.counters["orders_in"] == 2
    assert pending(redis_client, kind.ctx.agent_id) == 0


def test_execution_agent_in_a_real_worker_fills_an_order(
    celery_worker, make_agent, make_session, redis_client
):
    feed = make_agent("exec_feed", symbols=["BTC-USD"])
    execution = make_agent(
        "exec_paper", kind="execution", role="execution", symbols=[], config={"tick_seconds": 0.1}
    )
    execution.inputs_from.add(feed)
    session = make_session("worker_fill")
    for agent in (feed, execution):
        services.start_agent(agent.agent_id)
    wait_for(lambda: Agent.objects.filter(status=Status.RUNNING).count() == 2, what="both agents running")
    # A bar first, so the market order meets a price rather than "no price yet".
    wait_for(lambda: redis_client.xlen(keys.stream("agent", feed.agent_id)) > 0, what="a bar")
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("0.01"))
    submit(redis_client, execution.agent_id, order)

    wait_for(
        lambda: Order.objects.get(pk=order.pk).status != OrderStatus.NEW, timeout=20, what="the order handled"
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED, order.reason
    fill = Fill.objects.get(order=order)
    assert fill.price > fill.mark_price  # the buy paid the slippage
    assert cash(session) == D("10000") + fill.cash_delta
    redis_client.delete(keys.orders("agent", execution.agent_id))


def test_other_messages_are_ignored_and_a_paused_sessions_limit_order_is_held(
    make_session, make_exec, redis_client
):
    session = make_session(fee_bps=D(0), slippage_bps=D(0), desired_state=Desired.PAUSED)
    kind, ctx = make_exec()
    ctx.queued.append(InputMessage("md1", "9-0", {"type": "news", "symbol": "BTC-USD", "close": 1}))
    ctx.bar(90)
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("1"), OrderType.LIMIT, D("95"))
    submit(redis_client, kind.ctx.agent_id, order)
    held = kind.step()
    assert kind.prices == {"BTC-USD": D("90")}
    assert held.counters == counters(orders_in=1, limit_waiting=1)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW

    TradingSession.objects.filter(pk=session.pk).update(desired_state=Desired.RUNNING)
    assert kind.step().counters == counters(filled=1)
    assert Fill.objects.get(order=order).price == D("90")


def test_a_restarted_broker_knows_the_last_price_before_the_next_bar(make_session, make_exec, redis_client):
    """Its cursor is past every old bar: without the look-back, redelivered orders would be
    rejected for "no price yet" although the market has a price."""
    session = make_session("seeded")
    stream = keys.stream("agent", "md1")
    for close in (100.0, 101.5):
        bar = {"type": "bar", "ts": "2024-01-01T00:00:00+00:00", "symbol": "BTC-USD", "close": close}
        redis_client.xadd(stream, {"data": json.dumps(bar)})
    try:
        kind, _ctx = make_exec()  # no bar queued on its inputs
        order = broker.place_order(session.pk, "BTC-USD", "buy", D("0.1"))
        submit(redis_client, kind.ctx.agent_id, order)
        kind.step()
        fill = Fill.objects.get(order=order)
        assert fill.mark_price == D("101.5")
    finally:
        redis_client.delete(stream)


def test_a_superseded_broker_fills_nothing(make_session, make_exec, redis_client):
    """The fill is written only while the loop is the agent's current run (fencing)."""
    from contextlib import contextmanager

    from agents.runtime.lease import Fenced

    session = make_session()
    kind, ctx = make_exec()

    @contextmanager
    def superseded():
        raise Fenced("the database names another run")
        yield  # pragma: no cover

    ctx.current_run = superseded
    ctx.bar(100)
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("1"))
    submit(redis_client, kind.ctx.agent_id, order)
    with pytest.raises(Fenced):
        kind.step()
    assert not Fill.objects.filter(order=order).exists()
    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW
    assert pending(redis_client, kind.ctx.agent_id) == 1  # left for the current broker

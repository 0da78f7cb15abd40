"""Fills from several threads and OS processes at once (issue 5, item 8): no lost
update, no duplicate, and no fill once a pause has committed.

Runs against the real test database (SQLite under `make test`, PostgreSQL under
`make test-pg`), with committed data so that other connections and processes see it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from agents.states import Desired, Status
from sessions import broker
from sessions.broker import Outcome
from sessions.models import Fill, Order, OrderStatus, Position, TradingSession
from tests.conftest import ROOT, database_url

D = Decimal
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def make_session(db):
    """A running session with a 10 bps fee and 5 bps slippage."""

    def make(session_id: str = "alpha") -> TradingSession:
        return TradingSession.objects.create(
            session_id=session_id,
            name=session_id.title(),
            symbols=["BTC-USD", "ETH-USD"],
            starting_cash=D("10000"),
            desired_state=Desired.RUNNING,
            status=Status.RUNNING,
            fee_bps=D("10"),
            slippage_bps=D("5"),
        )

    return make


# 1 BTC at a mark of 100 with 5 bps slippage and a 10 bps fee.
PRICE, FEE = D("100.05"), D("0.10005")


def place_buys(session: TradingSession, count: int) -> list[str]:
    return [broker.place_order(session.pk, "BTC-USD", "buy", D(1)).pk for _ in range(count)]


def assert_each_filled_once_and_paid_once(session: TradingSession, order_ids: list[str]) -> None:
    fills = Fill.objects.filter(session=session)
    assert sorted(f.order_id for f in fills) == sorted(order_ids)
    assert all(f.price == PRICE and f.fee == FEE for f in fills)
    assert TradingSession.objects.get(pk=session.pk).cash == D(10000) - len(order_ids) * (PRICE + FEE)
    assert Position.objects.get(session=session).quantity == len(order_ids)
    assert set(Order.objects.filter(pk__in=order_ids).values_list("status", flat=True)) == {"filled"}


def in_threads(*jobs) -> list:
    """Run each job in its own thread (and database connection), all released at once."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int, job) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = job()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


def filling(order_ids: list[str], mark: str = "100", gap_ms: int = 0) -> list[str]:
    """fill_worker's arguments to fill `order_ids` at `mark`, one after another."""
    return [*(["--gap-ms", str(gap_ms)] if gap_ms else []), mark, *order_ids]


def pausing(session_id: str, after_fills: int) -> list[str]:
    """fill_worker's arguments to pause `session_id` once it has `after_fills` fills."""
    return ["--pause", session_id, str(after_fills)]


def in_processes(*argument_lists: list[str]) -> list[dict[str, str]]:
    """Run tests/fault/fill_worker.py once per argument list, each in its own OS process,
    all starting at once; return what each printed (JSON)."""
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fault.fill_worker", *arguments],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for arguments in argument_lists
    ]
    try:
        for proc in procs:
            ready = proc.stdout.readline()
            assert ready.strip() == "ready", proc.stderr.read()
        for proc in procs:  # both are set up and waiting: release them together
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_two_threads_filling_the_same_order_make_one_fill(make_session):
    session = make_session()
    [order_id] = place_buys(session, 1)
    outcomes = in_threads(*[lambda: broker.fill_market_order(order_id, D(100))] * 2)
    assert sorted(o.outcome for o in outcomes) == [Outcome.ALREADY_DONE, Outcome.FILLED]
    assert_each_filled_once_and_paid_once(session, [order_id])


def test_two_threads_filling_different_orders_lose_no_update_of_cash(make_session):
    session = make_session()
    order_ids = place_buys(session, 20)

    def fill_all(ids: list[str]):
        return [broker.fill_market_order(order_id, D(100)).outcome for order_id in ids]

    results = in_threads(lambda: fill_all(order_ids[0::2]), lambda: fill_all(order_ids[1::2]))
    assert Counter(o for result in results for o in result) == {Outcome.FILLED: 20}
    assert_each_filled_once_and_paid_once(session, order_ids)


def test_two_processes_filling_the_same_order_make_one_fill_and_charge_once(make_session):
    session = make_session()
    [order_id] = place_buys(session, 1)
    first, second = in_processes(filling([order_id]), filling([order_id]))
    assert sorted([first[order_id], second[order_id]]) == ["already_done", "filled"]
    assert_each_filled_once_and_paid_once(session, [order_id])


def test_two_processes_filling_different_orders_lose_no_update_of_cash(make_session):
    session = make_session()
    order_ids = place_buys(session, 30)
    first, second = in_processes(filling(order_ids[0::2]), filling(order_ids[1::2]))
    assert set(first.values()) == set(second.values()) == {"filled"}
    assert_each_filled_once_and_paid_once(session, order_ids)


def test_two_processes_racing_through_the_same_orders_fill_each_once(make_session):
    session = make_session()
    order_ids = place_buys(session, 30)
    # One goes forwards, the other backwards: every order is fought over.
    first, second = in_processes(filling(order_ids), filling(order_ids[::-1]))
    for order_id in order_ids:
        assert sorted([first[order_id], second[order_id]]) == ["already_done", "filled"]
    assert_each_filled_once_and_paid_once(session, order_ids)


def test_a_pause_committed_in_another_process_stops_fills_at_once(make_session):
    session = make_session()
    order_ids = place_buys(session, 60)
    filled_by, _paused = in_processes(filling(order_ids, gap_ms=5), pausing(session.pk, after_fills=3))
    # One process fills in order while the other pauses: whatever it filled before the
    # pause committed, it fills nothing after it (the broker reads desired_state under
    # the session lock), so the fills are a run from the start of the list.
    outcomes = [filled_by[order_id] for order_id in order_ids]
    done = outcomes.index("rejected") if "rejected" in outcomes else len(outcomes)
    assert outcomes == ["filled"] * done + ["rejected"] * (len(outcomes) - done), outcomes
    assert 3 <= done < len(order_ids), "the pause was to land while the other process filled"
    rejected = Order.objects.filter(pk__in=order_ids[done:])
    assert all("paused" in order.reason for order in rejected)
    assert TradingSession.objects.get(pk=session.pk).desired_state == Desired.PAUSED
    filled = order_ids[:done]
    assert sorted(Fill.objects.filter(session=session).values_list("order_id", flat=True)) == sorted(filled)
    assert set(Order.objects.filter(pk__in=filled).values_list("status", flat=True)) <= {OrderStatus.FILLED}
    assert TradingSession.objects.get(pk=session.pk).cash == D(10000) - done * (PRICE + FEE)

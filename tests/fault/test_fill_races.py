"""Fills from several threads and OS processes at once: no lost update, no duplicate.

Runs against the real test database (SQLite or PostgreSQL, whichever DATABASE_URL
names), with committed data so that other connections and processes see it.
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

from sessions import broker
from sessions.broker import Outcome
from sessions.models import Fill, Order, Position, TradingSession
from tests.conftest import ROOT, database_url

D = Decimal
pytestmark = pytest.mark.django_db(transaction=True)

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


def in_processes(*order_lists: list[str], mark: str = "100") -> list[dict[str, str]]:
    """Fill each list of orders in its own OS process (tests/sessions/fill_worker.py),
    all starting at once; return each process's {order_id: outcome}."""
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.sessions.fill_worker", mark, *orders],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for orders in order_lists
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
    first, second = in_processes([order_id], [order_id])
    assert sorted([first[order_id], second[order_id]]) == ["already_done", "filled"]
    assert_each_filled_once_and_paid_once(session, [order_id])


def test_two_processes_filling_different_orders_lose_no_update_of_cash(make_session):
    session = make_session()
    order_ids = place_buys(session, 30)
    first, second = in_processes(order_ids[0::2], order_ids[1::2])
    assert set(first.values()) == set(second.values()) == {"filled"}
    assert_each_filled_once_and_paid_once(session, order_ids)


def test_two_processes_racing_through_the_same_orders_fill_each_once(make_session):
    session = make_session()
    order_ids = place_buys(session, 30)
    # One goes forwards, the other backwards: every order is fought over.
    first, second = in_processes(order_ids, order_ids[::-1])
    for order_id in order_ids:
        assert sorted([first[order_id], second[order_id]]) == ["already_done", "filled"]
    assert_each_filled_once_and_paid_once(session, order_ids)

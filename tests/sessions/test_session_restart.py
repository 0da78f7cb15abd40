"""A session loop restarted while it holds positions (real Redis, real database, the loop
run in this process): it values what it holds from the positions' last marks, not at 0,
until new bars come."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from agents.models import LogEntry
from agents.runtime import lifecycle
from agents.states import Desired, Status
from sessions import broker
from sessions.models import EquityPoint, Position, TradingSession
from sessions.runtime import Directive, SessionLoop
from tests.conftest import wait_for

D = Decimal


@pytest.fixture
def run_session(transactional_db, settings):
    """Run a SessionLoop in a thread; stopped and joined at teardown."""
    settings.SESSION_TICK_SECONDS = 0.05
    threads: list[tuple[threading.Thread, str]] = []

    def start(session_id: str, run_id: str = "run-1") -> dict:
        TradingSession.objects.filter(pk=session_id).update(
            desired_state=Desired.RUNNING, status=Status.STARTING, run_id=run_id
        )
        lifecycle.write_flags("session", session_id, Desired.RUNNING, run_id, "")
        outcome: dict = {}

        def target() -> None:
            try:
                outcome["reason"] = SessionLoop(session_id, run_id).run()
            finally:
                connection.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        threads.append((thread, session_id))
        outcome["thread"] = thread
        return outcome

    yield start
    for thread, session_id in threads:
        TradingSession.objects.filter(pk=session_id).update(desired_state=Desired.STOPPED)
        lifecycle.write_flags("session", session_id, Desired.STOPPED, "")
        thread.join(timeout=10)


def holding_session(session_id: str = "held") -> TradingSession:
    """A session that bought BTC and ETH before its loop (re)started, with one equity point."""
    session = TradingSession.objects.create(
        session_id=session_id,
        name=session_id.title(),
        symbols=["BTC-USD", "ETH-USD"],
        starting_cash=D("10000"),
        cash=D("10000"),
        desired_state=Desired.RUNNING,
        status=Status.RUNNING,
        max_position_weight=D(1),
    )
    for symbol, quantity, mark in (("BTC-USD", "0.05", "72700.5"), ("ETH-USD", "1", "3555.25")):
        order = broker.place_order(session.pk, symbol, "buy", D(quantity))
        assert broker.fill_market_order(order.pk, D(mark)).filled
    broker.mark_to_market(session.pk, {"BTC-USD": D("72700.5"), "ETH-USD": D("3555.25")})
    return session


def test_the_first_equity_point_after_a_restart_equals_the_last_before(run_session):
    session = holding_session()
    last = EquityPoint.objects.filter(session_id=session.pk).latest("ts", "id")
    run_session(session.pk)
    first = wait_for(
        lambda: EquityPoint.objects.filter(session_id=session.pk, id__gt=last.id).order_by("id").first(),
        what="the restarted loop's first equity point",
    )
    assert first.equity == last.equity
    assert first.cash == last.cash
    note = wait_for(
        lambda: LogEntry.objects.filter(session_id=session.pk, message__startswith="valuing").first(),
        what="the note of the holdings valued at their last marks",
    )
    assert "BTC-USD at 72700.5 from " in note.message and "ETH-USD at 3555.25 from " in note.message


def test_a_position_keeps_the_time_of_its_last_mark(transactional_db):
    session = holding_session()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    broker.mark_to_market(session.pk, {"BTC-USD": D("73000")}, ts=when)
    btc = Position.objects.get(session_id=session.pk, symbol="BTC-USD")
    eth = Position.objects.get(session_id=session.pk, symbol="ETH-USD")
    assert (btc.last_mark, btc.last_mark_at) == (D("73000"), when)
    assert eth.last_mark == D("3555.25") and eth.last_mark_at != when  # no new price: unchanged
    later = when + timedelta(minutes=1)
    order = broker.place_order(session.pk, "ETH-USD", "sell", D("0.5"))
    assert broker.fill_market_order(order.pk, D("3600"), ts=later).filled
    eth = Position.objects.get(session_id=session.pk, symbol="ETH-USD")
    assert (eth.last_mark, eth.last_mark_at) == (D("3600"), later)


def test_sizing_after_a_restart_values_a_position_without_a_new_bar_at_its_last_mark(
    transactional_db, monkeypatch
):
    """After a restart only ETH has a new bar: a buy of ETH toward 60 % of the equity is
    sized against the whole equity, with BTC (held, no bar yet) at its last mark, not 0."""
    session = holding_session()
    TradingSession.objects.filter(pk=session.pk).update(run_id="run-1")
    loop = SessionLoop(session.pk, "run-1")
    sent = []
    monkeypatch.setattr(loop, "_send", sent.append)
    loop.symbols = ["BTC-USD", "ETH-USD"]
    loop.prices["ETH-USD"] = D("3555.25")  # the only new bar
    loop.pending["ETH-USD"] = Directive(ref="d:1-0", action="buy", target_weight=D("0.6"), reason="buy: x")
    assert loop._trade() == 1

    equity = broker.mark_to_market(session.pk, {})  # BTC at its last mark, as the ledger values it
    eth = Position.objects.get(session_id=session.pk, symbol="ETH-USD")
    wanted = (equity * D("0.6") - eth.quantity * D("3555.25")) / D("3555.25")
    assert len(sent) == 1 and sent[0].symbol == "ETH-USD" and sent[0].side == "buy"
    assert sent[0].quantity == pytest.approx(wanted, rel=D("0.0001"))

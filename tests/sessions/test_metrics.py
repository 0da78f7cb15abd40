"""Metrics on hand-computed examples."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from sessions import metrics
from sessions.models import EquityPoint
from tests.sessions.helpers import trade

D = Decimal


def test_a_fall_from_110_to_99_is_a_ten_percent_drawdown():
    drawdown = metrics.max_drawdown([D(100), D(110), D(99), D(105)])
    assert (drawdown.fraction, drawdown.amount) == (D("0.1"), D(11))
    assert (drawdown.peak, drawdown.trough) == (D(110), D(99))


def test_a_curve_that_only_rises_has_no_drawdown():
    drawdown = metrics.max_drawdown([D(100), D(100), D(120)])
    assert (drawdown.fraction, drawdown.amount, drawdown.peak) == (0, 0, None)


def test_the_largest_fall_is_measured_as_a_fraction_of_its_peak():
    # 100 -> 50 is half; 1000 -> 800 is more money but only a fifth.
    drawdown = metrics.max_drawdown([D(100), D(50), D(1000), D(800)])
    assert (drawdown.fraction, drawdown.amount) == (D("0.5"), D(50))


def test_two_winning_sells_out_of_three_is_a_win_rate_of_two_thirds():
    assert metrics.win_rate([D(10), None, D(-5), D("0.01")]) == D("0.666667")


def test_a_sell_that_made_exactly_nothing_is_not_a_win():
    assert metrics.win_rate([D(0), D(1)]) == D("0.5")


def test_no_sells_no_win_rate():
    assert metrics.win_rate([None, None]) is None


def test_pnl_pct_is_the_return_in_percent():
    assert metrics.pnl_pct(D(10230), D(10000)) == D("2.3")
    assert metrics.pnl_pct(D(9000), D(10000)) == D(-10)
    assert metrics.pnl(D(10230), D(10000)) == D(230)


def test_equity_is_cash_plus_positions_at_their_marks():
    assert metrics.equity(D(1000), [(D(2), D(100)), (D("0.5"), D(10))]) == D(1205)


def test_exposure_is_the_invested_share_of_equity():
    assert metrics.exposure([(D(2), D(100))], D(1000)) == D("0.2")
    assert metrics.exposure([], D(1000)) == 0
    assert metrics.exposure([(D(1), D(1))], D(0)) is None


@pytest.mark.django_db
def test_session_metrics_of_a_hand_computed_session(frictionless):
    trade(frictionless, "buy", "10", "100")  # cash 9000
    trade(frictionless, "sell", "5", "120")  # +100 realized, cash 9600
    trade(frictionless, "sell", "5", "90")  # -50 realized, cash 10050
    trade(frictionless, "buy", "10", "100")  # cash 9050
    trade(frictionless, "sell", "10", "110")  # +100 realized, cash 10150
    trade(frictionless, "buy", "5", "100")  # cash 9650, 5 held at 100
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for minute, equity in enumerate([11000, 9900, 10500]):  # a 10% fall from 11,000
        EquityPoint.objects.create(
            session=frictionless, ts=start + timedelta(minutes=minute), equity=D(equity), cash=D(0)
        )

    result = metrics.session_metrics(frictionless.pk, {"BTC-USD": D(110)})
    assert result["cash"] == D(9650)
    assert result["positions_value"] == D(550)
    assert result["equity"] == D(10200)
    assert (result["pnl"], result["pnl_pct"]) == (D(200), D(2))
    assert (result["realized_pnl"], result["unrealized_pnl"]) == (D(150), D(50))
    assert (result["trades"], result["fees"]) == (6, 0)
    assert result["win_rate"] == D("0.666667")
    assert (result["max_drawdown"], result["max_drawdown_amount"]) == (D("0.1"), D(1100))
    assert result["exposure"] == D("0.053922")  # 550 / 10,200


@pytest.mark.django_db
def test_a_session_without_fresh_marks_is_valued_at_the_last_ones(frictionless):
    trade(frictionless, "buy", "2", "100")
    assert metrics.session_metrics(frictionless.pk)["equity"] == D(10000)


@pytest.mark.django_db
def test_the_snapshot_is_json_with_exact_strings(frictionless):
    trade(frictionless, "buy", "2", "100")
    frictionless.metrics = metrics.snapshot(metrics.session_metrics(frictionless.pk, {"BTC-USD": D("100.5")}))
    frictionless.save(update_fields=["metrics"])
    frictionless.refresh_from_db()
    assert frictionless.metrics["equity"] == "10001"
    assert frictionless.metrics["trades"] == 1 and frictionless.metrics["win_rate"] is None

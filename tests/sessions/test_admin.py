"""The admin: sessions configurable without overwriting what the loop and broker wrote;
orders and fills read-only."""

from decimal import Decimal

import pytest

from agents.states import Desired, Status
from sessions.models import Fill, Order, TradingSession
from tests.sessions.helpers import trade

D = Decimal
pytestmark = pytest.mark.django_db


def form_data(session: TradingSession, **overrides) -> dict:
    data = {
        "session_id": session.session_id,
        "name": session.name,
        "symbols": '["BTC-USD", "ETH-USD"]',
        "decision_agent": "",
        "starting_cash": str(session.starting_cash),
        "max_position_weight": "0.5",
        "max_orders_per_minute": "6",
        "fee_bps": "10",
        "slippage_bps": "5",
        "slippage_size_reference": "10000",
        "positions-TOTAL_FORMS": "0",
        "positions-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_a_session_added_in_the_admin_starts_with_its_starting_cash(admin_client):
    draft = TradingSession(session_id="new-one", name="New one", starting_cash=D(2500))
    response = admin_client.post("/admin/trading_sessions/tradingsession/add/", form_data(draft))
    assert response.status_code == 302, response.content.decode()[:2000]
    created = TradingSession.objects.get(pk="new-one")
    assert (created.cash, created.status, created.desired_state) == (D(2500), Status.READY, Desired.STOPPED)


def test_saving_a_session_does_not_overwrite_status_or_cash(admin_client, make_session):
    session = make_session()
    trade(session, "buy", "1", "1000")  # the broker moves cash while the form is open
    TradingSession.objects.filter(pk=session.pk).update(status=Status.PAUSED, run_id="r1")
    response = admin_client.post(
        f"/admin/trading_sessions/tradingsession/{session.pk}/change/", form_data(session, name="Renamed")
    )
    assert response.status_code == 302
    saved = TradingSession.objects.get(pk=session.pk)
    assert (saved.name, saved.status, saved.run_id) == ("Renamed", Status.PAUSED, "r1")
    assert saved.cash == D("8998.4995")


def test_orders_and_fills_can_be_read_but_not_changed(admin_client, make_session):
    outcome = trade(make_session(), "buy", "1", "1000")
    for path in ("/admin/trading_sessions/order/", "/admin/trading_sessions/fill/"):
        assert admin_client.get(path).status_code == 200
    assert admin_client.get(f"/admin/trading_sessions/order/{outcome.order_id}/change/").status_code == 200
    assert admin_client.get("/admin/trading_sessions/order/add/").status_code == 403
    response = admin_client.post(f"/admin/trading_sessions/fill/{outcome.fill.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Fill.objects.count() == 1 and Order.objects.count() == 1


def test_a_session_edit_in_the_admin_is_audited_and_says_when_it_needs_a_restart(
    admin_client, admin_user, make_session, make_agent
):
    from agents.models import LogEntry

    make_agent("decider", kind="decision", role="decision", symbols=["BTC-USD", "ETH-USD"])
    session = make_session()  # running
    response = admin_client.post(
        f"/admin/trading_sessions/tradingsession/{session.pk}/change/",
        form_data(session, decision_agent="decider", max_orders_per_minute="3"),
        follow=True,
    )
    assert response.status_code == 200
    entry = LogEntry.objects.get(session_id=session.pk, source="control")
    assert entry.user == admin_user
    assert entry.message == "admin changed decision_agent, max_orders_per_minute of session alpha"
    assert (
        "Session alpha is running: the change to decision_agent applies when it is stopped and started again."
        in response.content.decode()
    )
    assert TradingSession.objects.get(pk=session.pk).max_orders_per_minute == 3

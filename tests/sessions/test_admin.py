"""The admin: sessions configurable without overwriting what the loop and broker wrote;
orders and fills read-only."""

from decimal import Decimal

import pytest

from agents.states import Desired, Status
from sessions.models import Fill, Order, TradingSession
from tests.sessions.helpers import trade

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def agents(make_agent):
    """The decision and execution agents a session needs (TradingSession.clean)."""
    make_agent("decider", kind="decision", role="decision", config={})
    make_agent("broker", kind="execution", role="execution", config={})
    make_agent("technical", kind="technical", role="specialized_technical", config={})


def form_data(session: TradingSession, **overrides) -> dict:
    data = {
        "session_id": session.session_id,
        "name": session.name,
        "symbols": '["BTC-USD", "ETH-USD"]',
        "decision_agent": "decider",
        "execution_agent": "broker",
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

    session = make_session(execution_agent_id="broker")  # running, no decision agent yet
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


ADD = "/admin/trading_sessions/tradingsession/add/"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "decision_agent",
            "technical",
            "Agent technical has the role 'Technical analysis'; "
            "a session's decision agent needs the role 'Decision'.",
        ),
        ("decision_agent", "broker", "Agent broker has the role 'Execution'"),
        ("decision_agent", "", "Choose the decision agent this session uses."),
        ("execution_agent", "", "Choose the execution agent this session uses."),
        ("execution_agent", "decider", "execution agent needs the role 'Execution'"),
        ("symbols", "[]", "Give at least one symbol to trade."),
        ("symbols", "null", "null cannot be stored"),
        ("symbols", "", "null cannot be stored"),
        ("max_position_weight", "0", "must be above 0"),
        ("max_position_weight", "1.5", "less than or equal to 1"),
    ],
)
def test_the_admin_refuses_what_the_api_refuses(admin_client, make_session, field, value, message):
    """The admin's form applies the model's rules (as the create API does): no 500 and no
    change, a sentence by the field instead."""
    session = make_session()
    before = TradingSession.objects.filter(pk=session.pk).values().get()
    response = admin_client.post(
        f"/admin/trading_sessions/tradingsession/{session.pk}/change/", form_data(session, **{field: value})
    )
    assert response.status_code == 200
    assert message in response.content.decode().replace("&#x27;", "'")
    assert TradingSession.objects.filter(pk=session.pk).values().get() == before
    draft = TradingSession(session_id="new-one", name="New one", starting_cash=D(2500))
    assert admin_client.post(ADD, form_data(draft, **{field: value})).status_code == 200
    assert not TradingSession.objects.filter(pk="new-one").exists()


@pytest.mark.parametrize(
    "name", ["Safe \u202eyub lla", "\u2067x", "a\u200f", "\u200b\u200b", "\u0301", "\u3164"]
)
def test_the_admin_refuses_bidi_controls_and_invisible_names(admin_client, make_session, name):
    session = make_session()
    response = admin_client.post(
        f"/admin/trading_sessions/tradingsession/{session.pk}/change/", form_data(session, name=name)
    )
    assert response.status_code == 200
    assert "This text" in response.content.decode()
    assert TradingSession.objects.get(pk=session.pk).name == session.name

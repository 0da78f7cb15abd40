"""Whatever is stored in an editable field, every page still answers.

Validation now refuses most of these values at every edge, but rows written before it (by
the admin of an older release, a script, a migration) may hold them still. Each value is
written straight into the database, past every validator, and the pages that show the
row must answer 200: the panel and its live read, the session page and its chart, the
admin's change pages and the API.

PostgreSQL cannot store a lone surrogate or NUL in text at all; the odd Unicode that any
database stores is here instead (right-to-left override, zero-width characters, stacked
combining marks, emoji sequences, full-width and non-ASCII digits).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, models
from django.db.models import Value

from agents.models import Agent
from control.live.hub import Hub
from control.web import dashboard_context as page
from sessions.models import TradingSession
from tests.security.routes import AGENT_ID, SESSION_ID

pytestmark = pytest.mark.django_db

ODD_TEXT = [
    "",
    "\u202eDSU-CTB\u202c",  # right-to-left override
    "a\u200bb\u200d\ufeff",  # zero-width space, joiner, BOM
    "e" + "\u0301" * 50,  # combining marks stacked
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f680",  # emoji sequences
    "\uff11\uff12\uff13 \u0661\u0662 \u00b2",  # full-width, Arabic-Indic digits, superscript two
    "x" * 120,  # the longest a name may be
    "{{ 1 }} {% now %} %s {0}",  # template and format syntax
]
ODD_JSON: list[Any] = [
    None,  # JSON null
    "",
    "BTC-USD",
    7,
    1e308,
    -(2**63),
    {"BTC-USD": 1},
    [None, 1, ["x"], {"a": "b"}],
    ["\u202eUSD", "\uff11\uff12", "e\u0301"],
    {"source": 5, "initial_prices": {"BTC-USD": 1e308}, "seed": 10**18, "\u202e": "\u200b"},
]
INT_EXTREMES = [None, 0, -(2**31), 2**31 - 1]


def _json(value: Any):
    # None would be SQL NULL, which these columns refuse; a JSON null is what the admin stores.
    return Value(value, output_field=models.JSONField())


def _largest(field: models.DecimalField) -> Decimal:
    """About the largest value the column holds (numeric(max_digits, decimal_places)) that
    SQLite, which keeps a double, reads back: one more digit is read as 1e22, which Django
    cannot quantize to the column (migration 0003 clamps such rows to the domain)."""
    return Decimal(10) ** (field.max_digits - field.decimal_places - 1)


AGENT_VALUES = (
    [("name", v) for v in ODD_TEXT]
    # Cut to the column: PostgreSQL refuses longer text (kind and role hold 40 characters).
    + [("kind", v[:40]) for v in [*ODD_TEXT, "no-such-kind"]]
    + [("role", v[:40]) for v in [*ODD_TEXT, "no-such-role"]]
    + [("symbols", _json(v)) for v in ODD_JSON]
    + [("config", _json(v)) for v in ODD_JSON]
    + [(f, v) for f in ("position_x", "position_y") for v in INT_EXTREMES]
)


def _session_values() -> list[tuple[str, Any]]:
    decimals = ("max_position_weight", "fee_bps", "slippage_bps", "slippage_size_reference", "cash")
    values: list[tuple[str, Any]] = [("name", v) for v in ODD_TEXT]
    values += [("symbols", _json(v)) for v in ODD_JSON]
    values += [(name, Decimal(0)) for name in decimals]
    values += [(name, _largest(TradingSession._meta.get_field(name))) for name in decimals]
    values += [("starting_cash", Decimal("0.000001"))]
    values += [("starting_cash", _largest(TradingSession._meta.get_field("starting_cash")))]
    values += [("max_orders_per_minute", v) for v in (0, 2**31 - 1)]
    values += [("decision_agent", None), ("execution_agent", None)]
    values += [(name, True) for name in ("archived", "flatten_on_stop", "slippage_size_scaled")]
    return values


SESSION_VALUES = _session_values()

PAGES = [
    "/",
    "/ui/panel",
    "/ui/feed",
    f"/sessions/{SESSION_ID}/",
    f"/sessions/{SESSION_ID}/?partial=live",
    f"/sessions/{SESSION_ID}/?partial=fills",
    f"/sessions/{SESSION_ID}/chart.json",
    "/api/agents",
    f"/api/agents/{AGENT_ID}",
    "/api/system/status",
    "/api/paper-trading/sessions",
    f"/api/paper-trading/sessions/{SESSION_ID}",
    f"/api/paper-trading/sessions/{SESSION_ID}/trades",
    "/admin/agents/agent/",
    f"/admin/agents/agent/{AGENT_ID}/change/",
    "/admin/trading_sessions/tradingsession/",
    f"/admin/trading_sessions/tradingsession/{SESSION_ID}/change/",
]


@pytest.fixture
def superuser_client(client, admin_user):
    client.force_login(admin_user)
    return client


def _with_a_fill(graph) -> None:
    """A position and a fill, so the session's tables and markers have rows to show."""
    from sessions import broker
    from sessions.models import Order

    session = graph["session"]
    order = Order.objects.create(session=session, symbol="BTC-USD", side="buy", quantity=Decimal("0.01"))
    TradingSession.objects.filter(pk=session.pk).update(status="running", desired_state="running")
    assert broker.fill_market_order(order.order_id, Decimal("100")).fill is not None
    TradingSession.objects.filter(pk=session.pk).update(status="ready", desired_state="stopped")


def _answers(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.content[-800:])
    b"".join(response) if response.streaming else response.content  # the whole body renders


@pytest.mark.parametrize(("field", "value"), AGENT_VALUES, ids=lambda v: repr(v)[:40])
def test_any_stored_agent_value_leaves_every_page_answering(graph, superuser_client, field, value):
    for agent in ("feed", "decider", "broker"):
        Agent.objects.filter(pk=agent).update(**{field: value})
    for path in PAGES:
        _answers(superuser_client, path)
    Hub().sweep({True, False}, {True}, with_events=True)  # the live push reads it all too


@pytest.mark.parametrize(("field", "value"), SESSION_VALUES, ids=lambda v: repr(v)[:40])
def test_any_stored_session_value_leaves_every_page_answering(graph, superuser_client, field, value):
    _with_a_fill(graph)
    TradingSession.objects.filter(pk=SESSION_ID).update(**{field: value})
    for path in PAGES:
        _answers(superuser_client, path)
    Hub().sweep({True, False}, {True}, with_events=True)


@pytest.mark.skipif(
    connection.vendor != "sqlite", reason="PostgreSQL refuses a lone surrogate in jsonb: it cannot be stored"
)
@pytest.mark.parametrize(
    ("model", "pk", "field", "value"),
    [
        (Agent, "decider", "config", {"weights": {"\ud800": 1}}),  # a config key
        (Agent, "feed", "config", {"source": "\udfff"}),
        (Agent, "feed", "symbols", ["BTC-USD", "\ud800"]),
        (TradingSession, SESSION_ID, "symbols", ["\ud83d"]),
    ],
)
def test_a_lone_surrogate_stored_before_the_rule_is_shown_repaired(
    graph, superuser_client, model, pk, field, value
):
    """SQLite keeps JSON as text with the "\\ud800" escape, which reads back as a lone
    surrogate: no page could be sent with it (the admin's change page answered 500)."""
    model.objects.filter(pk=pk).update(**{field: _json(value)})
    for path in PAGES:
        _answers(superuser_client, path)
    assert "\ufffd" in str(getattr(model.objects.get(pk=pk), field))


def test_the_position_left_blank_in_the_admin_keeps_the_flow_in_order(graph):
    """Issue 10 item 1: a null position sorted against numbers raised TypeError. A card
    without a saved position goes below those with one."""
    Agent.objects.filter(pk="feed").update(position_y=None)
    Agent.objects.create(agent_id="feed2", name="Feed 2", kind="market_data", role="data_feed", position_y=3)
    columns = dict(page.columns(page.agent_cards()))
    assert [c.agent_id for c in columns["Data feeds"]] == ["feed2", "feed"]


def test_the_migrations_bring_stored_numbers_into_the_new_bounds(graph):
    """Rows saved through the admin before the bounds existed are clamped, compared in SQL."""
    from importlib import import_module

    from django.apps import apps

    from agents.validators import MAX_ORDERS_PER_MINUTE, MAX_POSITION
    from sessions import money

    Agent.objects.filter(pk="feed").update(position_x=-5, position_y=2**31 - 1)
    Agent.objects.filter(pk="decider").update(position_x=None, position_y=3)
    TradingSession.objects.filter(pk=SESSION_ID).update(
        max_orders_per_minute=0, slippage_size_reference=Decimal(10) ** 21
    )
    import_module("agents.migrations.0002_person_input_rules").clamp_to_the_domain(apps, None)
    import_module("sessions.migrations.0004_person_input_rules").clamp_to_the_domain(apps, None)
    positions = dict(Agent.objects.values_list("agent_id", "position_x"))
    assert (positions["feed"], positions["decider"]) == (0, None)
    assert Agent.objects.get(pk="feed").position_y == MAX_POSITION
    assert Agent.objects.get(pk="decider").position_y == 3
    session = TradingSession.objects.get(pk=SESSION_ID)
    assert (session.max_orders_per_minute, session.slippage_size_reference) == (1, money.MAX_MONEY)
    TradingSession.objects.filter(pk=SESSION_ID).update(max_orders_per_minute=10**6)
    import_module("sessions.migrations.0004_person_input_rules").clamp_to_the_domain(apps, None)
    assert TradingSession.objects.get(pk=SESSION_ID).max_orders_per_minute == MAX_ORDERS_PER_MINUTE

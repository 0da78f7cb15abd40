"""The main page and its htmx endpoints (Django test client; the browser tests are in
tests/e2e)."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent, LogEntry
from agents.states import Desired, Status
from sessions.models import TradingSession

D = Decimal


@pytest.fixture
def graph(make_agent):
    feed = make_agent("feed", symbols=["BTC-USD"])
    execution = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.add(feed)
    decision = make_agent("brain", kind="decision", role="decision", config={})
    decision.inputs_from.add(feed)
    return feed, execution, decision


def make_sessions(n: int, **fields) -> None:
    for i in range(n):
        TradingSession.objects.create(
            session_id=f"s{i}",
            name=f"Session {i}",
            symbols=["BTC-USD"],
            decision_agent_id="brain",
            execution_agent_id="broker",
            starting_cash=D("1000"),
            **fields,
        )


def toast(response) -> dict:
    return json.loads(response["HX-Trigger"])["toast"]


def test_the_page_shows_every_agent_session_and_control(operator_client, graph):
    make_sessions(1)
    page = operator_client.get("/").content.decode()
    for dom_id in ("system-panel", "agent-feed", "agent-broker", "agent-brain", "session-s0", "feed-items"):
        assert f'id="{dom_id}"' in page
    assert 'ws-connect="/ws/control/"' in page
    # Simulated data says so, beside the label every card shows where its prices come from.
    assert re.search(r"<dt[^>]*>Prices</dt><dd[^>]*>Simulated</dd>", page)
    assert 'data-action="system-start"' in page


def test_each_market_data_card_says_where_its_prices_come_from(
    viewer_client, graph, make_agent, redis_client
):
    feed = graph[0]
    feed.config = {"source": "simulated", "speed": 60}
    feed.save()
    make_agent("live", config={"source": "exchange", "exchange": "kraken"})
    page = viewer_client.get("/").content.decode()
    assert re.search(r"<dt[^>]*>Prices</dt><dd[^>]*>Simulated, 60x</dd>", page)
    assert re.search(r"<dt[^>]*>Prices</dt><dd[^>]*>Live: Kraken</dd>", page)


def test_a_viewer_sees_the_page_with_every_control_disabled(viewer_client, graph):
    make_sessions(1)
    page = viewer_client.get("/").content.decode()
    assert "(view only)" in page
    start = page.split('data-action="system-start"')[0].rsplit("<button", 1)[1]
    assert "disabled" in start


def test_the_page_costs_the_same_queries_for_3_or_60_agents(operator_client, make_agent, monkeypatch):
    from control import health

    # The health report is cached for 5 s; building 60 agents can outlast that, and its
    # refresh (a few queries) would be counted in one render and not the other.
    report = health.health()
    monkeypatch.setattr(health, "cached_health", lambda *a, **k: report)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert operator_client.get("/").status_code == 200
        return len(queries)

    make_agent("brain", kind="decision", role="decision", config={})
    make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    make_agent("feed0")
    make_sessions(2)
    operator_client.get("/")  # warm caches (health, permissions)
    few = count()
    for i in range(1, 58):
        make_agent(f"feed{i}")
    TradingSession.objects.all().delete()
    make_sessions(40)
    many = count()
    assert many == few, f"{few} queries for 3 agents, {many} for 60"


def test_starting_an_agent_answers_with_its_card_and_a_toast(
    operator_client, graph, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = operator_client.post("/ui/agents/feed/start")
    assert response.status_code == 200
    assert 'id="agent-feed"' in response.content.decode()
    assert "starting" in response.content.decode()
    assert toast(response) == {"level": "success", "message": "Starting agent feed.", "target": "body"}
    assert Agent.objects.get(pk="feed").desired_state == Desired.RUNNING


def test_a_refused_action_keeps_its_409_and_says_why(operator_client, graph):
    response = operator_client.post("/ui/agents/feed/stop")
    assert response.status_code == 409
    assert toast(response)["level"] == "danger"
    assert "already stopped" in toast(response)["message"]


def test_a_viewer_cannot_act(viewer_client, graph):
    response = viewer_client.post("/ui/agents/feed/start")
    assert response.status_code == 403
    assert Agent.objects.get(pk="feed").desired_state == Desired.STOPPED


def test_pausing_a_session_from_its_row(operator_client, graph):
    make_sessions(1, status=Status.RUNNING, desired_state=Desired.RUNNING)
    response = operator_client.post("/ui/sessions/s0/pause")
    assert response.status_code == 200
    assert TradingSession.objects.get(pk="s0").desired_state == Desired.PAUSED
    html = response.content.decode()
    assert 'id="session-s0"' in html and "→ paused" in html  # asked for, not yet confirmed
    again = operator_client.post("/ui/sessions/s0/pause")
    assert again.status_code == 409 and "already pausing" in toast(again)["message"]
    assert operator_client.post("/ui/sessions/s0/explode").status_code == 404


def test_a_bad_new_session_shows_the_field_error_in_place_and_creates_nothing(operator_client, graph):
    response = operator_client.post(
        "/ui/sessions/new",
        {"name": "Bad", "symbols": "BTC-USD", "decision_agent": "brain", "starting_cash": "-5"},
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="session-form"' in html
    assert 'id="id_starting_cash"' in html and "is-invalid" in html
    assert "greater than or equal to 0.01" in html
    assert not TradingSession.objects.exists()


def test_a_new_session_joins_the_table(operator_client, graph):
    response = operator_client.post(
        "/ui/sessions/new",
        {"name": "Fresh one", "symbols": "btc-usd", "decision_agent": "brain", "starting_cash": "500"},
    )
    assert response.status_code == 200, response.content
    html = response.content.decode()
    assert 'id="session-rows" hx-swap-oob="morph"' in html and 'id="session-fresh-one"' in html
    created = TradingSession.objects.get(pk="fresh-one")
    assert created.execution_agent_id == "broker" and created.cash == D("500")
    assert toast(response)["level"] == "success"


def test_the_feed_filters_and_pages(operator_client, graph):
    for i in range(5):
        LogEntry.objects.create(source="control", level=20, message=f"did {i}")
    LogEntry.objects.create(source="session", level=30, message="rate limited")
    LogEntry.objects.create(source="agent", level=20, message="a tick")  # not feed material
    html = operator_client.get("/ui/feed").content.decode()
    assert "did 0" in html and "rate limited" in html and "a tick" not in html
    warnings = operator_client.get("/ui/feed?level=warning").content.decode()
    assert "rate limited" in warnings and "did 0" not in warnings
    newest = LogEntry.objects.filter(message="did 3").get().id
    older = operator_client.get(f"/ui/feed?before={newest}").content.decode()
    assert "did 2" in older and "did 4" not in older


def test_the_resync_endpoint_returns_every_part_as_out_of_band_swaps(operator_client, graph):
    html = operator_client.get("/ui/panel").content.decode()
    for dom_id in ("system-panel", "flow", "edge-data", "session-rows"):
        assert f'id="{dom_id}"' in html
    # Morphed in place (the focus stays); the edge data is a <script>, replaced whole.
    assert html.count('hx-swap-oob="morph"') == 3  # nested parts are not swapped twice
    assert html.count('hx-swap-oob="true"') == 1


def test_saving_the_order_of_a_column(operator_client, make_agent):
    for name in ("a", "b", "c"):
        make_agent(name)
    assert operator_client.post("/ui/agents/order", {"order": "c,a,b"}).status_code == 204
    assert list(Agent.objects.order_by("position_y").values_list("agent_id", flat=True)) == ["c", "a", "b"]
    assert operator_client.post("/ui/agents/order", {"order": "c,nope"}).status_code == 422


def test_last_active_comes_from_the_loop_and_a_card_without_one_can_still_tick(make_agent, redis_client):
    """A card first rendered before its agent ever stepped must still show the live time
    later (live-times only updates an existing <time>); and the time is the loop's own,
    from Redis, not the database's copy of a few seconds ago."""
    import time

    from django.template.loader import render_to_string

    from agents.runtime import keys
    from control.web import dashboard_context as page

    make_agent("feed")
    card = page.agent_cards()[0]
    html = render_to_string("control/index.html#agent-card", {"card": card, "can_control": True})
    assert '<time data-ago datetime="">never</time>' in html
    now = time.time()
    redis_client.hset(keys.metrics("agent", "feed"), "last_active", repr(now))
    assert page.agent_cards()[0].agent["last_active"].timestamp() == pytest.approx(now, abs=0.001)


def test_the_menu_links_the_api_docs_for_everyone_and_the_admin_for_staff(client, viewer, operator):
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert 'href="/api/docs"' in page
    assert 'href="/admin/"' not in page
    operator.is_staff = True
    operator.save()
    client.force_login(operator)
    page = client.get("/").content.decode()
    assert 'href="/api/docs"' in page and 'href="/admin/"' in page


def test_session_entries_name_their_session_on_the_page_and_in_older_pages(operator_client, graph):
    make_sessions(1)
    old = LogEntry.objects.create(source="session", session_id="s0", message="an old one")
    LogEntry.objects.create(source="session", session_id="gone", message="of a deleted session")
    page_html = operator_client.get("/").content.decode()
    older_html = operator_client.get(f"/ui/feed?before={old.id + 1}").content.decode()
    for html in (page_html, older_html):
        assert 'href="/sessions/s0/">Session 0' in html and "(s0)" in html
    assert "session gone" in page_html

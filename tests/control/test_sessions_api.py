"""The paper trading sessions part of the JSON API (docs/api.md "Paper trading sessions") and
the session counts of GET /api/system/status.

Tests run under pytest-django's `db` fixture: transaction.on_commit callbacks run only
inside django_capture_on_commit_callbacks(execute=True), with services.launch_session
replaced by a recorder, so no Celery task is sent.
"""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import LogEntry
from agents.runtime import keys
from agents.states import Desired, Status
from control import presenters, services
from control.models import ApiToken
from sessions import broker
from sessions.metrics import session_metrics
from sessions.models import EquityPoint, Fill, TradingSession

pytestmark = pytest.mark.django_db

D = Decimal
BASE = "/api/paper-trading/sessions"
DEAD_REDIS = "redis://127.0.0.1:1/0"

# The session object of docs/api.md, plus the risk fields and error_message.
SESSION_FIELDS = {
    "session_id",
    "name",
    "status",
    "desired_state",
    "symbols",
    "decision_agent",
    "execution_agent",
    "starting_cash",
    "cash",
    "equity",
    "pnl",
    "pnl_pct",
    "trades",
    "started_at",
    "paused_at",
    "stopped_at",
    "max_position_weight",
    "max_orders_per_minute",
    "flatten_on_stop",
    "fee_bps",
    "slippage_bps",
    "error_message",
}
FILL_FIELDS = {"fill_id", "order_id", "symbol", "side", "quantity", "price", "fee", "slippage", "ts"}


def post_json(client, path, body, **extra):
    return client.post(path, data=json.dumps(body), content_type="application/json", **extra)


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    if code is not None:
        assert body["code"] == code
    assert isinstance(body["detail"], str) and " " in body["detail"].strip()
    return body


def control_audit():
    return LogEntry.objects.filter(source="control")


def snapshot():
    """Everything a session action could change, to prove that a refused one changed nothing."""
    return list(
        TradingSession.objects.order_by("session_id").values_list(
            "session_id", "desired_state", "status", "run_id", "task_id", "cash"
        )
    )


@pytest.fixture
def graph(make_agent):
    """A market feed for BTC-USD and ETH-USD, an execution agent priced by it, a decision agent."""
    feed = make_agent("feed", symbols=["BTC-USD", "ETH-USD"])
    execution = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.set([feed])
    decision = make_agent(
        "decider", kind="decision", role="decision", symbols=["BTC-USD", "ETH-USD"], config={}
    )
    return {"feed": feed, "execution": execution, "decision": decision}


@pytest.fixture
def make_session(graph):
    def make(session_id="alpha", **fields):
        defaults = {
            "name": session_id.title(),
            "symbols": ["BTC-USD", "ETH-USD"],
            "decision_agent": graph["decision"],
            "execution_agent": graph["execution"],
            "starting_cash": D("10000"),
            "fee_bps": D("10"),
            "slippage_bps": D("5"),
        }
        defaults.update(fields)
        return TradingSession.objects.create(session_id=session_id, **defaults)

    return make


@pytest.fixture
def running(make_session):
    return make_session("runner", status=Status.RUNNING, desired_state=Desired.RUNNING, run_id="r1")


@pytest.fixture
def paused(make_session):
    return make_session("sleeper", status=Status.PAUSED, desired_state=Desired.PAUSED, run_id="r2")


@pytest.fixture
def ready(make_session):
    return make_session("fresh")


@pytest.fixture
def launched(monkeypatch):
    """services.launch_session replaced by a recorder of its calls."""
    calls = []
    monkeypatch.setattr(services, "launch_session", lambda *args, **kwargs: calls.append(args))
    return calls


def trade(session_id, side, qty, mark, symbol="BTC-USD", ts=None):
    order = broker.place_order(session_id, symbol, side, D(str(qty)))
    outcome = broker.fill_market_order(order.pk, D(str(mark)), ts=ts)
    assert outcome.filled, outcome.reason
    return outcome.fill


VALID = {
    "name": "My first session",
    "symbols": ["BTC-USD"],
    "decision_agent": "decider",
    "starting_cash": "10000",
}


# --- create -------------------------------------------------------------------------------


def test_creating_a_session_answers_201_with_the_session_and_its_defaults(operator_client, operator, graph):
    response = post_json(operator_client, BASE, VALID)
    assert response.status_code == 201, response.content
    body = response.json()
    assert SESSION_FIELDS <= set(body)
    assert body["session_id"] == "my-first-session"  # made from the name
    assert body["status"] == "ready"
    assert body["symbols"] == ["BTC-USD"]
    assert body["decision_agent"] == "decider"
    assert body["execution_agent"] == "broker"  # the one enabled execution agent
    assert (body["starting_cash"], body["cash"], body["equity"], body["pnl"]) == (
        "10000.00",
        "10000.00",
        "10000.00",
        "0.00",
    )
    assert body["pnl_pct"] == 0
    assert body["trades"] == 0
    assert (body["started_at"], body["paused_at"], body["stopped_at"], body["error_message"]) == (None,) * 4
    assert body["max_position_weight"] == 0.5
    assert body["max_orders_per_minute"] == 6
    assert body["flatten_on_stop"] is False
    assert (body["fee_bps"], body["slippage_bps"]) == ("10", "5")
    stored = TradingSession.objects.get(pk="my-first-session")
    assert stored.cash == stored.starting_cash == D("10000")
    assert control_audit().get().user == operator
    assert operator_client.get(f"{BASE}/my-first-session").json()["name"] == "My first session"


def test_a_second_session_with_the_same_name_gets_another_id(operator_client, graph):
    first = post_json(operator_client, BASE, VALID).json()["session_id"]
    second = post_json(operator_client, BASE, VALID).json()["session_id"]
    assert (first, second) == ("my-first-session", "my-first-session-2")


def test_creating_with_an_explicit_id_and_risk_rules_stores_them(operator_client, graph):
    body = {
        **VALID,
        "session_id": "careful",
        "symbols": ["BTC-USD", "ETH-USD"],
        "execution_agent": "broker",
        "max_position_weight": 0.25,
        "max_orders_per_minute": 2,
        "flatten_on_stop": True,
        "fee_bps": "2.5",
        "slippage_bps": "0",
    }
    response = post_json(operator_client, BASE, body)
    assert response.status_code == 201, response.content
    out = response.json()
    assert out["session_id"] == "careful"
    assert (out["max_position_weight"], out["max_orders_per_minute"], out["flatten_on_stop"]) == (
        0.25,
        2,
        True,
    )
    assert (out["fee_bps"], out["slippage_bps"]) == ("2.5", "0")


def test_bad_values_are_422_naming_each_field_and_nothing_is_created(operator_client, graph):
    bad = {
        "name": "",
        "symbols": "not a symbol!",
        "decision_agent": "decider",
        "starting_cash": "-5",
        "fee_bps": "lots",
        "max_orders_per_minute": 0,
        "colour": "red",
    }
    response = post_json(operator_client, BASE, bad)
    body = assert_error(response, 422, "invalid")
    reasons = {e["field"]: e["reason"] for e in body["errors"]}
    assert set(reasons) == {"name", "symbols", "starting_cash", "fee_bps", "max_orders_per_minute", "colour"}
    assert reasons["colour"] == "Unknown field."
    assert reasons["name"] == "Must not be blank."
    assert reasons["symbols"] == "Must be an array."
    assert "decimal number" in reasons["starting_cash"]
    assert "greater than or equal to 1" in reasons["max_orders_per_minute"]
    for field in reasons:
        assert field in body["detail"]
    assert not TradingSession.objects.exists()
    assert not control_audit().exists()


def test_well_typed_values_the_domain_refuses_are_422_from_the_form(operator_client, graph):
    # The types pass the API's schema; the session's own rules (sessions.forms) refuse them.
    response = post_json(operator_client, BASE, {**VALID, "starting_cash": "0"})
    body = assert_error(response, 422, "invalid")
    reasons = {e["field"]: e["reason"] for e in body["errors"]}
    assert set(reasons) == {"starting_cash"}
    assert "0.01" in reasons["starting_cash"]
    assert not TradingSession.objects.exists()


def test_an_unknown_decision_agent_is_422(operator_client, graph):
    response = post_json(operator_client, BASE, {**VALID, "decision_agent": "ghost"})
    body = assert_error(response, 422, "invalid")
    assert body["errors"] == [
        {"field": "decision_agent", "reason": "There is no decision agent with that id."}
    ]
    assert not TradingSession.objects.exists()


def test_an_agent_that_is_not_a_decision_agent_is_refused_as_one(operator_client, graph):
    response = post_json(operator_client, BASE, {**VALID, "decision_agent": "feed"})
    body = assert_error(response, 422, "invalid")
    assert [e["field"] for e in body["errors"]] == ["decision_agent"]


def test_a_symbol_the_agents_do_not_cover_is_422(operator_client, graph):
    response = post_json(operator_client, BASE, {**VALID, "symbols": ["DOGE-USD"]})
    body = assert_error(response, 422, "invalid")
    assert [e["field"] for e in body["errors"]] == ["symbols"]
    assert "DOGE-USD" in body["detail"]


def test_an_id_in_use_is_422(operator_client, ready):
    response = post_json(operator_client, BASE, {**VALID, "session_id": "fresh"})
    body = assert_error(response, 422, "invalid")
    assert [e["field"] for e in body["errors"]] == ["session_id"]
    assert TradingSession.objects.count() == 1


def test_a_body_that_is_not_an_object_is_refused(operator_client, graph):
    response = post_json(operator_client, BASE, ["name"])
    assert_error(response, 422, "invalid")
    assert not TradingSession.objects.exists()


def test_a_malformed_json_body_is_400(operator_client, graph):
    response = operator_client.post(BASE, data='{"name": ', content_type="application/json")
    assert_error(response, 400, "malformed")
    assert not TradingSession.objects.exists()


def test_a_viewer_cannot_create_a_session(viewer_client, graph):
    assert_error(post_json(viewer_client, BASE, VALID), 403, "permission_denied")
    assert not TradingSession.objects.exists()


# --- authentication and permissions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", BASE),
        ("post", BASE),
        ("get", f"{BASE}/runner"),
        ("post", f"{BASE}/runner/start"),
        ("post", f"{BASE}/runner/pause"),
        ("post", f"{BASE}/pause-all"),
        ("post", f"{BASE}/resume-all"),
        ("get", f"{BASE}/runner/trades"),
        ("get", f"{BASE}/runner/equity"),
    ],
)
def test_anonymous_requests_are_401(client, running, method, path):
    before = snapshot()
    assert_error(getattr(client, method)(path), 401, "not_authenticated")
    assert snapshot() == before


@pytest.mark.parametrize(
    "path",
    [BASE, f"{BASE}/runner", f"{BASE}/runner/trades", f"{BASE}/runner/equity", "/api/system/status"],
)
def test_a_viewer_can_read(viewer_client, running, path):
    assert viewer_client.get(path).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE}/fresh/start",
        f"{BASE}/runner/stop",
        f"{BASE}/runner/pause",
        f"{BASE}/sleeper/resume",
        f"{BASE}/pause-all",
        f"{BASE}/resume-all",
    ],
)
def test_a_viewer_cannot_act_and_nothing_changes(viewer_client, running, paused, ready, path):
    # Every action here would succeed for an operator.
    before = snapshot()
    assert_error(viewer_client.post(path), 403, "permission_denied")
    assert snapshot() == before
    assert not control_audit().exists()


def test_a_bearer_token_can_act(client, operator, ready, launched):
    _token, raw = ApiToken.issue(operator)
    response = client.post(f"{BASE}/fresh/start", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200, response.content
    assert TradingSession.objects.get(pk="fresh").desired_state == Desired.RUNNING


# --- unknown ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"{BASE}/ghost"),
        ("post", f"{BASE}/ghost/start"),
        ("post", f"{BASE}/ghost/stop"),
        ("post", f"{BASE}/ghost/pause"),
        ("post", f"{BASE}/ghost/resume"),
        ("get", f"{BASE}/ghost/trades"),
        ("get", f"{BASE}/ghost/equity"),
    ],
)
def test_an_unknown_session_is_404(operator_client, running, method, path):
    body = assert_error(getattr(operator_client, method)(path), 404, "not_found")
    assert "ghost" in body["detail"]


# --- actions ---------------------------------------------------------------------------------


def test_starting_a_ready_session_records_it_and_sends_the_loop_after_commit(
    operator_client, operator, ready, launched, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(f"{BASE}/fresh/start")
    assert response.status_code == 200, response.content
    body = response.json()
    assert SESSION_FIELDS <= set(body)
    assert (body["status"], body["desired_state"]) == ("starting", "running")
    stored = TradingSession.objects.get(pk="fresh")
    assert stored.run_id
    assert launched == [("fresh", stored.run_id, "running")]
    entry = control_audit().get()
    assert (entry.user, entry.session_id) == (operator, "fresh")


def test_stopping_a_running_session_answers_stopping(
    operator_client, running, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(f"{BASE}/runner/stop")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["desired_state"]) == ("stopping", "stopped")
    assert control_audit().filter(session_id="runner").exists()


def test_pausing_a_running_session_asks_it_to_pause(operator_client, running, redis_client):
    response = operator_client.post(f"{BASE}/runner/pause")
    assert response.status_code == 200, response.content
    body = response.json()
    # The loop confirms `paused`; until then the session is still observed running.
    assert (body["status"], body["desired_state"]) == ("running", "paused")
    assert TradingSession.objects.get(pk="runner").desired_state == Desired.PAUSED


def test_resuming_a_paused_session_asks_it_to_run(operator_client, paused):
    response = operator_client.post(f"{BASE}/sleeper/resume")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["desired_state"]) == ("paused", "running")


def test_a_pause_mirrors_the_flags_to_redis_after_commit(
    operator_client, running, redis_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(f"{BASE}/runner/pause")
    assert redis_client.hget(keys.flags("session", "runner"), "desired") == "paused"


@pytest.mark.parametrize(
    ("session", "action", "sentence"),
    [
        ("fresh", "pause", "Session fresh is not running (ready). Only a running session can be paused."),
        ("runner", "resume", "Session runner is already running. Only a paused session can be resumed."),
        ("sleeper", "pause", "Session sleeper is already paused. You can resume or stop it."),
        ("runner", "start", "Session runner is already running. You can pause or stop it."),
        ("sleeper", "start", "Session sleeper is paused, not stopped. You can resume or stop it."),
        ("fresh", "stop", "Session fresh has never been started. You can start it."),
        ("fresh", "resume", "Session fresh is not paused (ready). You can start it."),
    ],
)
def test_refused_actions_are_409_with_the_sentence_and_change_nothing(
    operator_client, running, paused, ready, session, action, sentence
):
    before = snapshot()
    body = assert_error(operator_client.post(f"{BASE}/{session}/{action}"), 409, "invalid_transition")
    assert body["detail"] == sentence
    assert snapshot() == before
    assert not control_audit().exists()


def test_pausing_twice_is_409_the_second_time(operator_client, running):
    assert operator_client.post(f"{BASE}/runner/pause").status_code == 200
    before = snapshot()
    body = assert_error(operator_client.post(f"{BASE}/runner/pause"), 409, "invalid_transition")
    assert body["detail"] == "Session runner is already pausing; it confirms within one tick."
    assert snapshot() == before


def test_starting_while_redis_is_down_is_503_and_changes_nothing(operator_client, ready, settings):
    before = snapshot()
    settings.REDIS_URL = DEAD_REDIS
    body = assert_error(operator_client.post(f"{BASE}/fresh/start"), 503, "redis_unavailable")
    assert "Redis" in body["detail"]
    assert snapshot() == before


# --- pause-all / resume-all --------------------------------------------------------------------


def test_pause_all_pauses_the_running_sessions_and_lists_the_others(operator_client, running, paused, ready):
    response = operator_client.post(f"{BASE}/pause-all")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"changed", "skipped"}
    assert body["changed"] == ["runner"]
    skipped = {s["session_id"]: s["reason"] for s in body["skipped"]}
    assert set(skipped) == {"fresh", "sleeper"}
    assert "already paused" in skipped["sleeper"]
    assert "not running" in skipped["fresh"]
    assert TradingSession.objects.get(pk="runner").desired_state == Desired.PAUSED


def test_resume_all_resumes_the_paused_sessions_and_lists_the_others(operator_client, running, paused, ready):
    body = operator_client.post(f"{BASE}/resume-all").json()
    assert body["changed"] == ["sleeper"]
    assert sorted(s["session_id"] for s in body["skipped"]) == ["fresh", "runner"]
    assert all(s["reason"] for s in body["skipped"])
    assert TradingSession.objects.get(pk="sleeper").desired_state == Desired.RUNNING


def test_pause_all_with_no_session_changes_nothing(operator_client, graph):
    assert operator_client.post(f"{BASE}/pause-all").json() == {"changed": [], "skipped": []}


def test_a_session_called_pause_all_can_still_be_read(operator_client, make_session):
    make_session("pause-all")
    response = operator_client.get(f"{BASE}/pause-all")
    assert response.status_code == 200, response.content
    assert response.json()["session_id"] == "pause-all"
    assert operator_client.get(f"{BASE}/pause-all/trades").json()["count"] == 0


# --- list and detail ---------------------------------------------------------------------------


@pytest.fixture
def traded(make_session):
    """Three fills by hand at 10 bps fee and 5 bps slippage (numbers in the test below)."""
    session = make_session("trader", status=Status.RUNNING, desired_state=Desired.RUNNING, run_id="r9")
    start = timezone.now() - timedelta(minutes=10)
    trade("trader", "buy", "0.1", "50000", ts=start)
    trade("trader", "buy", "1", "3000", symbol="ETH-USD", ts=start + timedelta(minutes=1))
    trade("trader", "sell", "0.05", "52000", ts=start + timedelta(minutes=2))
    broker.place_order("trader", "ETH-USD", "sell", D("0.5"), "limit", D("4000"))  # stays open
    return session


def test_the_detail_numbers_reconcile_with_the_fills(viewer_client, traded):
    body = viewer_client.get(f"{BASE}/trader").json()
    # buy 0.1 BTC at 50000 -> 50025 (5 bps), notional 5002.50, fee 5.0025
    # buy 1 ETH at 3000 -> 3001.50, fee 3.0015
    # sell 0.05 BTC at 52000 -> 51974, notional 2598.70, fee 2.5987
    # cash = 10000 - 5007.5025 - 3004.5015 + 2598.70 - 2.5987 = 4584.0973
    assert body["cash"] == "4584.0973"
    # equity = cash + 0.05 x 52000 (BTC's last mark) + 1 x 3000 (ETH's last mark)
    assert body["equity"] == "10184.0973"
    assert body["pnl"] == "184.0973"
    assert body["pnl_pct"] == pytest.approx(1.840973)
    assert body["trades"] == 3

    positions = {p["symbol"]: p for p in body["positions"]}
    assert positions["BTC-USD"]["quantity"] == "0.05"
    assert positions["BTC-USD"]["cost_basis"] == "2503.75125"  # half of 5007.5025
    assert positions["BTC-USD"]["market_value"] == "2600.00"
    assert positions["ETH-USD"]["quantity"] == "1"
    assert positions["ETH-USD"]["unrealized_pnl"] == "-4.5015"

    metrics = body["metrics"]
    assert metrics["fees"] == "10.6027"
    # The sell got 2598.70 - 2.5987 for a basis of 2503.75125.
    assert metrics["realized_pnl"] == "92.35005"
    assert metrics["unrealized_pnl"] == "91.74725"
    assert D(metrics["realized_pnl"]) + D(metrics["unrealized_pnl"]) == D(body["pnl"])
    assert D(body["cash"]) + D(metrics["positions_value"]) == D(body["equity"])
    assert metrics["win_rate"] == 1.0
    assert isinstance(metrics["exposure"], float) and isinstance(metrics["max_drawdown"], float)
    assert metrics["trades"] == 3

    recent = body["recent_trades"]
    assert [(f["side"], f["symbol"]) for f in recent] == [
        ("sell", "BTC-USD"),
        ("buy", "ETH-USD"),
        ("buy", "BTC-USD"),
    ]
    sell = recent[0]
    assert FILL_FIELDS <= set(sell)
    assert (sell["quantity"], sell["price"], sell["fee"], sell["realized_pnl"]) == (
        "0.05",
        "51974.00",
        "2.5987",
        "92.35005",
    )
    assert sell["slippage"] == "1.30"  # 0.05 x (52000 - 51974)
    assert recent[1]["realized_pnl"] is None  # buys realize nothing

    assert [(o["symbol"], o["side"], o["order_type"], o["limit_price"]) for o in body["open_orders"]] == [
        ("ETH-USD", "sell", "limit", "4000.00")
    ]


def test_the_detail_agrees_with_session_metrics_and_the_list(viewer_client, traded):
    detail = viewer_client.get(f"{BASE}/trader").json()
    listed = {s["session_id"]: s for s in viewer_client.get(BASE).json()}["trader"]
    expected = session_metrics("trader")
    for key in ("cash", "equity", "pnl"):
        assert D(detail[key]) == D(listed[key]) == expected[key]
    assert detail["pnl_pct"] == listed["pnl_pct"] == float(expected["pnl_pct"])
    assert detail["trades"] == listed["trades"] == expected["trades"]
    assert {k: v for k, v in detail.items() if k in listed} == listed


def test_the_list_has_every_session_in_id_order_with_its_performance(viewer_client, traded, ready, running):
    body = viewer_client.get(BASE).json()
    assert [s["session_id"] for s in body] == ["fresh", "runner", "trader"]
    assert all(SESSION_FIELDS <= set(s) for s in body)
    assert body[0]["equity"] == "10000.00" and body[0]["trades"] == 0
    assert body[2]["trades"] == 3


def test_the_list_reads_a_fixed_number_of_queries_whatever_the_number_of_sessions(make_session):
    def queries_for_list():
        with CaptureQueriesContext(connection) as captured:
            presenters.session_dicts()
        return len(captured)

    first = make_session("s0", status=Status.RUNNING, desired_state=Desired.RUNNING)
    trade(first.pk, "buy", "0.01", "50000")
    few = queries_for_list()
    for i in range(1, 8):
        make_session(f"s{i}", status=Status.RUNNING, desired_state=Desired.RUNNING)
        trade(f"s{i}", "buy", "0.01", "50000")
        trade(f"s{i}", "buy", "1", "3000", symbol="ETH-USD")
    assert queries_for_list() == few


def test_the_list_values_every_session_like_session_metrics_does(make_session):
    """The list's own arithmetic and session_metrics give the same numbers, session by session."""
    for i, (btc, eth) in enumerate([("0.1", "2"), ("0.333", "0"), ("0", "0.75")]):
        make_session(
            f"m{i}", status=Status.RUNNING, desired_state=Desired.RUNNING, starting_cash=D("99999.99")
        )
        if btc != "0":
            trade(f"m{i}", "buy", btc, "61234.5678")
        if eth != "0":
            trade(f"m{i}", "buy", eth, "3210.123", symbol="ETH-USD")
    broker.mark_to_market("m0", {"BTC-USD": "65000.01"})
    for listed in presenters.session_dicts():
        expected = session_metrics(listed["session_id"])
        assert D(listed["equity"]) == expected["equity"]
        assert D(listed["cash"]) == expected["cash"]
        assert D(listed["pnl"]) == expected["pnl"]
        assert listed["pnl_pct"] == float(expected["pnl_pct"])


# --- trades ----------------------------------------------------------------------------------


@pytest.fixture
def five_fills(running):
    start = timezone.now() - timedelta(hours=1)
    fills = []
    for i in range(5):
        side = "buy" if i % 2 == 0 else "sell"
        fills.append(trade("runner", side, "0.01", str(50000 + i), ts=start + timedelta(minutes=i)))
    return fills  # oldest first


def test_trades_are_newest_first_with_the_total_count(viewer_client, five_fills):
    body = viewer_client.get(f"{BASE}/runner/trades").json()
    assert body["count"] == 5
    assert [f["fill_id"] for f in body["items"]] == [f.fill_id for f in reversed(five_fills)]
    newest = body["items"][0]
    assert FILL_FIELDS | {"realized_pnl"} <= set(newest)
    stored = Fill.objects.get(pk=newest["fill_id"])
    assert D(newest["price"]) == stored.price and D(newest["fee"]) == stored.fee
    assert newest["quantity"] == "0.01"
    assert newest["order_id"] == stored.order_id


def test_trades_are_paginated_with_limit_and_offset(viewer_client, five_fills):
    newest_first = [f.fill_id for f in reversed(five_fills)]
    body = viewer_client.get(f"{BASE}/runner/trades?limit=2&offset=1").json()
    assert body["count"] == 5
    assert [f["fill_id"] for f in body["items"]] == newest_first[1:3]
    body = viewer_client.get(f"{BASE}/runner/trades?limit=2&offset=4").json()
    assert [f["fill_id"] for f in body["items"]] == newest_first[4:]
    body = viewer_client.get(f"{BASE}/runner/trades?limit=1000&offset=5").json()
    assert (body["count"], body["items"]) == (5, [])


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=1001", "limit"), ("offset=-1", "offset"), ("limit=-3", "limit")],
)
def test_trades_out_of_range_are_422_with_a_sentence(viewer_client, running, query, field):
    body = assert_error(viewer_client.get(f"{BASE}/runner/trades?{query}"), 422)
    assert [e["field"] for e in body["errors"]] == [field]
    assert field in body["detail"]


def test_a_limit_that_is_not_a_number_is_refused(viewer_client, running):
    body = assert_error(viewer_client.get(f"{BASE}/runner/trades?limit=lots"), 422, "invalid")
    assert "limit" in body["detail"]


# --- equity -----------------------------------------------------------------------------------


def test_equity_points_are_oldest_first(viewer_client, running):
    start = timezone.now() - timedelta(hours=1)
    trade("runner", "buy", "0.1", "50000", ts=start)
    for i, mark in enumerate(["50000", "51000", "49000.5"]):
        broker.mark_to_market("runner", {"BTC-USD": mark}, ts=start + timedelta(minutes=i + 1))
    body = viewer_client.get(f"{BASE}/runner/equity").json()
    assert body["truncated"] is False
    stored = list(EquityPoint.objects.filter(session_id="runner").order_by("ts"))
    assert [D(p["equity"]) for p in body["points"]] == [p.equity for p in stored]
    assert [p["ts"] for p in body["points"]] == sorted(p["ts"] for p in body["points"])
    # 0.1 BTC bought for 5007.5025 (fee included), valued at 51000.
    assert body["points"][1]["equity"] == "10092.4975"


def test_a_long_equity_curve_is_cut_to_the_newest_points(viewer_client, running, monkeypatch):
    monkeypatch.setattr(presenters, "MAX_EQUITY_POINTS", 3)
    start = timezone.now() - timedelta(hours=1)
    for i in range(5):
        EquityPoint.objects.create(
            session_id="runner", ts=start + timedelta(minutes=i), equity=D(10000 + i), cash=D(10000)
        )
    body = viewer_client.get(f"{BASE}/runner/equity").json()
    assert body["truncated"] is True
    assert [p["equity"] for p in body["points"]] == ["10002.00", "10003.00", "10004.00"]


def test_a_session_without_points_has_an_empty_curve(viewer_client, ready):
    assert viewer_client.get(f"{BASE}/fresh/equity").json()["points"] == []


# --- system status ----------------------------------------------------------------------------


def test_system_status_counts_the_sessions_by_status_and_the_fills_of_the_last_day(
    viewer_client, make_session, running, paused, ready
):
    make_session("broken", status=Status.ERROR, error_message="boom")
    make_session("done", status=Status.STOPPED, desired_state=Desired.STOPPED)
    trade("runner", "buy", "0.01", "50000")
    trade("runner", "buy", "0.01", "50000", ts=timezone.now() - timedelta(hours=1))
    trade("runner", "buy", "0.01", "50000", ts=timezone.now() - timedelta(days=2))
    body = viewer_client.get("/api/system/status").json()
    sessions = body["sessions"]
    assert {k: sessions[k] for k in ("total", "running", "paused", "stopped", "error", "ready")} == {
        "total": 5,
        "running": 1,
        "paused": 1,
        "stopped": 1,
        "error": 1,
        "ready": 1,
    }
    assert sessions["starting"] == sessions["stopping"] == 0
    assert body["recent_trades"] == 2


# --- schema ------------------------------------------------------------------------------------


def test_the_openapi_schema_lists_the_session_paths(viewer_client):
    paths = viewer_client.get("/api/openapi.json").json()["paths"]
    assert {
        BASE,
        f"{BASE}/{{session_id}}",
        f"{BASE}/{{session_id}}/start",
        f"{BASE}/{{session_id}}/stop",
        f"{BASE}/{{session_id}}/pause",
        f"{BASE}/{{session_id}}/resume",
        f"{BASE}/pause-all",
        f"{BASE}/resume-all",
        f"{BASE}/{{session_id}}/trades",
        f"{BASE}/{{session_id}}/equity",
    } <= set(paths)
    # GET is a session that was called pause-all before the id was reserved.
    assert set(paths[f"{BASE}/pause-all"]) == {"get", "post"}

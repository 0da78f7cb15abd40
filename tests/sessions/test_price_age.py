"""Stale prices (sessions/freshness.py): a session's `max_price_age_seconds`, refused at
every entry when it is not whole seconds in 1..86400 (null is automatic); the loop places
no order on an older price and says so once per spell; positions show their mark's age."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from agents.models import LogEntry
from agents.runtime.bus import InputMessage
from agents.states import Desired, Status
from control import services
from control.errors import InvalidInput
from sessions import broker, freshness
from sessions.forms import SessionCreateForm
from sessions.models import Position, TradingSession
from sessions.runtime import Directive, SessionLoop

D = Decimal
pytestmark = pytest.mark.django_db
SESSIONS = "/api/paper-trading/sessions"
FIELD = "max_price_age_seconds"

# Not a whole number of seconds in 1..86400, in every spelling that int() or a lax
# parser would take.
BAD_VALUES = [
    True,
    False,
    "60",
    "٦٠",  # Arabic-Indic
    "６０",  # full-width
    "६०",  # Devanagari
    "1_000",
    "1e3",
    0,
    -1,
    -60,
    86_401,
    10**30,
    60.5,
    float("inf"),
    [60],
    {"seconds": 60},
]
BAD_TYPED = ["٦٠", "６０", "६०", "1_000", "1e3", "0", "-1", "86401", "9" * 40, "60.5", "true", "sixty", "1 0"]


@pytest.fixture
def graph(make_agent):
    feed = make_agent("feed", symbols=["BTC-USD"])
    execution = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.set([feed])
    decision = make_agent("decider", kind="decision", role="decision", symbols=["BTC-USD"], config={})
    return {"feed": feed, "execution": execution, "decision": decision}


def body(**extra) -> dict:
    return {
        "name": "Aged",
        "symbols": ["BTC-USD"],
        "decision_agent": "decider",
        "starting_cash": "1000.00",
        **extra,
    }


def post(client, data: dict):
    return client.post(SESSIONS, data=json.dumps(data), content_type="application/json")


# --- every entry ------------------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_the_api_refuses_a_price_age_that_is_not_whole_seconds_in_range(graph, operator_client, value):
    if value == float("inf"):
        raw = json.dumps(body()).replace("}", ', "max_price_age_seconds": 1e400}')
        response = operator_client.post(SESSIONS, data=raw, content_type="application/json")
        assert response.status_code == 400  # not strict JSON
    else:
        response = post(operator_client, body(**{FIELD: value}))
        assert response.status_code == 422, response.content
        errors = json.loads(response.content)["errors"]
        assert [e["field"] for e in errors] == [FIELD]
    assert not TradingSession.objects.exists()


@pytest.mark.parametrize(
    ("value", "stored"), [(None, None), (1, 1), (90, 90), (86_400, 86_400), (120.0, 120)]
)
def test_the_api_takes_null_as_automatic_and_whole_seconds_in_range(graph, operator_client, value, stored):
    response = post(operator_client, body(**{FIELD: value}))
    assert response.status_code == 201, response.content
    assert json.loads(response.content)[FIELD] == stored
    assert TradingSession.objects.get().max_price_age_seconds == stored


def test_left_out_it_is_automatic(graph, operator_client):
    response = post(operator_client, body())
    assert response.status_code == 201 and json.loads(response.content)[FIELD] is None


@pytest.mark.parametrize("typed", BAD_TYPED)
def test_the_page_form_refuses_what_a_person_may_type_wrong(graph, typed):
    form = SessionCreateForm(data={**body(symbols="BTC-USD"), FIELD: typed})
    assert not form.is_valid()
    assert list(form.errors) == [FIELD]
    assert "whole number of seconds from 1 to 86,400" in form.errors[FIELD][0]


@pytest.mark.parametrize(("typed", "stored"), [("", None), ("  ", None), ("120", 120), (" 45 ", 45)])
def test_the_page_form_takes_blank_as_automatic(graph, typed, stored):
    form = SessionCreateForm(data={**body(symbols="BTC-USD"), FIELD: typed})
    assert form.is_valid(), form.errors
    assert form.cleaned_data[FIELD] == stored


def make_session(graph, **fields) -> TradingSession:
    return TradingSession.objects.create(
        session_id="aged",
        name="Aged",
        symbols=["BTC-USD"],
        decision_agent=graph["decision"],
        execution_agent=graph["execution"],
        starting_cash=D("10000"),
        max_position_weight=D("0.5"),
        **fields,
    )


@pytest.mark.parametrize("value", [v for v in BAD_VALUES if v != float("inf")], ids=repr)
def test_the_edit_service_refuses_it_and_changes_nothing(graph, value):
    session = make_session(graph, max_price_age_seconds=300)
    with pytest.raises(InvalidInput) as caught:
        services.update_session(session.pk, {FIELD: value})
    assert caught.value.errors[0]["field"] == FIELD
    assert TradingSession.objects.get(pk=session.pk).max_price_age_seconds == 300


def test_the_edit_service_takes_null_back_to_automatic(graph):
    session = make_session(graph, max_price_age_seconds=300)
    assert services.update_session(session.pk, {FIELD: None}).changed == [FIELD]
    assert TradingSession.objects.get(pk=session.pk).max_price_age_seconds is None
    services.update_session(session.pk, {FIELD: 45})
    assert TradingSession.objects.get(pk=session.pk).max_price_age_seconds == 45


@pytest.mark.parametrize("typed", BAD_TYPED)
def test_the_admin_refuses_it_with_a_sentence(admin_client, graph, typed):
    from tests.sessions.test_admin import form_data

    session = make_session(graph, max_price_age_seconds=300)
    response = admin_client.post(
        f"/admin/trading_sessions/tradingsession/{session.pk}/change/", form_data(session, **{FIELD: typed})
    )
    assert response.status_code == 200
    assert "whole number of seconds from 1 to 86,400" in response.content.decode()
    assert TradingSession.objects.get(pk=session.pk).max_price_age_seconds == 300


def test_the_admin_saves_blank_as_automatic(admin_client, graph):
    from tests.sessions.test_admin import form_data

    session = make_session(graph, max_price_age_seconds=300)
    response = admin_client.post(
        f"/admin/trading_sessions/tradingsession/{session.pk}/change/", form_data(session, **{FIELD: ""})
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert TradingSession.objects.get(pk=session.pk).max_price_age_seconds is None


def test_the_model_refuses_a_boolean_that_int_would_read_as_1(graph):
    session = make_session(graph)
    session.max_price_age_seconds = True
    with pytest.raises(ValidationError) as caught:
        session.full_clean()
    assert FIELD in caught.value.message_dict


# --- the automatic limit -----------------------------------------------------------------


def test_the_automatic_limit_follows_the_feeds_bar_interval():
    assert freshness.automatic_limit([]) == 60
    assert freshness.automatic_limit([freshness.feed_interval_seconds({"tick_seconds": 1})]) == 60
    exchange = {"source": "exchange", "exchange": "binance", "timeframe": "5m"}
    assert freshness.feed_interval_seconds(exchange) == 300
    assert freshness.automatic_limit([1.0, freshness.feed_interval_seconds(exchange)]) == 630
    assert freshness.feed_interval_seconds({"source": "simulated", "tick_seconds": 60}) == 60


def test_a_live_bar_is_as_old_as_its_exchange_timestamp_and_a_replay_as_its_publication():
    now_ms = int(time.time() * 1000)
    hour_ago = now_ms - 3_600_000
    live = {"type": "bar", "ts": hour_ago, "source": "exchange:binance"}
    assert freshness.observed_at(live, f"{now_ms}-0") == pytest.approx(hour_ago / 1000)
    iso = datetime.fromtimestamp(hour_ago / 1000, UTC).isoformat()
    assert freshness.observed_at({**live, "ts": iso}, f"{now_ms}-0") == pytest.approx(hour_ago / 1000)
    # A candle's close is the price at its end: ts (its open) plus its length.
    candle = {**live, "ts": iso, "interval_seconds": 60}
    assert freshness.observed_at(candle, f"{now_ms}-0") == pytest.approx(hour_ago / 1000 + 60)
    replay = {"type": "bar", "ts": "2021-01-01T00:00:00+00:00", "source": "csv:btc.csv"}
    assert freshness.observed_at(replay, f"{now_ms}-0") == pytest.approx(now_ms / 1000)
    # A clock ahead of ours never makes a bar younger than its publication.
    ahead = {**live, "ts": now_ms + 600_000}
    assert freshness.observed_at(ahead, f"{now_ms}-0") == pytest.approx(now_ms / 1000)


# --- the loop ----------------------------------------------------------------------------


def loop_for(session: TradingSession, monkeypatch) -> tuple[SessionLoop, list]:
    TradingSession.objects.filter(pk=session.pk).update(
        run_id="run-1", desired_state=Desired.RUNNING, status=Status.RUNNING
    )
    loop = SessionLoop(session.pk, "run-1")
    sent: list = []
    monkeypatch.setattr(loop, "_send", sent.append)
    loop.symbols = ["BTC-USD"]
    loop._decision_id = "decider"
    loop._execution_id = "broker"
    return loop, sent


def bar(close: str, age_seconds: float, source: str = "simulated") -> InputMessage:
    published_ms = int((time.time() - age_seconds) * 1000)
    data = {"type": "bar", "symbol": "BTC-USD", "close": close, "ts": published_ms, "source": source}
    return InputMessage(producer="feed", id=f"{published_ms}-0", data=data)


def buy() -> Directive:
    return Directive(ref="decider:1-0", action="buy", target_weight=D("0.5"), reason="buy: up")


def tick(loop: SessionLoop) -> int:
    loop._watch_freshness()
    return loop._trade()


def stale_lines(session_id: str) -> list[str]:
    return list(
        LogEntry.objects.filter(session_id=session_id, message__startswith="stale prices").values_list(
            "message", flat=True
        )
    )


def test_no_order_on_a_stale_price_and_one_line_per_spell(graph, monkeypatch):
    session = make_session(graph)  # automatic: the feed ticks every 0.2 s -> 60 s
    loop, sent = loop_for(session, monkeypatch)
    loop._take_in([bar("70000", age_seconds=300)])
    loop.pending["BTC-USD"] = buy()
    assert tick(loop) == 0 and sent == []
    assert "BTC-USD" not in loop.pending  # refused, not kept for when prices return
    for _ in range(5):  # the spell goes on: no new line
        loop.pending["BTC-USD"] = buy()
        assert tick(loop) == 0
    lines = stale_lines(session.pk)
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "stale prices: no orders on BTC-USD (last price 5 min old); the automatic limit is 60 s."
    )

    loop._take_in([bar("70100", age_seconds=1)])
    loop.pending["BTC-USD"] = buy()
    assert tick(loop) == 1 and len(sent) == 1
    fresh = LogEntry.objects.filter(session_id=session.pk, message__startswith="prices fresh again")
    assert [e.message for e in fresh] == ["prices fresh again for BTC-USD: trading on them resumes"]

    loop._take_in([bar("70200", age_seconds=600)])  # a second spell: a second line
    tick(loop)
    tick(loop)
    assert len(stale_lines(session.pk)) == 2


def test_the_sessions_own_limit_applies(graph, monkeypatch):
    session = make_session(graph, max_price_age_seconds=600)
    loop, sent = loop_for(session, monkeypatch)
    loop._take_in([bar("70000", age_seconds=300)])
    loop.pending["BTC-USD"] = buy()
    assert tick(loop) == 1 and len(sent) == 1
    assert stale_lines(session.pk) == []
    TradingSession.objects.filter(pk=session.pk).update(max_price_age_seconds=120)
    loop._next_limit_refresh = 0.0  # a person's edit, read at the next refresh
    tick(loop)
    assert "the session's limit is 120 s" in stale_lines(session.pk)[0]


def test_backfilled_history_published_now_is_still_old(graph, monkeypatch):
    """A live bar published a moment ago but stamped an hour ago by the exchange is stale."""
    session = make_session(graph)
    loop, sent = loop_for(session, monkeypatch)
    published_ms = int(time.time() * 1000)
    data = {
        "type": "bar",
        "symbol": "BTC-USD",
        "close": "70000",
        "ts": published_ms - 3_600_000,
        "source": "exchange:binance",
    }
    loop._take_in([InputMessage("feed", f"{published_ms}-0", data)])
    loop.pending["BTC-USD"] = buy()
    assert tick(loop) == 0 and sent == []
    assert "60 min old" in stale_lines(session.pk)[0]


# --- the mark's age ------------------------------------------------------------------------


def holding(graph) -> TradingSession:
    session = make_session(graph, desired_state=Desired.RUNNING, status=Status.RUNNING)
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("0.01"))
    assert broker.fill_market_order(order.pk, D("70000")).filled
    return session


def test_a_position_is_marked_at_the_last_price_with_its_age(graph, monkeypatch, operator_client):
    session = holding(graph)
    loop, _sent = loop_for(session, monkeypatch)
    loop._take_in([bar("69000", age_seconds=180)])
    loop._mark(force=True)
    position = Position.objects.get(session_id=session.pk, symbol="BTC-USD")
    assert position.last_mark == D("69000")
    assert abs((datetime.now(UTC) - position.last_mark_at).total_seconds() - 180) < 5

    detail = json.loads(operator_client.get(f"{SESSIONS}/{session.pk}").content)
    (shown,) = detail["positions"]
    assert shown["last_mark"] == "69000.00"
    assert 175 <= shown["mark_age_seconds"] <= 190
    assert shown["last_mark_at"].startswith(position.last_mark_at.strftime("%Y-%m-%dT%H:%M"))

    page = operator_client.get(f"/sessions/{session.pk}/").content.decode()
    assert "marked <time data-ago" in page and "3 min ago</time>" in page
    assert "<dd data-price-age>automatic</dd>" in page
    TradingSession.objects.filter(pk=session.pk).update(max_price_age_seconds=90)
    page = operator_client.get(f"/sessions/{session.pk}/").content.decode()
    assert "<dd data-price-age>90 s</dd>" in page

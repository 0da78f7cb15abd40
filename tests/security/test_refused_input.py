"""Input that cannot be stored or shown, or lies outside the domain, is refused at every
edge with a sentence, and changes nothing: the admin's forms, the session create API and
form, the config API, and numbers in query strings.

Each class has several members: text that cannot be encoded (lone surrogates, which a
JSON "\\ud800" escape produces), control characters (NUL, ESC, DEL, C1), numbers past the
domain's bounds (1e308, infinities, NaN, past a 64-bit column) and look-alike digits in
query strings ("²", full-width, Arabic-Indic).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.kinds import ConfigError, get_kind, kind_names, validate_config
from agents.models import Agent
from agents.validators import MAX_PRICE, json_problem, name_problem, text_problem
from control.models import ApiToken
from sessions import money
from sessions.models import TradingSession
from tests.security.routes import AGENT_ID, SESSION_ID

pytestmark = pytest.mark.django_db

UNENCODABLE = ["\ud800", "x\udfff", "\udc80abc"]
CONTROL = ["x\x00y", "\x1b[31mred", "a\x7f", "a\x85b", "line\nbreak", "tab\there"]
# Text direction controls reorder what is shown around them (a name read backwards).
BIDI = ["\u202eevil", "Safe \u202eyub lla", "a\u202ab", "\u2066x\u2069", "x\u200f", "\u061cy", "\u200eBTC"]
BAD_TEXT = UNENCODABLE + CONTROL + BIDI
# Names with nothing to see: spaces, zero-width and format characters, combining marks
# alone, characters drawn blank.
INVISIBLE = [
    "\u200b\u200b",
    "\u200d",
    "\ufeff",
    "\u00a0\u3000",
    "\u0301\u0301",
    "\u3164",
    "\u2800",
    "\u2060 \u180e",
]
# Odd but good: a person may type these, and the pages show them.
GOOD_TEXT = [
    "a\u200db",
    "\u05e9\u05dc\u05d5\u05dd",
    "\u0645\u0631\u062d\u0628\u0627",
    "e\u0301",
    "\U0001f680 Rocket",
    "\uff11\uff12",
    "Zürich €",
]


@pytest.fixture
def bearer(operator) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(operator)[1]}"}


@pytest.fixture
def superuser_client(client, admin_user):
    client.force_login(admin_user)
    return client


def post_json(client, path: str, text: str, headers: dict[str, str]):
    """`text` is sent as written: json.dumps would escape a lone surrogate the same way."""
    return client.post(path, text, content_type="application/json", **headers)


def assert_refused_json(response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:400])
    body = response.json()
    assert body["detail"] and body["code"], body
    response.content.decode("utf-8")  # the answer itself is sendable
    return body


def snapshot() -> list:
    return list(Agent.objects.order_by("pk").values()) + list(TradingSession.objects.order_by("pk").values())


# --- the rule itself ------------------------------------------------------------------


@pytest.mark.parametrize("text", BAD_TEXT)
def test_text_that_cannot_be_stored_or_shown_is_named(text):
    assert text_problem(text)
    assert json_problem({"name": text}) and json_problem({text: 1}) and json_problem([[{"k": [text]}]])


@pytest.mark.parametrize("text", GOOD_TEXT)
def test_odd_but_good_text_is_accepted(text):
    assert text_problem(text) is None
    assert name_problem(text) is None


@pytest.mark.parametrize("text", INVISIBLE, ids=ascii)
def test_a_name_with_nothing_visible_is_refused(text):
    assert "no visible character" in name_problem(text)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_text_accepted_is_sendable_and_free_of_controls(text):
    if text_problem(text) is None:
        text.encode("utf-8")
        assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in text)


# --- the config API and every kind's schema ----------------------------------------------

HUGE = [1e308, float("inf"), float("-inf"), float("nan")]


@pytest.mark.parametrize("kind", kind_names())
def test_every_number_of_every_kind_is_bounded(kind):
    """No number field of a config takes 1e308 or a non-finite value (the technical agent
    died of OverflowError on initial_prices 1e308)."""
    fields = get_kind(kind).Config.model_fields
    numbers = [name for name, f in fields.items() if f.annotation in (float, int, float | None, int | None)]
    assert "tick_seconds" in numbers
    for name in numbers:
        for value in [*HUGE, 10**30]:
            with pytest.raises(ConfigError):
                validate_config(kind, {name: value})


def test_the_price_bound_of_configs_is_the_ledgers():
    assert Decimal(MAX_PRICE) == money.MAX_PRICE + money.PRICE_STEP
    assert validate_config("market_data", {"initial_prices": {"BTC-USD": float(money.MAX_PRICE)}})


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("market_data", {"initial_prices": {"BTC-USD": 1e308}}),
        ("market_data", {"initial_prices": {"BTC-USD": MAX_PRICE}}),
        ("market_data", {"initial_prices": {"BTC-USD": MAX_PRICE * 2}}),
        ("market_data", {"seed": 10**30}),
        ("decision", {"weights": {"feed": 1e308}}),
        ("decision", {"default_weight": 1e6}),
        ("technical", {"weights": {"rsi": 1e308}}),
        ("sentiment", {"keywords": {"BTC-USD": ["x" * 5000]}}),
    ],
)
def test_numbers_past_the_domain_are_refused_in_configs(kind, config):
    with pytest.raises(ConfigError):
        validate_config(kind, config)


@pytest.mark.parametrize(
    "body",
    [
        '{"initial_prices": {"BTC-USD": 1e308}}',
        '{"initial_prices": {"BTC-USD": Infinity}}',
        '{"tick_seconds": NaN}',
        '{"seed": 1000000000000000000000000000000}',
        '{"initial_prices": {"\\ud800": 1}}',  # a config key that cannot be encoded
        '{"\\ud800": 1}',  # an unknown key that cannot be encoded
        '{"csv_path": "a\\u0000b", "source": "csv"}',
        '{"source": "\\udfff"}',
        '{"initial_prices": {"\\u202eBTC": 1}}',  # text direction controls, in keys and text
        '{"initial_prices": {"BTC\\u2066": 1}}',
        '{"csv_path": "a\\u200fb", "source": "csv"}',
        '{"source": "\\u061csimulated"}',
    ],
)
def test_the_config_api_refuses_unstorable_configs(graph, client, bearer, body):
    before = snapshot()
    answer = assert_refused_json(post_json(client, f"/api/agents/{AGENT_ID}/config", body, bearer))
    assert ".." not in answer["detail"] and "Value error" not in json.dumps(answer), answer
    assert snapshot() == before


def test_config_errors_are_sentences(graph, client, bearer):
    """No pydantic "Value error, " prefix and no doubled full stop."""
    response = post_json(client, f"/api/agents/{AGENT_ID}/config", '{"source": "\\ud800"}', bearer)
    body = response.json()
    assert response.status_code == 422 and body["detail"].endswith("UTF-8."), body
    assert "Value error" not in json.dumps(body) and ".." not in body["detail"], body
    with pytest.raises(ConfigError) as refused:
        validate_config("market_data", {"source": "csv"}, strict=True)  # a validator's ValueError
    assert refused.value.errors == [("csv_path", "required when source is 'csv'")]


@pytest.mark.parametrize("depth", [41, 1_000, 30_000])  # under the body size limit
@pytest.mark.parametrize("path", [f"/api/agents/{AGENT_ID}/config", "/api/paper-trading/sessions"])
def test_a_deeply_nested_body_is_refused_with_a_sentence(graph, client, bearer, path, depth):
    before = snapshot()
    answer = assert_refused_json(post_json(client, path, "[" * depth + "]" * depth, bearer))
    assert "nested more than 40 levels" in answer["detail"] and "recursion" not in answer["detail"], answer
    answer = assert_refused_json(post_json(client, path, '{"a": ' * depth + "1" + "}" * depth, bearer))
    assert "nested more than 40 levels" in answer["detail"], answer
    assert snapshot() == before


@pytest.mark.parametrize(
    "body",
    ['{"weights": {"\\ud800": 1}}', '{"weights": {"feed": 1e308}}', '{"weights": {"a\\u001b": 1}}'],
)
def test_the_config_api_refuses_unstorable_decision_weights(graph, client, bearer, body):
    before = snapshot()
    assert_refused_json(post_json(client, "/api/agents/decider/config", body, bearer))
    assert snapshot() == before


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(st.text(max_size=8), max_size=3),
    price=st.floats(allow_nan=True, allow_infinity=True),
)
def test_a_config_accepted_is_storable_and_sendable(keys, price):
    """Whatever a kind's schema accepts can be stored as JSON (no NaN, no infinity) and
    sent as UTF-8."""
    try:
        config = validate_config("market_data", {"initial_prices": dict.fromkeys(keys, price)})
    except ConfigError as exc:
        str(exc).encode("utf-8")  # the refusal itself is sendable
        return
    text = json.dumps(config.model_dump(mode="json"), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    assert all(0 < p <= MAX_PRICE and math.isfinite(p) for p in config.initial_prices.values())


@pytest.mark.parametrize(
    "knobs",
    [
        {"annual_volatility": 0.01, "drift": 10},  # e^10 a bar: math.exp overflowed at bar 69
        {"annual_volatility": 20, "high_vol_multiplier": 100, "drift": 10},
    ],
)
@pytest.mark.parametrize("start", [65_000.0, 1e308])  # the second: a config stored before the bounds
def test_a_simulated_market_on_the_wildest_valid_knobs_stays_in_the_domain(knobs, start):
    from agents.kinds.simulated_market import MarketParams, SymbolPath

    # Year-long bars: longer than the longest a config allows (5 ticks of 60 s at 100,000x).
    path = SymbolPath("BTC-USD", start, seed=1, params=MarketParams(**knobs))
    for _ in range(100):
        bar = path.next_bar(31_536_000)
        assert 0 < bar["low"] <= bar["close"] <= bar["high"] < MAX_PRICE


@pytest.mark.parametrize("price", ["1e308", "1e7", "9e99"])
def test_a_csv_bar_past_the_domain_is_a_bad_row(price):
    from agents.kinds.csv_replay import BadRow, parse_bar

    row = {
        "timestamp": "2026-01-01T00:00:00Z",
        "open": "1",
        "high": price,
        "low": "1",
        "close": "1",
        "volume": "1",
    }
    with pytest.raises(BadRow, match="below"):
        parse_bar(row)


# --- the session create API and the page's form -----------------------------------------


def session_body(**fields) -> dict:
    return {
        "name": "New",
        "symbols": ["BTC-USD"],
        "decision_agent": "decider",
        "execution_agent": "broker",
        "starting_cash": "1000",
        **fields,
    }


SESSION_REFUSALS = [
    *({"name": text} for text in BAD_TEXT + INVISIBLE),
    *({"symbols": [text]} for text in BAD_TEXT),
    {"decision_agent": "\ud800"},
    {"session_id": "a\ud800"},
    {"\ud800": 1},
    {"starting_cash": "1e308"},
    {"starting_cash": "Infinity"},
    {"starting_cash": "NaN"},
    {"max_orders_per_minute": 601},
    {"max_orders_per_minute": 10**30},
    {"slippage_size_reference": "1e22"},
    {"max_position_weight": "1.5"},
    {"fee_bps": "1e9"},
]


@pytest.mark.parametrize("fields", SESSION_REFUSALS, ids=lambda f: ascii(f)[:40])
def test_the_session_create_api_refuses_bad_input(graph, client, bearer, fields):
    before = snapshot()
    # ensure_ascii: a lone surrogate travels as the escape "\ud800", as a client would send it.
    body = json.dumps(session_body(**fields))
    assert_refused_json(post_json(client, "/api/paper-trading/sessions", body, bearer))
    assert snapshot() == before


@pytest.mark.parametrize("name", GOOD_TEXT)
def test_the_session_create_api_takes_odd_but_good_names(graph, client, bearer, name):
    response = post_json(client, "/api/paper-trading/sessions", json.dumps(session_body(name=name)), bearer)
    assert response.status_code == 201, response.content
    assert TradingSession.objects.get(pk=response.json()["session_id"]).name == name


@pytest.mark.parametrize("name", CONTROL)
def test_the_page_form_refuses_control_characters(graph, operator_client, name):
    before = snapshot()
    response = operator_client.post("/ui/sessions/new", session_body(name=name))
    text = response.content.decode()
    assert "control character" in text or "Null characters are not allowed" in text, text[-1500:]
    assert snapshot() == before


# --- the admin ---------------------------------------------------------------------------


def agent_form(agent: Agent, **overrides) -> dict:
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "kind": agent.kind,
        "role": agent.role,
        "enabled": "on",
        "symbols": json.dumps(agent.symbols),
        "config": json.dumps(agent.config),
        "position_x": "",
        "position_y": "",
        **overrides,
    }


AGENT_REFUSALS = [
    *({"name": text} for text in CONTROL + BIDI + INVISIBLE),
    *({"symbols": f'["{text}"]'} for text in ("\\ud800", "\\u0000", "btc usd", "\\u202eUSD")),
    {"symbols": '"BTC-USD"'},
    {"symbols": '["BTC-USD", "BTC-USD"]'},
    {"config": '{"initial_prices": {"\\ud800": 1}}'},
    {"config": '{"initial_prices": {"BTC-USD": 1e308}}'},
    {"config": '{"tick_seconds": NaN}'},
    {"config": "[" * 100_000 + "]" * 100_000},
    {"config": '{"initial_prices": {"\\u202eBTC": 1}}'},
    {"config": '{"source": "simulated", "source": "csv"}'},  # a key twice
    {"config": '{"initial_prices": {"BTC-USD": 1, "BTC-USD": 2}}'},
    {"config": '{"tick_seconds": "1"}'},  # strict types, as the config API
    {"config": '{"seed": "7"}'},
    {"config": '{"initial_prices": {"BTC-USD": "65000"}}'},
    {"symbols": "null"},  # NOT NULL columns: a sentence, not a 500
    {"symbols": ""},
    {"position_x": "-1"},
    {"position_y": "100001"},
    {"position_y": "9" * 30},
]


@pytest.mark.parametrize("fields", AGENT_REFUSALS, ids=lambda f: ascii(f)[:40])
def test_the_agent_admin_refuses_bad_input(graph, superuser_client, fields):
    agent = graph["feed"]
    before = snapshot()
    response = superuser_client.post(f"/admin/agents/agent/{agent.pk}/change/", agent_form(agent, **fields))
    assert response.status_code == 200  # the form again, with the reason
    assert b"errorlist" in response.content, response.content[-2000:]
    assert snapshot() == before


def test_the_agent_admin_saves_odd_but_good_names(graph, superuser_client):
    agent = graph["feed"]
    for name in GOOD_TEXT:
        response = superuser_client.post(
            f"/admin/agents/agent/{agent.pk}/change/", agent_form(agent, name=name)
        )
        assert response.status_code == 302, response.content[-2000:]
        assert Agent.objects.get(pk=agent.pk).name == name
        assert superuser_client.get("/").status_code == 200


SESSION_ADMIN_REFUSALS = [
    *({"name": text} for text in CONTROL + BIDI + INVISIBLE),
    {"symbols": "null"},
    {"symbols": ""},
    {"symbols": "[]"},
    {"decision_agent": AGENT_ID},  # a data feed, not a decision agent
    {"decision_agent": "broker"},
    {"decision_agent": ""},
    {"execution_agent": ""},
    {"execution_agent": "decider"},
    {"max_position_weight": "0"},
    {"max_position_weight": "-0.1"},
    {"symbols": '["\\ud800"]'},
    {"symbols": "7"},
    {"symbols": '["btc-usd"]'},
    {"max_orders_per_minute": "0"},
    {"max_orders_per_minute": "601"},
    {"slippage_size_reference": "9999999999999999999999"},
]


@pytest.mark.parametrize("fields", SESSION_ADMIN_REFUSALS, ids=lambda f: ascii(f)[:40])
def test_the_session_admin_refuses_bad_input(graph, superuser_client, fields):
    session = graph["session"]
    form = {
        "name": session.name,
        "symbols": json.dumps(session.symbols),
        "decision_agent": "decider",
        "execution_agent": "broker",
        "max_position_weight": "0.5",
        "max_orders_per_minute": "6",
        "fee_bps": "10",
        "slippage_bps": "5",
        "slippage_size_reference": "10000",
        "positions-TOTAL_FORMS": "0",
        "positions-INITIAL_FORMS": "0",
        **fields,
    }
    before = snapshot()
    response = superuser_client.post(f"/admin/trading_sessions/tradingsession/{SESSION_ID}/change/", form)
    assert response.status_code == 200
    assert b"errorlist" in response.content, response.content[-2000:]
    assert snapshot() == before


# --- numbers in query strings ------------------------------------------------------------

LOOK_ALIKES = ["\u00b2", "\uff11\uff12", "\u0661\u0662", " 12", "+12", "1_000", "1e3", "-1", "", "9" * 30]


@pytest.mark.parametrize("value", LOOK_ALIKES, ids=ascii)
@pytest.mark.parametrize(
    "path",
    [
        "/ui/feed?before={}",
        f"/sessions/{SESSION_ID}/?offset={{}}",
        f"/sessions/{SESSION_ID}/?partial=fills&offset={{}}",
        f"/sessions/{SESSION_ID}/chart.json?interval={{}}",
        f"/sessions/{SESSION_ID}/chart.json?since={{}}",
        f"/system/agents/{AGENT_ID}/logs?lines={{}}",
    ],
)
def test_numbers_in_query_strings_are_ascii_digits_within_bounds(graph, viewer_client, path, value):
    from urllib.parse import quote

    response = viewer_client.get(path.format(quote(value)))
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert b"must be" in response.content


def test_the_query_numbers_still_take_what_the_pages_send(graph, viewer_client):
    assert viewer_client.get("/ui/feed?before=12").status_code == 200
    assert viewer_client.get(f"/sessions/{SESSION_ID}/?offset=50").status_code == 200
    assert (
        viewer_client.get(f"/sessions/{SESSION_ID}/chart.json?interval=60&since=1700000000").status_code
        == 200
    )


def test_the_session_page_shows_a_bad_interval_and_answers(graph, viewer_client):
    response = viewer_client.get(f"/sessions/{SESSION_ID}/?interval=\u00b2")
    assert response.status_code == 200
    assert "must be a whole number" in response.content.decode()  # and the default interval is shown

"""Validation of a new session (shared by the API and the page)."""

import pytest

from sessions.forms import SessionCreateForm


@pytest.fixture
def agents(make_agent):
    feed = make_agent("f_feed", symbols=["BTC-USD", "ETH-USD"])
    execution = make_agent("f_exec", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.add(feed)
    make_agent("f_decision", kind="decision", role="decision", symbols=["BTC-USD"], config={})


def form(**data) -> SessionCreateForm:
    base = {"name": "Test", "symbols": ["BTC-USD"], "decision_agent": "f_decision", "starting_cash": "1000"}
    return SessionCreateForm(data={**base, **data})


def test_a_minimal_session_is_valid_and_finds_the_only_execution_agent(agents):
    f = form()
    assert f.is_valid(), f.errors
    assert f.cleaned_data["execution_agent"].agent_id == "f_exec"


def test_symbols_typed_in_a_form_are_split_and_upper_cased(agents):
    f = form(symbols="btc-usd")
    assert f.is_valid(), f.errors
    assert f.cleaned_data["symbols"] == ["BTC-USD"]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"symbols": []}, "symbols", "at least one"),
        ({"symbols": ["BTC USD!"]}, "symbols", "Not a symbol"),
        ({"symbols": ["ETH-USD"]}, "symbols", "does not follow"),
        ({"decision_agent": "nope"}, "decision_agent", "no decision agent"),
        ({"decision_agent": "f_exec"}, "decision_agent", "no decision agent"),
        ({"starting_cash": "0"}, "starting_cash", "greater than or equal"),
        ({"starting_cash": "lots"}, "starting_cash", "number"),
        ({"max_position_weight": "1.5"}, "max_position_weight", "less than or equal"),
        ({"max_orders_per_minute": "0"}, "max_orders_per_minute", "Between 1 and 600"),
        ({"name": ""}, "name", "required"),
    ],
)
def test_bad_values_name_their_field(agents, data, field, words):
    f = form(**data)
    assert not f.is_valid()
    assert words in " ".join(f.errors[field]), f.errors


def test_no_execution_agent_is_a_field_error(make_agent):
    make_agent("f_decision", kind="decision", role="decision", symbols=["BTC-USD"], config={})
    f = form()
    assert not f.is_valid()
    assert "no enabled execution agent" in " ".join(f.errors["execution_agent"])


def test_ids_that_are_api_paths_are_reserved(agents):
    from sessions.forms import unique_session_id

    assert not form(session_id="pause-all").is_valid()
    assert unique_session_id("Pause all") == "pause-all-2"

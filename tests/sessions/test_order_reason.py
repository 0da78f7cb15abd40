"""An order's reason names its own side and the directive behind it (sessions.runtime)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.models import LogEntry
from sessions import broker
from sessions.models import TradingSession
from sessions.runtime import Directive, SessionLoop, order_reason

D = Decimal
RISK = TradingSession(max_position_weight=D("0.5"))


def directive(action: str, target: str | None, reason: str) -> Directive:
    return Directive(
        ref="d:1-0", action=action, target_weight=None if target is None else D(target), reason=reason
    )


@pytest.mark.parametrize(
    ("side", "advice", "starts"),
    [
        (
            "buy",
            directive("buy", "0.3", "buy: technical t1 +0.40 -> +0.40 >= +0.15"),
            "buy up to 30% of equity",
        ),
        (
            "sell",
            directive("buy", "0.2", "buy: technical t1 +0.20 -> +0.20 >= +0.15"),
            "sell down to 20% of equity",
        ),
        (
            "sell",
            directive("sell", "0", "sell: technical t1 -0.40 -> -0.40 <= -0.15"),
            "sell the whole position",
        ),
        ("buy", directive("buy", "0.9", "buy: strong"), "buy up to 50% of equity, the session's cap"),
        ("sell", directive("buy", "0.9", "buy: strong"), "sell down to 50% of equity, the session's cap"),
    ],
)
def test_the_reason_names_the_orders_own_side_then_its_directive(side, advice, starts) -> None:
    reason = order_reason(side, advice, RISK)
    assert reason.startswith(starts)
    assert f"per a {advice.action} directive" in reason
    other = "sell" if side == "buy" else "buy"
    # The order's side is the only one the sentence gives as an action of its own.
    assert f"({other}:" not in reason and f"({side}:" not in reason
    assert not reason.lower().startswith(other)


@pytest.mark.parametrize("text", ["buy: x", "BUY : x", " hold: x", "sell:x"])
def test_whatever_action_word_a_directive_reason_starts_with_is_not_repeated(text: str) -> None:
    reason = order_reason("sell", directive("buy", "0.1", text), RISK)
    assert reason == "sell down to 10% of equity, per a buy directive (x)"


def test_a_directive_without_a_reason_still_names_itself() -> None:
    assert (
        order_reason("buy", directive("buy", "0.25", ""), RISK)
        == "buy up to 25% of equity, per a buy directive"
    )


def test_a_lower_buy_target_logs_a_sell_order_without_a_buy_reason(make_session, monkeypatch) -> None:
    """The reported case: the activity entry of a sell sized from a buy directive."""
    session = make_session("reasons", max_position_weight=D(1))
    order = broker.place_order(session.pk, "BTC-USD", "buy", D("50"))
    assert broker.fill_market_order(order.pk, D("100")).filled
    TradingSession.objects.filter(pk=session.pk).update(run_id="run-1")
    loop = SessionLoop(session.pk, "run-1")
    monkeypatch.setattr(loop, "_send", lambda order: None)
    loop.symbols = ["BTC-USD"]
    loop.prices["BTC-USD"] = D("100")
    loop.pending["BTC-USD"] = directive("buy", "0.2", "buy: technical t1 +0.20 -> +0.20 >= +0.15")
    assert loop._trade() == 1
    entry = LogEntry.objects.filter(session_id=session.pk).latest("id").message
    assert entry.startswith("order sell ")
    assert "sell down to 20% of equity, per a buy directive (technical t1" in entry
    assert "(buy:" not in entry

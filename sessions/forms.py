"""The one validation of a new session, shared by the JSON API and the page's form."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.text import slugify

from agents.models import Agent
from agents.validators import MAX_SESSION_SYMBOLS, SYMBOL, shown, stored_symbols
from sessions.models import TradingSession

# Literal paths under /api/paper-trading/sessions/ that an id must not shadow.
RESERVED_IDS = {"pause-all", "resume-all"}
# Optional on create: the model's defaults apply when they are left out.
OPTIONAL_FIELDS = (
    "max_position_weight",
    "max_orders_per_minute",
    "fee_bps",
    "slippage_bps",
    "slippage_size_reference",
    "max_price_age_seconds",
)


class SymbolsField(forms.Field):
    """A list of symbols, from a JSON list or from "BTC-USD, ETH-USD" typed in a form."""

    def to_python(self, value: Any) -> list[str]:
        if value in (None, "", []):
            return []
        if isinstance(value, str):
            value = [part for part in re.split(r"[\s,]+", value) if part]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValidationError('Give the symbols as a list of strings, e.g. ["BTC-USD"].')
        symbols = [v.strip().upper() for v in value]
        bad = [shown(s) for s in symbols if not SYMBOL.fullmatch(s)]
        if bad:
            raise ValidationError(
                f"Not a symbol: {', '.join(bad)} (letters, digits, '-', '.', '_'; e.g. BTC-USD)."
            )
        if len(set(symbols)) != len(symbols):
            raise ValidationError("A symbol is listed twice.")
        if len(symbols) > MAX_SESSION_SYMBOLS:
            raise ValidationError(f"At most {MAX_SESSION_SYMBOLS} symbols per session.")
        return symbols

    def validate(self, value: list[str]) -> None:
        if not value:
            raise ValidationError("Give at least one symbol to trade.")


class SessionCreateForm(forms.ModelForm):
    symbols = SymbolsField(help_text="The symbols to trade, e.g. BTC-USD, ETH-USD.")
    session_id = forms.SlugField(
        max_length=64, required=False, help_text="Optional; made from the name when left empty."
    )
    decision_agent = forms.ModelChoiceField(
        queryset=Agent.objects.filter(kind="decision"),
        to_field_name="agent_id",
        error_messages={"invalid_choice": "There is no decision agent with that id."},
    )
    execution_agent = forms.ModelChoiceField(
        queryset=Agent.objects.filter(kind="execution"),
        to_field_name="agent_id",
        required=False,
        error_messages={"invalid_choice": "There is no execution agent with that id."},
        help_text="Optional when there is exactly one execution agent.",
    )

    class Meta:
        model = TradingSession
        fields = [
            "session_id",
            "name",
            "symbols",
            "decision_agent",
            "execution_agent",
            "starting_cash",
            "max_position_weight",
            "max_orders_per_minute",
            "flatten_on_stop",
            "max_price_age_seconds",
            "fee_bps",
            "slippage_bps",
            "slippage_size_scaled",
            "slippage_size_reference",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in OPTIONAL_FIELDS:
            self.fields[name].required = False

    def clean_session_id(self) -> str:
        session_id = self.cleaned_data.get("session_id") or ""
        if session_id in RESERVED_IDS:
            raise ValidationError(f"{session_id!r} is reserved (it is an API path); choose another id.")
        if session_id and TradingSession.objects.filter(pk=session_id).exists():
            raise ValidationError(f"A session with id {session_id!r} exists already.")
        return session_id

    def clean_execution_agent(self) -> Agent:
        agent = self.cleaned_data.get("execution_agent")
        if agent is not None:
            return agent
        candidates = list(Agent.objects.filter(kind="execution", enabled=True)[:2])
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise ValidationError("There is no enabled execution agent; create one first.")
        raise ValidationError("There are several execution agents; say which one this session uses.")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        decision, symbols = data.get("decision_agent"), data.get("symbols")
        if decision is not None and symbols:
            followed = stored_symbols(decision.symbols)
            missing = [s for s in symbols if s not in followed]
            if missing:
                self.add_error(
                    "symbols",
                    f"Decision agent {decision.agent_id} does not follow {', '.join(missing)} "
                    f"(it follows {', '.join(followed) or 'no symbol'}).",
                )
        execution = data.get("execution_agent")
        if execution is not None and symbols:
            priced = _priced_symbols(execution)
            missing = [s for s in symbols if s not in priced]
            if missing:
                self.add_error(
                    "symbols",
                    f"Execution agent {execution.agent_id} has no prices for {', '.join(missing)}: "
                    "none of its market inputs publishes them.",
                )
        return data

    def _update_errors(self, errors: ValidationError) -> None:
        # The model's rules (TradingSession.clean) repeat some of this form's for the
        # admin; a field this form refused already keeps the form's own message.
        if hasattr(errors, "error_dict"):
            errors = ValidationError({f: e for f, e in errors.error_dict.items() if f not in self.errors})
        super()._update_errors(errors)

    def _post_clean(self) -> None:
        # Defaults for the optional fields left out, before the model's own validation.
        for name in OPTIONAL_FIELDS:
            if self.cleaned_data.get(name) is None:
                self.cleaned_data[name] = TradingSession._meta.get_field(name).get_default()
        super()._post_clean()


def _priced_symbols(execution: Agent) -> set[str]:
    symbols: set[str] = set()
    for agent in TradingSession.market_agents_of(execution.agent_id):
        symbols.update(stored_symbols(agent.symbols))
    return symbols


def unique_session_id(name: str) -> str:
    base = (slugify(name) or "session")[:56]
    candidate, n = base, 2
    while candidate in RESERVED_IDS or TradingSession.objects.filter(pk=candidate).exists():
        candidate, n = f"{base}-{n}", n + 1
    return candidate

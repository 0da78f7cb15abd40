"""The demo `seed_demo` builds: market data -> technical + sentiment -> decision ->
execution, and two paper trading sessions following the decision agent.

Everything here runs on the simulated market (labelled simulated in its data), in real
time (a bar spans the wall time between steps, see agents.kinds.market_time), so a
newcomer sees trades within a minute of starting the system, offline, on prices that move
as much as a real market's do.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from agents.kinds import validate_config
from agents.models import Agent, Role
from sessions.models import TradingSession

DEMO_AGENTS = [
    {
        "agent_id": "market_data_sim",
        "name": "Simulated market (BTC, ETH)",
        "kind": "market_data",
        "role": Role.DATA_FEED,
        "symbols": ["BTC-USD", "ETH-USD"],
        "config": {"source": "simulated", "tick_seconds": 1.0},
        "inputs_from": [],
        "position": (0, 0),
    },
    {
        "agent_id": "technical_sim",
        "name": "Technical analysis (BTC, ETH)",
        "kind": "technical",
        "role": Role.SPECIALIZED_TECHNICAL,
        "symbols": ["BTC-USD", "ETH-USD"],
        # Tuned to one-second bars (the simulated market runs in real time): at the defaults,
        # made for minute bars, the crossover and MACD of prices a second apart score ~0.01
        # and only RSI and Bollinger would vote. These make the four weigh alike.
        "config": {"tick_seconds": 1.0, "ma_sensitivity": 3000.0, "macd_sensitivity": 20000.0},
        "inputs_from": ["market_data_sim"],
        "position": (1, 0),
    },
    {
        "agent_id": "sentiment_news",
        "name": "News sentiment (simulated news)",
        "kind": "sentiment",
        "role": Role.SPECIALIZED_SENTIMENT,
        "symbols": ["BTC-USD", "ETH-USD"],
        "config": {"sources": ["simulated_news"], "tick_seconds": 1.0},
        "inputs_from": ["market_data_sim"],
        "position": (1, 1),
    },
    {
        "agent_id": "decision_main",
        "name": "Decision (technical + sentiment)",
        "kind": "decision",
        "role": Role.DECISION,
        "symbols": ["BTC-USD", "ETH-USD"],
        # Lively on purpose: the demo should trade a few times a minute on the simulated
        # market (measured: 3-4 trades a minute per symbol, the first within a minute).
        "config": {
            "tick_seconds": 1.0,
            "weights": {"technical_sim": 1.0, "sentiment_news": 0.5},
            "buy_threshold": 0.1,
            "sell_threshold": -0.1,
            "cooldown_seconds": 10.0,
        },
        "inputs_from": ["technical_sim", "sentiment_news"],
        "position": (2, 0),
    },
    {
        "agent_id": "execution_paper",
        "name": "Paper broker",
        "kind": "execution",
        "role": Role.EXECUTION,
        "symbols": ["BTC-USD", "ETH-USD"],
        "config": {"tick_seconds": 0.5},
        "inputs_from": ["market_data_sim"],
        "position": (3, 0),
    },
]

DEMO_SESSIONS = [
    {
        "session_id": "btc-strategy-test",
        "name": "BTC Strategy Test",
        "symbols": ["BTC-USD"],
        "starting_cash": "10000",
        "flatten_on_stop": False,
    },
    {
        "session_id": "eth-sentiment-analysis",
        "name": "ETH Sentiment Analysis",
        "symbols": ["ETH-USD"],
        "starting_cash": "10000",
        "flatten_on_stop": True,
    },
]


@transaction.atomic
def seed_agents() -> list[str]:
    """Create the demo agents that are missing; existing ones (and their state) are kept."""
    created = []
    for spec in DEMO_AGENTS:
        config = validate_config(spec["kind"], spec["config"]).model_dump(mode="json")
        agent, was_created = Agent.objects.get_or_create(
            agent_id=spec["agent_id"],
            defaults={
                "name": spec["name"],
                "kind": spec["kind"],
                "role": spec["role"],
                "symbols": spec["symbols"],
                "config": config,
                "position_x": spec["position"][0],
                "position_y": spec["position"][1],
            },
        )
        if was_created:
            agent.inputs_from.set(spec["inputs_from"])
            created.append(agent.agent_id)
    return created


@transaction.atomic
def seed_sessions() -> list[str]:
    """Create the demo sessions that are missing (ready, not started); existing ones are kept."""
    created = []
    for spec in DEMO_SESSIONS:
        if TradingSession.objects.filter(pk=spec["session_id"]).exists():
            continue
        TradingSession.objects.create(
            decision_agent_id="decision_main", execution_agent_id="execution_paper", **spec
        )
        created.append(spec["session_id"])
    return created


def password_file() -> Path:
    return settings.VAR_DIR / "admin-password"


def ensure_admin(username: str = "admin") -> tuple[bool, Path]:
    """Create a superuser with a random password written to var/admin-password (mode 600).

    Returns (created, path). An existing user is left alone.
    """
    path = password_file()
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        return False, path
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email="", password=password)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return True, path

"""How long the control panel takes to render with many agents and sessions, and what one
live sweep costs (the hub's work every 0.3 s while a page is open).

Builds, on a database and Redis prefix of its own, N agents (a quarter each of market
data, technical, decision, execution; each execution agent fed by a market data agent)
and M sessions with a few fills each, plus a log file and some stream messages per agent
so the cards have something to show. No loops run: this measures the server's reading
and rendering, not the agents. Prints medians over repeated runs, and the query counts.

    .venv/bin/python bench/page_render.py [--agents 500] [--sessions 200] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = uuid.uuid4().hex[:8]
WORK = Path(tempfile.mkdtemp(prefix=f"pt-bench-{RUN}-"))
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "tradingsite.settings",
        "REDIS_PREFIX": f"bench-{RUN}:",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{WORK / 'bench.sqlite3'}"),
        "LOG_DIR": str(WORK / "logs"),
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
    }
)
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from agents.models import Agent  # noqa: E402
from agents.runtime import keys  # noqa: E402
from agents.runtime.logs import agent_logger  # noqa: E402
from agents.runtime.redis import get_redis  # noqa: E402
from control.live import Hub  # noqa: E402
from sessions import broker  # noqa: E402
from sessions.models import TradingSession  # noqa: E402

KINDS = [
    ("market_data", "data_feed", {"source": "simulated"}),
    ("technical", "specialized_technical", {}),
    ("decision", "decision", {}),
    ("execution", "execution", {}),
]


def build(n_agents: int, n_sessions: int) -> None:
    call_command("migrate", verbosity=0)
    client = get_redis()
    per_kind = n_agents // len(KINDS)
    agents = []
    for kind, role, config in KINDS:
        for i in range(per_kind):
            agents.append(
                Agent(
                    agent_id=f"{kind}-{i}",
                    name=f"{kind} {i}",
                    kind=kind,
                    role=role,
                    symbols=["BTC-USD"],
                    config=config,
                )
            )
    Agent.objects.bulk_create(agents)
    for i in range(per_kind):
        Agent.objects.get(pk=f"technical-{i}").inputs_from.add(f"market_data-{i}")
        Agent.objects.get(pk=f"decision-{i}").inputs_from.add(f"technical-{i}")
        Agent.objects.get(pk=f"execution-{i}").inputs_from.add(f"market_data-{i}")
    pipe = client.pipeline(transaction=False)
    for agent in agents:
        message = {"type": "bar", "symbol": "BTC-USD", "close": 65000.0, "ts": "2026-01-01T00:00:00+00:00"}
        pipe.xadd(keys.stream("agent", agent.agent_id), {"data": json.dumps(message)})
        pipe.hset(keys.metrics("agent", agent.agent_id), mapping={"steps": 10, "orders_in": 3, "filled": 2})
    pipe.execute()
    for agent in agents:
        log = agent_logger(agent.agent_id)
        for j in range(5):
            log.warning("line %d of %s", j, agent.agent_id)
    for i in range(n_sessions):
        TradingSession.objects.create(
            session_id=f"s-{i}",
            name=f"Session {i}",
            symbols=["BTC-USD"],
            decision_agent_id=f"decision-{i % per_kind}",
            execution_agent_id=f"execution-{i % per_kind}",
            starting_cash=Decimal("10000"),
            desired_state="running",
            status="running",
        )
        for side in ("buy", "sell"):
            order = broker.place_order(f"s-{i}", "BTC-USD", side, Decimal("0.01"))
            broker.fill_market_order(order.pk, Decimal("65000"))
    get_user_model().objects.create_superuser("bench", password="bench")


def push_latency(user, repeat: int) -> tuple[float, float]:
    """A loop writes a status and announces it: how long until the card reaches a socket."""
    from asgiref.sync import async_to_sync, sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from agents.runtime import flags
    from control.routing import websocket_urlpatterns

    async def scenario() -> list[float]:
        ws = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/control/")
        ws.scope["user"] = user
        await ws.connect()
        while 'id="flow"' not in await ws.receive_from(timeout=30):
            pass
        samples = []
        feeds_query = Agent.objects.filter(kind="market_data").values_list("pk", flat=True)
        feeds = await sync_to_async(list)(feeds_query)
        for i in range(repeat):
            agent_id = feeds[i % len(feeds)]
            current = await sync_to_async(Agent.objects.values_list("status", flat=True).get)(pk=agent_id)
            status = "stopped" if current == "error" else "error"  # always a real change
            await sync_to_async(Agent.objects.filter(pk=agent_id).update)(status=status)
            started = time.perf_counter()
            await sync_to_async(flags.announce)("agent", agent_id)
            while True:
                message = await ws.receive_from(timeout=30)
                if message.startswith(f'<article id="agent-{agent_id}"') and f"status-{status}" in message:
                    break
            samples.append((time.perf_counter() - started) * 1000)
        await ws.disconnect()
        return samples

    samples = sorted(async_to_sync(scenario)())
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def timed(fn, repeat: int) -> tuple[float, int]:
    times = []
    queries = 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
        queries = len(captured)
    return statistics.median(times), queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus; db {connection.vendor}")
    try:
        build(args.agents, args.sessions)
        client = Client()
        client.force_login(get_user_model().objects.get(username="bench"))
        client.get("/")  # warm: templates, health cache

        def render() -> None:
            response = client.get("/")
            assert response.status_code == 200, response.status_code

        hub = Hub()
        hub.sweep({True}, set(), True)  # the first sweep renders everything once

        def sweep_quiet() -> None:
            hub.sweep({True}, set(), True)

        def sweep_everything() -> None:
            Hub().sweep({True}, {True}, True)

        push = push_latency(get_user_model().objects.get(username="bench"), args.repeat)
        size = len(client.get("/").content)
        print(f"{args.agents} agents, {args.sessions} sessions; page {size / 1024:.0f} KiB")
        for label, fn in (
            ("GET / (full render)", render),
            ("live sweep, nothing changed", sweep_quiet),
            ("live sweep, every part rendered (a new socket)", sweep_everything),
        ):
            median, queries = timed(fn, args.repeat)
            print(f"  {label}: median {median:.0f} ms over {args.repeat} runs, {queries} queries")
        print(
            f"  status change -> card on a /ws/control/ socket (in process): median {push[0]:.1f} ms, "
            f"p95 {push[1]:.1f} ms over {args.repeat} changes (full sweep every 0.3 s besides)"
        )
    finally:
        client = get_redis()
        for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}*", count=1000):
            client.delete(key)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()

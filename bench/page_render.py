"""How long the control panel takes to render as agents grow, what it costs in queries,
and what one live sweep costs (the hub's full read, about once a second while a page is open).

Builds, on a database and Redis prefix of its own, M sessions with a few fills each and
then, size by size (10, 100, 500 agents by default), agents up to that size: a quarter
each of market data, technical, decision, execution, each execution agent fed by a
market data agent, each with a log file and some stream messages so the cards have
something to show. At each size it times the server's render of `/` (Django's test
client: view, queries, templates; no network) and counts its queries, which must not
grow with the agents (the script fails if they differ). At the largest size it also
times the live sweeps and a status change's push to a socket. No loops run: this
measures the server's reading and rendering, not the agents. Prints medians.

The health report (cached 5 s in production) is computed once per size and pinned, so
a cache expiry in the middle of a measurement cannot add its queries to one render.

    .venv/bin/python bench/page_render.py [--agents 10 100 500] [--sessions 200] [--repeat 15] [--quick]

The last line printed is `RESULT {json}` (bench/common.py) for bench/run_all.py; the
target is `queries_growth_count` (most queries minus fewest, over the sizes) <= 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import production  # noqa: F401  (production settings, DEBUG=0, before Django loads)

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
sys.path.insert(0, str(ROOT / "bench"))

import django  # noqa: E402

django.setup()

import common  # noqa: E402
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
from control import health  # noqa: E402
from control.live.hub import Hub  # noqa: E402
from sessions import broker  # noqa: E402
from sessions.models import TradingSession  # noqa: E402

KINDS = [
    ("market_data", "data_feed", {"source": "simulated"}),
    ("technical", "specialized_technical", {}),
    ("decision", "decision", {}),
    ("execution", "execution", {}),
]


def per_kind(n_agents: int) -> list[int]:
    """How many agents of each kind make `n_agents` (earlier kinds take the remainder, so
    every technical, decision and execution agent has its market data agent)."""
    base, extra = divmod(n_agents, len(KINDS))
    return [base + (1 if k < extra else 0) for k in range(len(KINDS))]


def add_agents(have: int, n_agents: int) -> None:
    """Grow the graph from `have` agents to `n_agents`."""
    client = get_redis()
    agents = []
    for (kind, role, config), first, upto in zip(KINDS, per_kind(have), per_kind(n_agents), strict=True):
        for i in range(first, upto):
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
    for agent in agents:
        i = agent.agent_id.rsplit("-", 1)[1]
        source = {"technical": "market_data", "decision": "technical", "execution": "market_data"}
        if agent.kind in source:
            agent.inputs_from.add(f"{source[agent.kind]}-{i}")
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


def add_sessions(n_sessions: int, per_kind: int) -> None:
    """Sessions trading through the first `per_kind` decision/execution agents."""
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


def pin_health() -> None:
    """Compute the health report now and serve it to every render of this size."""
    report = health.health()
    health.cached_health = lambda *args, **kwargs: report


def push_latency(user, repeat: int) -> tuple[float, float]:
    """A loop writes a status and announces it: how long until the card reaches a socket."""
    from asgiref.sync import async_to_sync, sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from agents.runtime import lifecycle
    from control.live.routing import websocket_urlpatterns

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
            await sync_to_async(lifecycle.announce)("agent", agent_id)
            while True:
                message = await ws.receive_from(timeout=30)
                if message.startswith(f'<article id="agent-{agent_id}"') and f"status-{status}" in message:
                    break
            samples.append((time.perf_counter() - started) * 1000)
        await ws.disconnect()
        return samples

    samples = async_to_sync(scenario)()
    return common.percentile(samples, 0.5), common.percentile(samples, 0.95)


def timed(fn, repeat: int) -> tuple[float, int, float]:
    """Median and p95 of `repeat` calls (ms), and the queries of the last one."""
    times = []
    queries = 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
        queries = len(captured)
    return statistics.median(times), queries, common.percentile(times, 0.95)


VIA = "Django test client in process (view, queries, templates; no network); SQLite unless BENCH_DATABASE_URL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 100, 500], help="sizes")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 runs of each")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 3
    sizes = sorted(set(args.agents))
    if sizes[0] < len(KINDS):
        parser.error(f"at least {len(KINDS)} agents, one of each kind")
    info = common.print_header(f"page render: GET / at {', '.join(map(str, sizes))} agents; the live sweep")
    figures: dict[str, float] = {"sessions_count": args.sessions, "runs_count": args.repeat}
    try:
        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_superuser("bench", password="bench")
        client = Client()
        client.force_login(user)

        def render() -> None:
            response = client.get("/")
            assert response.status_code == 200, response.status_code

        have = 0
        counts = {}
        print(f"GET / (full render, server side), {args.sessions} sessions, medians over {args.repeat} runs:")
        for n in sizes:
            add_agents(have, n)
            if have == 0:
                add_sessions(args.sessions, min(per_kind(n)))
            have = n
            pin_health()
            render()  # warm: templates, permissions, the cards' log tails
            median, counts[n], p95 = timed(render, args.repeat)
            size = len(client.get("/").content)
            figures |= {
                f"render_{n}_agents_p50_ms": median,
                f"render_{n}_agents_p95_ms": p95,
                f"queries_{n}_agents_count": counts[n],
                f"page_{n}_agents_kib": size / 1024,
            }
            print(
                f"  {n:4d} agents: median {median:6.0f} ms, p95 {p95:6.0f} ms, {counts[n]} queries, "
                f"page {size / 1024:.0f} KiB"
            )
        figures["queries_growth_count"] = max(counts.values()) - min(counts.values())

        hub = Hub()
        hub.sweep({True}, set(), True)  # the first sweep renders everything once

        def sweep_quiet() -> None:
            hub.sweep({True}, set(), True)

        def sweep_everything() -> None:
            Hub().sweep({True}, {True}, True)

        push = push_latency(user, args.repeat)
        print(f"at {sizes[-1]} agents, {args.sessions} sessions:")
        for key, label, fn in (
            ("sweep_quiet", "live sweep, nothing changed", sweep_quiet),
            ("sweep_all", "live sweep, every part rendered (a new socket)", sweep_everything),
        ):
            median, queries, _ = timed(fn, args.repeat)
            figures |= {f"{key}_{sizes[-1]}_agents_p50_ms": median, f"{key}_queries_count": queries}
            print(f"  {label}: median {median:.0f} ms over {args.repeat} runs, {queries} queries")
        figures |= {f"push_{sizes[-1]}_agents_p50_ms": push[0], f"push_{sizes[-1]}_agents_p95_ms": push[1]}
        print(
            f"  status change -> card on a /ws/control/ socket (in process): median {push[0]:.1f} ms, "
            f"p95 {push[1]:.1f} ms over {args.repeat} changes (the hub's full reads running besides)"
        )
        common.emit_result("page_render", args.quick, info, VIA, figures, {"queries_growth_count": 0})
        if figures["queries_growth_count"]:
            raise SystemExit(f"page_render: the query count of / grows with the agents: {counts}")
    finally:
        client = get_redis()
        for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}*", count=1000):
            client.delete(key)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()

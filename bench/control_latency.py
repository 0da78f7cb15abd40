"""Control latency: an API call (pause, resume, stop, start) -> the loop confirms it.

On a private stack (its own SQLite file and Redis prefix; `BENCH_DATABASE_URL` for
another database): the demo agents and sessions (control.demo) run in one real Celery
worker, and daphne serves the real HTTP API on a free port. Each cycle POSTs, with a
bearer token over one keep-alive connection:

* /api/paper-trading/sessions/btc-strategy-test/pause, then /resume (a session);
* /api/agents/sentiment_news/stop, then /start (an agent).

"Confirmed" is the moment the loop's observed status (`status` column: paused, running,
stopped, running) is in the database, as the API and the page read it. The bench reads
that column whenever the changes channel announces something (the loop announces right
after it writes), and every 5 ms besides, so a lost announcement cannot hide a
confirmation. Printed, p50/p95 over the cycles: call -> confirmed (the figure the target
is on), the API's answer time, and answer -> confirmed (the loop's own share: a pause is
often confirmed before the answer arrives); beside Redis PING round trips measured
during the same run (the floor).

    .venv/bin/python bench/control_latency.py [--cycles 100] [--quick]

Target (issue 5): p95 <= 50 ms for stop, pause and resume. A start is a new loop (a
Celery task to deliver, a lease to take, setup): shown, without a target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path

import production  # noqa: F401  (production settings, DEBUG=0, before Django loads)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SESSION = "btc-strategy-test"
AGENT = "sentiment_news"
POLL_SECONDS = 0.005
# action -> (kind, id, path, status that confirms it)
ACTIONS = {
    "pause": ("session", SESSION, f"/api/paper-trading/sessions/{SESSION}/pause", "paused"),
    "resume": ("session", SESSION, f"/api/paper-trading/sessions/{SESSION}/resume", "running"),
    "stop": ("agent", AGENT, f"/api/agents/{AGENT}/stop", "stopped"),
    "start": ("agent", AGENT, f"/api/agents/{AGENT}/start", "running"),
}
TARGET_MS = 50.0
VIA = (
    "HTTP API through daphne (bearer token, keep-alive) -> status column in the database, "
    "read by the bench when the changes channel announces and every 5 ms"
)


class Api:
    """The HTTP API over one keep-alive connection."""

    def __init__(self, url: str, token: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Length": "0"}

    def post(self, path: str) -> dict:
        self.conn.request("POST", path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path} answered {response.status}: {body[:500]!r}")
        return json.loads(body)

    def close(self) -> None:
        self.conn.close()


def status_reader(kind: str, rid: str):
    from agents.models import Agent
    from sessions.models import TradingSession

    model = Agent if kind == "agent" else TradingSession
    query = model.objects.filter(pk=rid).values_list("status", flat=True)
    return lambda: query.first()


def wait_confirmed(read, expected: str, pubsub, timeout: float = 15.0) -> float:
    """perf_counter() when the status column first reads `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        if read() == expected:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the loop did not confirm {expected!r} within {timeout}s (status {read()!r})")
        # Wakes at once on an announcement; otherwise polls every POLL_SECONDS.
        pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
        while pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is not None:
            pass  # several announcements at once: one read covers them


def run(ws: common.Workspace, cycles: int) -> tuple[dict[str, dict[str, list[float]]], list[float]]:
    from agents.runtime import keys
    from agents.runtime.redis import get_redis
    from control import demo, services

    demo.seed_agents()
    demo.seed_sessions()
    token = common.api_token(common.make_operator())
    worker = common.Worker(ws).start()
    server = None
    pubsub = None
    api = None
    try:
        server = common.daphne(ws)
        services.start_system()
        readers = {name: status_reader(kind, rid) for name, (kind, rid, _, _) in ACTIONS.items()}
        for name in ("resume", "start"):  # session and agent both running
            common.wait_until(lambda n=name: readers[n]() == "running", 60, f"{ACTIONS[name][1]} to run")
        pubsub = get_redis().pubsub()
        pubsub.subscribe(keys.changes())
        api = Api(server.url, token)
        samples = {name: {"api": [], "confirmed": [], "after": []} for name in ACTIONS}
        pings: list[float] = []
        for _ in range(2):  # warm: connections, templates, the first task delivery
            for name in ACTIONS:
                api.post(ACTIONS[name][2])
                wait_confirmed(readers[name], ACTIONS[name][3], pubsub)
        for cycle in range(cycles):
            for name, (_, _, path, expected) in ACTIONS.items():
                started = time.perf_counter()
                api.post(path)
                answered = time.perf_counter()
                confirmed = wait_confirmed(readers[name], expected, pubsub)
                samples[name]["api"].append((answered - started) * 1000)
                samples[name]["confirmed"].append((confirmed - started) * 1000)
                samples[name]["after"].append((confirmed - answered) * 1000)
            pings.extend(common.redis_ping_ms(2))
            if (cycle + 1) % 25 == 0:
                print(f"  {cycle + 1}/{cycles} cycles", file=sys.stderr, flush=True)
        return samples, pings
    finally:
        if api is not None:
            api.close()
        if pubsub is not None:
            pubsub.close()
        if server is not None:
            server.stop()
        worker.stop()


def main(ws: common.Workspace) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="20 cycles")
    args = parser.parse_args()
    cycles = 20 if args.quick else args.cycles
    info = common.print_header("control latency: API call -> loop confirmed (observed status)")
    print(f"# via: {VIA}")
    samples, pings = run(ws, cycles)
    ping = common.summary(pings)
    print(
        f"Redis PING round trip (the floor): p50 {ping['p50']:.2f} ms, "
        f"p95 {ping['p95']:.2f} ms, n {ping['n']}"
    )
    print(
        "action   confirmed p50    p95     max   | API answer p50    p95 "
        "| answer -> confirmed p50    p95   (ms, over cycles)"
    )
    figures: dict[str, float] = {
        "redis_ping_p50_ms": ping["p50"],
        "redis_ping_p95_ms": ping["p95"],
        "cycles_count": cycles,
    }
    for name, (_, _, path, expected) in ACTIONS.items():
        c = common.summary(samples[name]["confirmed"])
        a = common.summary(samples[name]["api"])
        after = common.summary(samples[name]["after"])
        print(
            f"{name:7s}  {c['p50']:13.1f}  {c['p95']:6.1f}  {c['max']:6.1f}   "
            f"| {a['p50']:14.1f}  {a['p95']:5.1f} | {after['p50']:23.1f}  {after['p95']:5.1f}"
            f"   ({path} -> {expected})"
        )
        figures |= {
            f"{name}_confirmed_p50_ms": c["p50"],
            f"{name}_confirmed_p95_ms": c["p95"],
            f"{name}_confirmed_max_ms": c["max"],
            f"{name}_api_p50_ms": a["p50"],
            f"{name}_api_p95_ms": a["p95"],
            f"{name}_after_answer_p50_ms": after["p50"],
            f"{name}_after_answer_p95_ms": after["p95"],
        }
    limits = {f"{name}_confirmed_p95_ms": TARGET_MS for name in ("pause", "resume", "stop")}
    for name, limit in limits.items():
        verdict = "met" if figures[name] <= limit else "MISSED"
        print(f"target {name} <= {limit:.0f} ms: {verdict} ({figures[name]:.1f} ms)")
    common.emit_result("control_latency", args.quick, info, VIA, figures, limits)


if __name__ == "__main__":
    workspace = common.workspace("control")
    try:
        main(workspace)
    finally:
        workspace.close()

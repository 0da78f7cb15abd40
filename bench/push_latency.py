"""Push latency: a state change -> the card on a websocket client, and in Chromium's DOM;
then a flood of changes -> pushes per object and staleness.

On a private stack (its own SQLite file and Redis prefix; `BENCH_DATABASE_URL` for
another database) daphne serves the project on a free port; N agents exist (not running:
this bench plays the loops). A "state change" is what a loop does: write the observed
status in the database (a conditional UPDATE) and announce it
(agents.runtime.lifecycle.announce). Each change also writes `error_message = "bench change
<seq>"`, which the card shows, so every pushed card says exactly which change it shows.

1. Single changes (one every 50 ms, spread over the agents): the time from the committed
   UPDATE to the card's arrival on a /ws/control/ socket, read by a plain RFC 6455 client
   (bench/common.py) logged in with an operator's session cookie.
2. The same in Chromium (Playwright, Debian's /usr/bin/chromium): the page / is open and
   a MutationObserver stamps each inserted card with performance.timeOrigin +
   performance.now(); the change is stamped with time.time() (same machine, same clock).
3. A flood: `--rate` changes/s for `--seconds`, round-robin over the agents. A reader
   thread stamps every card pushed. Figures: card pushes per object per second (mean and
   max over the objects), and staleness: for each change, the time until a push of that
   object shows it or a later change (p50/p95/max); changes whose object's final state
   never arrives are counted as lost.

    .venv/bin/python bench/push_latency.py [--changes 100] [--agents 100] [--rate 1000]
                                           [--seconds 10] [--quick] [--no-browser] [--profile]

--profile stamps the hub's steps inside daphne (a sitecustomize.py on its PYTHONPATH
wraps control.live.hub's Hub and the consumer's send; nothing in the project is edited) and
prints where a single change's time goes: announcement -> hub woken -> sweep -> send ->
client.

Targets (issue 5): single change -> websocket p95 <= 10 ms; flood: "at most a few" pushes
per object per second (counted here as <= 5), staleness p95 < 300 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import production  # noqa: F401  (production settings, DEBUG=0, before Django loads)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

CARD = re.compile(r'^<article id="agent-([^"]+)"')
SEQ = re.compile(r"bench change (\d+)\b")
SINGLE_GAP_SECONDS = 0.05
TARGETS = {
    "ws_p95_ms": 10.0,
    "flood_pushes_per_object_per_s_max": 5.0,
    "flood_staleness_p95_ms": 300.0,
}
VIA = (
    "daphne on 127.0.0.1; changes = UPDATE agents + lifecycle.announce from the bench process; "
    "websocket = raw RFC 6455 client on /ws/control/ with an operator session cookie; "
    "DOM = Chromium MutationObserver"
)

# Stamps every card the page inserts: {seq: epoch ms} (performance.timeOrigin + now()).
OBSERVER_JS = """
() => {
  // Pushes morph a card in place (idiomorph): a change may add no node, only text, so
  // every mutation is traced to the card it happened in.
  window.__benchSeen = {};
  const seen = (card, t) => {
    const m = /bench change (\\d+)\\b/.exec(card.textContent);
    if (m && !(m[1] in window.__benchSeen)) window.__benchSeen[m[1]] = t;
  };
  new MutationObserver((records) => {
    const t = performance.timeOrigin + performance.now();
    for (const record of records) {
      const target = record.target.nodeType === 1 ? record.target : record.target.parentElement;
      const card = target && target.closest('[id^="agent-"]');
      if (card) seen(card, t);
      for (const node of record.addedNodes) {
        if (node.nodeType === 1 && node.id && node.id.startsWith('agent-')) seen(node, t);
      }
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}
"""


# --profile: written as sitecustomize.py on daphne's PYTHONPATH, it stamps (time.time(),
# the clock the bench stamps changes with) the hub's steps in the server process, without
# editing control/live/hub.py: the announcement waking the hub, each sweep, each delivery and
# each card sent to a socket. Hooks whatever of those names the hub has.
PROFILE_HOOKS = r"""
import asyncio, importlib.abc, importlib.machinery, json, os, re, sys, threading, time

_out = open(os.environ["BENCH_PROFILE_LOG"], "a", buffering=1)
_lock = threading.Lock()
_seq = re.compile(r"bench change (\d+)\b")


def stamp(event, **fields):
    line = json.dumps({"e": event, "t": time.time(), **fields})
    with _lock:
        _out.write(line + "\n")


class StampedEvent(asyncio.Event):
    def set(self):
        if not self.is_set():
            stamp("wake")
        super().set()


def timed(name, fn):
    def wrapper(*args, **kwargs):
        stamp(name + "_start")
        try:
            return fn(*args, **kwargs)
        finally:
            stamp(name + "_end")
    return wrapper


def patch_live(module):
    hub_class = module.Hub
    join = hub_class.join

    def stamped_join(self, listener):
        join(self, listener)
        if type(self._wake) is asyncio.Event:  # the run task has not started yet
            self._wake = StampedEvent()
    hub_class.join = stamped_join
    # The hub's full read runs in a thread of its own beside the targeted sweeps.
    for name, label in (("sweep_some", "some"), ("sweep", "full"), ("read_all", "full")):
        raw = hub_class.__dict__.get(name)
        if isinstance(raw, staticmethod):
            setattr(hub_class, name, staticmethod(timed(label, raw.__func__)))
        elif raw is not None:
            setattr(hub_class, name, timed(label, raw))
    deliver = hub_class._deliver

    async def stamped_deliver(self, frame):
        stamp("deliver")
        return await deliver(self, frame)
    hub_class._deliver = stamped_deliver


def patch_consumers(module):
    consumer = module.ControlConsumer
    send = consumer.deliver

    async def stamped_send(self, text):
        seq = _seq.search(text) if text.startswith('<article id="agent-') else None
        if seq:
            stamp("send_start", seq=int(seq.group(1)))
        await send(self, text)
        if seq:
            stamp("send_end", seq=int(seq.group(1)))
    consumer.deliver = stamped_send


PATCHES = {"control.live.hub": patch_live, "control.live.consumers": patch_consumers}


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            PATCHES[name](module)
        spec.loader.exec_module = patched
        return spec


sys.meta_path.insert(0, Finder())
"""

# (figure key, label, from mark, to mark)
PHASES = [
    ("wake", "change -> hub woken (Redis pub/sub)", "change", "wake"),
    ("to_sweep", "woken -> sweep starts (loop, thread hop)", "wake", "sweep_start"),
    ("sweep", "sweep (re-read + render)", "sweep_start", "sweep_end"),
    ("to_send", "sweep end -> card send starts", "sweep_end", "send_start"),
    ("send", "send (consumer.send)", "send_start", "send_end"),
    ("to_client", "sent -> client has it (daphne, socket)", "send_end", "recv"),
]


def profile_breakdown(log_path: Path, singles: list[tuple[int, float, float]]) -> dict[str, float]:
    """Where a single change's time goes, from the server's stamps (see PROFILE_HOOKS)."""
    import json

    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    wakes = sorted(e["t"] for e in events if e["e"] == "wake")
    sweeps = sorted((e["t"], "some") for e in events if e["e"] == "some_start")
    ends = sorted(e["t"] for e in events if e["e"] == "some_end")
    fulls = sorted(e["t"] for e in events if e["e"] == "full_start")
    full_ends = sorted(e["t"] for e in events if e["e"] == "full_end")
    full_spans = [(a, next((b for b in full_ends if b >= a), a)) for a in fulls]
    sends = {}
    for e in events:
        if e["e"] in ("send_start", "send_end"):
            sends.setdefault((e["e"], e["seq"]), e["t"])
    durations: dict[str, list[float]] = {key: [] for key, _, _, _ in PHASES}
    kinds = {"some": 0, "full": 0}
    behind_full: list[float] = []  # to_sweep of changes that woke the hub during a full sweep
    for seq, changed, received in singles:
        marks = {"change": changed, "recv": received}
        marks["wake"] = next((t for t in wakes if t >= changed), None)
        start = next(((t, k) for t, k in sweeps if marks["wake"] and t >= marks["wake"]), None)
        if marks["wake"] is None or start is None:
            continue
        marks["sweep_start"] = start[0]
        kinds[start[1]] += 1
        marks["sweep_end"] = next((t for t in ends if t >= start[0]), None)
        marks["send_start"] = sends.get(("send_start", seq))
        marks["send_end"] = sends.get(("send_end", seq))
        if None in marks.values():
            continue
        for key, _, a, b in PHASES:
            durations[key].append((marks[b] - marks[a]) * 1000)
        if any(a <= marks["send_start"] and marks["wake"] <= b for a, b in full_spans):
            behind_full.append((marks["recv"] - marks["change"]) * 1000)
    figures: dict[str, float] = {}
    sweeps_seen = f"{kinds['some']} targeted, {kinds['full']} full"
    print(f"profile of single changes (server stamps; sweeps that carried them: {sweeps_seen}):")
    for key, label, _, _ in PHASES:
        values = durations[key]
        if not values:
            continue
        s = common.summary(values)
        print(f"  {label:44s} p50 {s['p50']:7.2f} ms  p95 {s['p95']:7.2f} ms  (n {s['n']})")
        figures[f"profile_{key}_p50_ms"] = s["p50"]
        figures[f"profile_{key}_p95_ms"] = s["p95"]
    full = common.summary([(b - a) * 1000 for a, b in full_spans])
    waited = common.summary(behind_full) if behind_full else {"p50": 0.0}
    print(
        f"  full reads: {full['n']} (p50 {full['p50']:.1f} ms, p95 {full['p95']:.1f} ms); "
        f"{len(behind_full)} of {len(singles)} changes were handled while one ran, and took "
        f"p50 {waited['p50']:.1f} ms in all"
    )
    figures |= {
        "profile_full_sweep_p50_ms": full["p50"],
        "profile_full_sweep_p95_ms": full["p95"],
        "profile_behind_full_sweep_count": len(behind_full),
    }
    return figures


class Changer:
    """Plays the loops: status UPDATE + announce, each change numbered."""

    def __init__(self, agent_ids: list[str]) -> None:
        from agents.models import Agent
        from agents.runtime import lifecycle
        from agents.runtime.redis import get_redis

        self.agent_ids = agent_ids
        self.status = dict.fromkeys(agent_ids, "stopped")
        self.seq = 0
        self._model = Agent
        self._announce = lifecycle.announce
        self._client = get_redis()

    def change(self, agent_id: str) -> tuple[int, float, float]:
        """(seq, perf_counter, time.time()) just after the UPDATE committed."""
        self.seq += 1
        status = "stopped" if self.status[agent_id] == "error" else "error"
        self.status[agent_id] = status
        message = f"bench change {self.seq}"
        self._model.objects.filter(pk=agent_id).update(status=status, error_message=message)
        at, wall = time.perf_counter(), time.time()
        self._announce("agent", agent_id, self._client)
        return self.seq, at, wall


def setup_agents(n: int) -> list[str]:
    from agents.models import Agent

    ids = [f"bench_{i:04d}" for i in range(n)]
    Agent.objects.bulk_create(
        Agent(
            agent_id=agent_id,
            name=f"Bench {i}",
            kind="market_data",
            role="data_feed",
            symbols=["BTC-USD"],
            config={"source": "simulated", "tick_seconds": 1.0, "seed": i},
            status="stopped",
        )
        for i, agent_id in enumerate(ids)
    )
    return ids


def open_socket(url: str, cookie: str) -> common.WebSocket:
    """A logged-in /ws/control/ socket, past its first full frame."""
    ws = common.WebSocket(url.replace("http://", "ws://") + "/ws/control/", f"sessionid={cookie}", url)
    deadline = time.monotonic() + 30
    while True:
        message = ws.recv(max(0.0, deadline - time.monotonic()))
        if message is None:
            raise RuntimeError("the socket's first frame (the flow grid) did not arrive within 30 s")
        if 'id="flow"' in message:
            return ws


def drain(ws: common.WebSocket, seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ws.recv(left)


def single_changes(url: str, cookie: str, changer: Changer, n: int) -> list[tuple[int, float, float]]:
    """(seq, time.time() of the committed change, time.time() the card was read off the
    socket), one change at a time."""
    ws = open_socket(url, cookie)
    try:
        drain(ws, 0.5)
        samples = []
        for i in range(n):
            agent_id = changer.agent_ids[i % len(changer.agent_ids)]
            seq, at, wall = changer.change(agent_id)
            wanted = f"bench change {seq}<"
            deadline = time.monotonic() + 10
            while True:
                message = ws.recv(max(0.0, deadline - time.monotonic()))
                if message is None:
                    raise RuntimeError(f"change {seq} of {agent_id} did not reach the socket within 10 s")
                if message.startswith(f'<article id="agent-{agent_id}"') and wanted in message:
                    samples.append((seq, wall, wall + time.perf_counter() - at))
                    break
            drain(ws, SINGLE_GAP_SECONDS)
        return samples
    finally:
        ws.close()


def browser_changes(url: str, cookie: str, changer: Changer, n: int) -> list[float]:
    """Milliseconds from a committed change (time.time()) to the card inserted in the DOM."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.stack import VIEWPORT, launch_chromium

    # Playwright's sync API keeps an asyncio loop marked running in this thread, which
    # makes Django refuse ORM calls; the calls here are plain sync ones (tests/e2e does the same).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(base_url=url, viewport=VIEWPORT)
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": url}])
            page = context.new_page()
            page.goto("/")
            page.locator("#live-indicator").filter(has_text="Live").wait_for(timeout=30_000)
            # Cards of the socket's first full frame say no "bench change" this run waits for.
            page.evaluate(OBSERVER_JS)
            samples = []
            for i in range(n):
                agent_id = changer.agent_ids[i % len(changer.agent_ids)]
                seq, _, wall = changer.change(agent_id)
                handle = page.wait_for_function(
                    f"() => window.__benchSeen['{seq}']", timeout=10_000, polling=5
                )
                samples.append(handle.json_value() - wall * 1000)
                page.wait_for_timeout(SINGLE_GAP_SECONDS * 1000)
            return samples
        finally:
            browser.close()
    finally:
        playwright.stop()
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@dataclass
class Pushes:
    cards: list[tuple[str, int, float]] = field(default_factory=list)  # (agent, seq shown, t)
    panels: list[float] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0
    error: BaseException | None = None


def read_pushes(ws: common.WebSocket, out: Pushes, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            message = ws.recv(0.1)
            if message is None:
                continue
            at = time.perf_counter()
            out.messages += 1
            out.bytes += len(message)
            card = CARD.match(message)
            if card:
                seq = SEQ.search(message)
                out.cards.append((card.group(1), int(seq.group(1)) if seq else 0, at))
            elif message.startswith('<section id="system-panel"'):
                out.panels.append(at)
    except BaseException as exc:  # reported by the main thread
        out.error = exc


def flood(url: str, cookie: str, changer: Changer, rate: float, seconds: float) -> dict[str, float]:
    ws = open_socket(url, cookie)
    drain(ws, 0.5)
    pushes = Pushes()
    stop = threading.Event()
    reader = threading.Thread(target=read_pushes, args=(ws, pushes, stop), daemon=True)
    reader.start()
    changes: list[tuple[str, int, float]] = []
    try:
        total = int(rate * seconds)
        ids = changer.agent_ids
        started = time.perf_counter()
        for k in range(total):
            due = started + k / rate
            lag = due - time.perf_counter()
            if lag > 0:
                time.sleep(lag)  # pacing the flood, not waiting for a result
            agent_id = ids[k % len(ids)]
            seq, at, _ = changer.change(agent_id)
            changes.append((agent_id, seq, at))
        ended = time.perf_counter()
        final = {agent_id: seq for agent_id, seq, _ in changes}

        def caught_up() -> bool:
            shown: dict[str, int] = {}
            for agent_id, seq, _ in list(pushes.cards):
                shown[agent_id] = max(seq, shown.get(agent_id, 0))
            return all(shown.get(a, 0) >= s for a, s in final.items())

        try:
            common.wait_until(caught_up, 10, "every object's final state to be pushed", interval=0.05)
        except RuntimeError:
            pass  # counted below as lost changes
    finally:
        stop.set()
        reader.join(timeout=5)
        ws.close()
    if pushes.error is not None:
        raise RuntimeError(f"the socket reader failed: {pushes.error!r}")
    return flood_figures(changes, pushes, started, ended)


def flood_figures(
    changes: list[tuple[str, int, float]], pushes: Pushes, started: float, ended: float
) -> dict[str, float]:
    duration = ended - started
    by_agent: dict[str, list[tuple[int, float]]] = {}
    for agent_id, seq, at in pushes.cards:
        by_agent.setdefault(agent_id, []).append((seq, at))
    per_object = [
        sum(1 for _, at in by_agent.get(agent_id, []) if started <= at <= ended) / duration
        for agent_id in {a for a, _, _ in changes}
    ]
    staleness: list[float] = []
    lost = 0
    for agent_id, seq, at in changes:
        # The first push of this object showing this change or a later one (it cannot
        # precede the change; max() only absorbs the microseconds before `at` was taken).
        shown = next((t for s, t in by_agent.get(agent_id, []) if s >= seq), None)
        if shown is None:
            lost += 1
        else:
            staleness.append(max(0.0, shown - at) * 1000)
    stale = common.summary(staleness)
    panels = sum(1 for at in pushes.panels if started <= at <= ended) / duration
    return {
        "flood_changes_count": len(changes),
        "flood_rate_achieved_per_s": len(changes) / duration,
        "flood_seconds": duration,
        "flood_objects_count": len(per_object),
        "flood_pushes_per_object_per_s_mean": sum(per_object) / len(per_object),
        "flood_pushes_per_object_per_s_max": max(per_object),
        "flood_panel_pushes_per_s": panels,
        "flood_messages_per_s": pushes.messages / duration,
        "flood_kib_per_s": pushes.bytes / 1024 / duration,
        "flood_staleness_p50_ms": stale["p50"],
        "flood_staleness_p95_ms": stale["p95"],
        "flood_staleness_max_ms": stale["max"],
        "flood_lost_changes_count": lost,
    }


def main(ws_: common.Workspace) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100, help="single changes (socket and browser)")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0, help="flood: changes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="flood: how long")
    parser.add_argument("--quick", action="store_true", help="30 single changes, a 3 s flood")
    parser.add_argument("--no-browser", action="store_true", help="leave Chromium out")
    parser.add_argument(
        "--profile", action="store_true", help="stamp the hub's steps in daphne; print where time goes"
    )
    args = parser.parse_args()
    if args.quick:
        args.changes, args.seconds = 30, 3.0
    info = common.print_header("push latency: state change -> websocket client / Chromium DOM; flood")
    print(f"# via: {VIA}")
    flood_text = f"flood {args.rate:.0f}/s for {args.seconds:.0f} s"
    print(f"# {args.agents} agents; {args.changes} single changes; {flood_text}")
    changer = Changer(setup_agents(args.agents))
    cookie = common.session_cookie(common.make_operator())
    profile_log = ws_.folder / "profile.jsonl"
    if args.profile:
        hooks = ws_.folder / "profile_hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(PROFILE_HOOKS)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
        os.environ["BENCH_PROFILE_LOG"] = str(profile_log)
    server = common.daphne(ws_)
    figures: dict[str, float] = {}
    try:
        singles = single_changes(server.url, cookie, changer, args.changes)
        single = common.summary([(received - changed) * 1000 for _, changed, received in singles])
        print(
            f"change -> card on the socket: p50 {single['p50']:.1f} ms, p95 {single['p95']:.1f} ms, "
            f"max {single['max']:.1f} ms (n {single['n']})",
            flush=True,
        )
        figures |= {"ws_p50_ms": single["p50"], "ws_p95_ms": single["p95"], "ws_max_ms": single["max"]}
        if args.profile:
            figures |= profile_breakdown(profile_log, singles)
        if not args.no_browser:
            dom = common.summary(browser_changes(server.url, cookie, changer, args.changes))
            print(
                f"change -> card in Chromium's DOM: p50 {dom['p50']:.1f} ms, p95 {dom['p95']:.1f} ms, "
                f"max {dom['max']:.1f} ms (n {dom['n']})",
                flush=True,
            )
            figures |= {"dom_p50_ms": dom["p50"], "dom_p95_ms": dom["p95"], "dom_max_ms": dom["max"]}
        f = flood(server.url, cookie, changer, args.rate, args.seconds)
        print(
            f"flood: {f['flood_changes_count']} changes in {f['flood_seconds']:.1f} s "
            f"({f['flood_rate_achieved_per_s']:.0f}/s over {f['flood_objects_count']} objects)\n"
            f"  card pushes per object per second: mean {f['flood_pushes_per_object_per_s_mean']:.1f}, "
            f"max {f['flood_pushes_per_object_per_s_max']:.1f}; "
            f"system panel {f['flood_panel_pushes_per_s']:.1f}/s; "
            f"{f['flood_messages_per_s']:.0f} messages/s, {f['flood_kib_per_s']:.0f} KiB/s\n"
            f"  staleness (change -> a push showing it or later): p50 {f['flood_staleness_p50_ms']:.0f} ms, "
            f"p95 {f['flood_staleness_p95_ms']:.0f} ms, max {f['flood_staleness_max_ms']:.0f} ms; "
            f"lost {f['flood_lost_changes_count']}"
        )
        figures |= f
    finally:
        server.stop()
    for name, limit in TARGETS.items():
        if name in figures:
            verdict = "met" if figures[name] <= limit else "MISSED"
            print(f"target {name} <= {limit:g}: {verdict} ({figures[name]:.1f})")
    common.emit_result("push_latency", args.quick, info, VIA, figures, TARGETS)


if __name__ == "__main__":
    workspace = common.workspace("push")
    try:
        main(workspace)
    finally:
        workspace.close()

"""A loop worker frozen by SIGSTOP (issue 10, item 20): its loops are shown stale (the
status as it is, plus "stale: no heartbeat for N s") on the cards, the session rows and
in the API; the stale alert stays, through the reconciler's relaunch of the lost loops,
until a loop ticks again; the system panel does not offer Start system for loops that are
wanted running (the alert says what is wrong); health counts them. SIGCONT: the relaunched
loops run and every trace of it goes."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection

from agents.models import Agent
from agents.runtime.redis import get_redis
from agents.states import Status
from control import health
from control.reconcile import reconcile
from control.web import dashboard_context as page
from tests.conftest import wait_for
from tests.fault.conftest import stop_sessions_and_check, wait_for_new_fills


def holds_the_database() -> bool:
    """Whether a frozen process is inside a transaction (it would hold every writer up
    until it is thawed: SQLite's write lock, or row locks on PostgreSQL)."""
    if connection.vendor == "sqlite":
        probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.5, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
        )
        return cursor.fetchone()[0] > 0


def group_stopped(pgid: int) -> bool:
    """Whether every process of the group is in the stopped state ('T' in /proc/PID/stat).
    kill() returns before a process running on another core has actually stopped; until
    it has, it may still open a transaction after the probe looked."""
    states = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return bool(states) and all(state in "tT" for state in states)


def freeze_between_transactions(worker) -> None:
    """SIGSTOP the worker at a moment it holds no transaction open: what this test is
    about is a frozen loop, not a database locked by it (tests/fault/test_database_outage.py)."""
    for _ in range(50):
        os.killpg(worker.proc.pid, signal.SIGSTOP)
        wait_for(lambda: group_stopped(worker.proc.pid), timeout=5, what="the worker's processes stopped")
        if not holds_the_database():
            return
        os.killpg(worker.proc.pid, signal.SIGCONT)
        time.sleep(0.05)  # let it finish the transaction (a fault injection's timing, not a sync)
    raise AssertionError("the worker was inside a transaction at every try")


def leases_held() -> list[str]:
    return list(get_redis().scan_iter(match=f"{django_settings.REDIS_PREFIX}lease:*", count=1000))


def panel() -> dict:
    cache.delete("control:health")  # the report is cached for a few seconds
    return page.system_panel()


def stale_alerts(report: dict) -> list[str]:
    return [a["text"] for a in report["alerts"] if a["text"].startswith("Stale heartbeat")]


def all_stale(client, market) -> bool:
    """Every loop of the market (frozen at slightly different ticks) is past the threshold."""
    agents = [a for a in client.get("/api/agents").json() if a["agent_id"] in market.agent_ids]
    sessions = client.get("/api/paper-trading/sessions").json()
    return all(row["stale_seconds"] for row in agents + sessions)


def assert_shown_stale(client, market, status: str) -> None:
    agents = [a for a in client.get("/api/agents").json() if a["agent_id"] in market.agent_ids]
    assert len(agents) == len(market.agent_ids)
    for agent in agents:
        assert agent["status"] == status, agent
        assert agent["stale_seconds"] and agent["stale_seconds"] >= 2, agent
    sessions = client.get("/api/paper-trading/sessions").json()
    assert all(s["status"] == status and s["stale_seconds"] for s in sessions), sessions
    html = client.get("/").content.decode()
    assert html.count("stale: no heartbeat for") == len(agents) + len(sessions)
    assert 'data-action="system-start"' not in html, "Start system offered for loops wanted running"
    report = panel()
    assert not report["can_start"]
    assert stale_alerts(report) and all(a in stale_alerts(report)[0] for a in market.agent_ids)
    assert health.health()["score"] < 100


def test_a_frozen_worker_shows_its_loops_stale_until_they_tick_again(
    fast_recovery, spawn_worker, market, directives, operator_client, settings
):
    settings.HEARTBEAT_STALE_SECONDS = 2  # this process's threshold (page, API, alert)
    frozen = spawn_worker()
    market.add_session("fz")
    # The decision agent never runs here (the driver writes its stream); disabled, it is
    # not something Start system would start.
    Agent.objects.filter(pk=market.decision_id).update(enabled=False)
    with directives():
        market.start_everything()
        wait_for_new_fills(market, ["fz"], what="trading")
        assert not stale_alerts(panel())
        freeze_between_transactions(frozen)
        try:
            wait_for(lambda: all_stale(operator_client, market), what="every frozen loop stale")
            assert_shown_stale(operator_client, market, Status.RUNNING)
            # The leases lapse and the reconciler relaunches the lost loops: their new runs
            # wait in the queue of the frozen worker. Still stale, still no Start system.
            wait_for(lambda: not leases_held(), timeout=20, what="the frozen loops' leases to lapse")
            assert len(reconcile().restarted) == len(market.runnables())
            assert_shown_stale(operator_client, market, Status.STARTING)
        finally:
            os.killpg(frozen.proc.pid, signal.SIGCONT)
        wait_for(market.all_live, timeout=30, what="the relaunched loops running")
        wait_for(lambda: not stale_alerts(panel()), what="the alert to go once the loops tick")
        agents = operator_client.get("/api/agents").json()
        assert all(a["stale_seconds"] is None for a in agents), agents
        assert "stale: no heartbeat" not in operator_client.get("/").content.decode()
        assert Agent.objects.filter(status=Status.RUNNING).count() == len(market.agent_ids)
        wait_for_new_fills(market, ["fz"], what="trading again")
    stop_sessions_and_check(market, [frozen], allow_handover=True)

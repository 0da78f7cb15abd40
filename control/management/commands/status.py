import time

from django.utils import timezone

from agents.runtime import keys
from agents.runtime.redis import get_redis
from control import presenters
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Print the system status, a table of agents and a table of paper trading sessions."

    def run(self, *args, **options):
        system = presenters.system_status()
        agents, sessions = system["agents"], system["sessions"]
        self.stdout.write(
            f"system: {system['status']}  "
            f"agents: {agents['total']} total, {agents['running']} running, {agents['error']} in error  "
            f"sessions: {sessions['total']} total, {sessions['running']} running, "
            f"{sessions['paused']} paused, {sessions['error']} in error  "
            f"trades in 24 h: {system['recent_trades']}   ({timezone.now():%Y-%m-%d %H:%M:%S %Z})"
        )
        agent_rows = list(presenters.agents_queryset())
        beats = self._heartbeats("agent", [a.agent_id for a in agent_rows])
        notes = presenters.loop_notes("agent", agent_rows)
        rows = [("AGENT", "KIND", "ROLE", "STATUS", "WANTED", "HEARTBEAT", "ERROR", "NOTE")]
        for agent, age in zip(agent_rows, beats, strict=True):
            rows.append(
                (
                    agent.agent_id,
                    agent.kind,
                    agent.role,
                    agent.status,
                    agent.desired_state,
                    age,
                    agent.error_message[:60],
                    note(notes.get(agent.agent_id, {})),
                )
            )
        self._table(rows)

        session_rows = presenters.session_dicts()
        if not session_rows:
            return
        beats = self._heartbeats("session", [s["session_id"] for s in session_rows])
        rows = [
            ("SESSION", "STATUS", "WANTED", "EQUITY", "PNL", "PNL%", "TRADES", "HEARTBEAT", "ERROR", "NOTE")
        ]
        for session, age in zip(session_rows, beats, strict=True):
            rows.append(
                (
                    session["session_id"],
                    session["status"],
                    session["desired_state"],
                    session["equity"],
                    session["pnl"],
                    f"{session['pnl_pct']:.2f}",
                    session["trades"],
                    age,
                    (session["error_message"] or "")[:60],
                    note(session),
                )
            )
        self._table(rows)

    def _heartbeats(self, kind: str, ids: list[str]) -> list[str]:
        """How long ago each loop ticked, from its Redis heartbeat ("-" without one)."""
        if not ids:
            return []
        now = time.time()
        beats = get_redis().mget([keys.heartbeat(kind, rid) for rid in ids])
        return [f"{now - float(beat):.1f}s ago" if beat else "-" for beat in beats]

    def _table(self, rows: list[tuple]) -> None:
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def note(loop: dict) -> str:
    """What the loop goes through besides its status (presenters.loop_notes), in words."""
    if loop.get("stale_seconds"):
        return f"stale: no heartbeat for {loop['stale_seconds']:.0f} s"
    if loop.get("waiting_for"):
        what = "Redis" if loop["waiting_for"] == "redis" else f"the {loop['waiting_for']}"
        since = loop.get("waiting_since")
        age = f" for {(timezone.now() - since).total_seconds():.0f} s" if since else ""
        return f"waiting for {what}{age}"
    return ""

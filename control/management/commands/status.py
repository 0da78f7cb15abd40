import time

from django.utils import timezone

from agents.runtime import keys
from agents.runtime.redis import get_redis
from control import presenters
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Print the system status and a table of agents."

    def run(self, *args, **options):
        system = presenters.system_status()
        counts = system["agents"]
        self.stdout.write(
            f"system: {system['status']}  agents: {counts['total']} total, {counts['running']} running, "
            f"{counts['error']} in error   ({timezone.now():%Y-%m-%d %H:%M:%S %Z})"
        )
        agents = list(presenters.agents_queryset())
        beats = get_redis().mget([keys.heartbeat("agent", a.agent_id) for a in agents]) if agents else []
        rows = [("AGENT", "KIND", "ROLE", "STATUS", "WANTED", "HEARTBEAT", "ERROR")]
        now = time.time()
        for agent, beat in zip(agents, beats, strict=True):
            age = f"{now - float(beat):.1f}s ago" if beat else "-"
            rows.append(
                (
                    agent.agent_id,
                    agent.kind,
                    agent.role,
                    agent.status,
                    agent.desired_state,
                    age,
                    agent.error_message[:60],
                )
            )
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

from control.management.base import ControlCommand
from control.reconcile import reconcile


class Command(ControlCommand):
    help = (
        "Bring every agent back to its desired state after a restart: restart lost loops, "
        "stop strays, rewrite Redis flags from the database. Idempotent."
    )

    def run(self, *args, **options):
        # No start grace: after a restart, queued start tasks may be gone with the broker.
        report = reconcile(start_grace_seconds=0)
        self.stdout.write(self.style.SUCCESS(f"restore: {report.summary()}"))
        for agent_id in report.restarted:
            self.stdout.write(f"restarted {agent_id}")

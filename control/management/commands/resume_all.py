from control import services
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Resume every paused session; the others are listed as skipped, with the reason."

    def run(self, *args, **options):
        result = services.resume_all_sessions()
        listed = f": {', '.join(result.changed)}" if result.changed else ""
        self.stdout.write(self.style.SUCCESS(f"resumed {len(result.changed)}{listed}"))
        for skipped in result.skipped:
            self.stdout.write(f"skipped {skipped['session_id']}: {skipped['reason']}")

from control import services
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Pause every running session; the others are listed as skipped, with the reason."

    def run(self, *args, **options):
        result = services.pause_all_sessions()
        listed = f": {', '.join(result.changed)}" if result.changed else ""
        self.stdout.write(self.style.SUCCESS(f"paused {len(result.changed)}{listed}"))
        for skipped in result.skipped:
            self.stdout.write(f"skipped {skipped['session_id']}: {skipped['reason']}")

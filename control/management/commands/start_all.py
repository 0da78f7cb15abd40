from control import services
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Start every enabled agent (upstream first)."

    def run(self, *args, **options):
        result = services.start_system()
        self.stdout.write(self.style.SUCCESS(f"started {len(result.changed)}: {', '.join(result.changed)}"))
        for skipped in result.skipped:
            self.stdout.write(f"skipped {skipped['id']}: {skipped['reason']}")

from control import services
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Stop every running agent gracefully (downstream first)."

    def run(self, *args, **options):
        result = services.stop_system()
        self.stdout.write(self.style.SUCCESS(f"stopping {len(result.changed)}: {', '.join(result.changed)}"))
        for skipped in result.skipped:
            self.stdout.write(f"skipped {skipped['id']}: {skipped['reason']}")

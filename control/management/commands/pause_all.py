from control import services
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Pause every running session; the others are listed as skipped, with the reason."

    def run(self, *args, **options):
        self.write_bulk("paused", services.pause_all_sessions(), "session_id")

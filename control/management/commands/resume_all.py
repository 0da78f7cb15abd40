from control import services
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Resume every paused session; the others are listed as skipped, with the reason."

    def run(self, *args, **options):
        self.write_bulk("resumed", services.resume_all_sessions(), "session_id")

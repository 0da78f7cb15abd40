from control import services
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Start every enabled agent (upstream first), then every session that is not archived."

    def run(self, *args, **options):
        self.write_bulk("started", services.start_system())

from control import services
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = "Stop every session, then every running agent gracefully (downstream first)."

    def run(self, *args, **options):
        self.write_bulk("stopping", services.stop_system())

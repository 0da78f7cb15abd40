from control.demo import ensure_admin, seed_agents, seed_sessions
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = (
        "Create the demo agent graph and two paper trading sessions (idempotent) "
        "and, with --admin, an admin user."
    )
    redis_needed = False

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin", action="store_true", help="also create user 'admin' with a random password"
        )

    def run(self, *args, admin: bool = False, **options):
        created = seed_agents()
        self.stdout.write(f"demo agents: {', '.join(created) if created else 'already present'}")
        sessions = seed_sessions()
        self.stdout.write(f"demo sessions: {', '.join(sessions) if sessions else 'already present'}")
        if admin:
            was_created, path = ensure_admin()
            verb = "created" if was_created else "exists"
            self.stdout.write(f"user 'admin' {verb}; its password is in {path}")

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from control.management.base import ControlCommand
from control.models import ApiToken


class Command(ControlCommand):
    help = "Issue an API token for a user and print it (alone, on stdout). Only its hash is stored."
    redis_needed = False

    def add_arguments(self, parser):
        parser.add_argument("username")

    def run(self, *args, username: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user named {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive.")
        _token, raw = ApiToken.issue(user)
        self.stdout.write(raw)

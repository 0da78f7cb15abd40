"""Shared by the control commands: fail clearly when a dependency is down."""

from __future__ import annotations

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.utils import Error as DatabaseError

from agents.net.redact import redact_text, redact_url
from agents.runtime.redis import get_redis
from control.errors import ServiceError


def require_backends(*, redis_needed: bool = True) -> None:
    """Raise CommandError naming the database or Redis when it does not answer."""
    try:
        connection.ensure_connection()
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except DatabaseError as exc:
        raise CommandError(
            f"The database is unreachable ({connection.vendor}): {redact_text(str(exc))}"
        ) from exc
    if redis_needed:
        try:
            get_redis().ping()
        except redis.RedisError as exc:
            raise CommandError(
                f"Redis at {redact_url(settings.REDIS_URL)} is unreachable: {redact_text(str(exc))}"
            ) from exc


class ControlCommand(BaseCommand):
    """A command that changes or reads runtime state: checks backends, maps service errors."""

    redis_needed = True

    def handle(self, *args, **options):
        require_backends(redis_needed=self.redis_needed)
        try:
            return self.run(*args, **options)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc

    def run(self, *args, **options):
        raise NotImplementedError

    def write_bulk(self, verb: str, result, id_key: str = "id") -> None:
        """`<verb> N: a, b` then one line per skipped runnable with the reason."""
        listed = f": {', '.join(result.changed)}" if result.changed else ""
        self.stdout.write(self.style.SUCCESS(f"{verb} {len(result.changed)}{listed}"))
        for skipped in result.skipped:
            self.stdout.write(f"skipped {skipped[id_key]}: {skipped['reason']}")

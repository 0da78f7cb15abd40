from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction

from agents.kinds import ConfigError
from control import demo_live
from control.demo import ensure_admin, seed_agents, seed_sessions, valid_configs
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = (
        "Create the demo agent graph and two paper trading sessions (idempotent) "
        "and, with --admin, an admin user. With --live <exchange id> (or DEMO_LIVE), also "
        "a graph on that exchange's live public prices and real news feeds."
    )
    redis_needed = False

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin", action="store_true", help="also create user 'admin' with a random password"
        )
        parser.add_argument(
            "--live",
            metavar="EXCHANGE",
            default=None,
            help="also build the demo on this exchange's live prices (a ccxt id: binance, kraken, "
            "coinbase, bitstamp...); default: the DEMO_LIVE setting, empty for none",
        )
        parser.add_argument(
            "--feed",
            action="append",
            metavar="URL",
            help="an RSS/Atom feed for the live sentiment agent (repeat for several; "
            "default: a few well-known crypto news feeds)",
        )
        parser.add_argument(
            "--base-url", metavar="URL", help="the exchange API's address (a proxy or private gateway)"
        )
        parser.add_argument("--quote", metavar="CODE", help="quote currency on the exchange (USD, USDT...)")

    def run(self, *args, admin: bool = False, live=None, feed=None, base_url=None, quote=None, **options):
        exchange = (live if live is not None else settings.DEMO_LIVE).strip().lower()
        live_agents, live_sessions = [], []
        if exchange:
            # Everything is checked before anything is written: offline, nothing changes.
            try:
                name = demo_live.check_reachable(exchange, base_url)
                live_agents = demo_live.live_agents(
                    exchange, name, feeds=feed, base_url=base_url, quote=quote
                )
                valid_configs(live_agents)
            except demo_live.LiveDemoError as exc:
                raise CommandError(str(exc)) from None
            except ConfigError as exc:
                raise CommandError(f"The live demo's config is refused: {exc}") from None
            live_sessions = demo_live.live_sessions(name)
        with transaction.atomic():
            created = seed_agents()
            sessions = seed_sessions()
            if live_agents:
                created += seed_agents(live_agents)
                sessions += seed_sessions(live_sessions)
        self.stdout.write(f"demo agents: {', '.join(created) if created else 'already present'}")
        self.stdout.write(f"demo sessions: {', '.join(sessions) if sessions else 'already present'}")
        if live_agents:
            self.stdout.write(f"live demo on {exchange}: start its agents and sessions from the panel")
        if admin:
            was_created, path = ensure_admin()
            verb = "created" if was_created else "exists"
            self.stdout.write(f"user 'admin' {verb}; its password is in {path}")

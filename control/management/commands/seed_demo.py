from django.core.management.base import CommandError

from control.demo import ensure_admin, seed_agents, seed_sessions
from control.management.base import ControlCommand


class Command(ControlCommand):
    help = (
        "Create the demo agent graph and two paper trading sessions (idempotent) "
        "and, with --admin, an admin user. --live EXCHANGE switches the demo's market data "
        "to that exchange's live prices (needs network; docs/exchange-prices.md), "
        "--simulated back to the simulated market."
    )
    redis_needed = False

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin", action="store_true", help="also create user 'admin' with a random password"
        )
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--live",
            metavar="EXCHANGE",
            help="trade the demo on this exchange's live prices (a ccxt id: binance, kraken, coinbase, ...)",
        )
        source.add_argument(
            "--simulated", action="store_true", help="trade the demo on the simulated market again"
        )
        parser.add_argument("--base-url", help="with --live: a gateway or proxy in front of the exchange")
        parser.add_argument("--timeframe", default="1m", help="with --live: bar length (default 1m)")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="OURS=THEIRS",
            help="with --live: the exchange market of a demo symbol, e.g. BTC-USD=BTC/USDC (repeatable)",
        )
        parser.add_argument(
            "--feed",
            action="append",
            default=[],
            metavar="URL",
            help="with --live: an RSS/Atom feed for the news sentiment agent (repeatable; "
            "default: a few well-known crypto news feeds)",
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
        if options.get("live"):
            self._live(options)
        elif options.get("simulated"):
            from control.live_demo import switch_to_simulated

            self.stdout.write(f"demo market data: {switch_to_simulated()}")

    def _live(self, options) -> None:
        from control.live_demo import check_news_feeds, switch_news_to_feeds, switch_to_exchange

        mapped = {}
        for pair in options["map"]:
            ours, sep, theirs = pair.partition("=")
            if not sep or not ours.strip() or not theirs.strip():
                raise CommandError(f"--map {pair!r}: write OURS=THEIRS, e.g. BTC-USD=BTC/USDT.")
            mapped[ours.strip().upper()] = theirs.strip()
        if options["feed"]:
            check_news_feeds(options["feed"])
        switched = switch_to_exchange(options["live"], options.get("base_url"), options["timeframe"], mapped)
        self.stdout.write(f"demo market data: {switched.name}")
        for ours, theirs in switched.symbol_map.items():
            self.stdout.write(f"  {ours} trades at {theirs}")
        feeds = switch_news_to_feeds(options["feed"])
        self.stdout.write(f"demo news: {len(feeds)} RSS/Atom feeds ({', '.join(feeds)})")

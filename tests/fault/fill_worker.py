"""A separate OS process that fills orders, for the concurrency tests.

    python -m tests.sessions.fill_worker MARK ORDER_ID [ORDER_ID...]

Uses DATABASE_URL (the test database). Prints "ready" once Django is set up and waits
for a line on stdin, so that two workers start filling at the same moment; then fills
each order at MARK in the order given and prints {order_id: outcome} as JSON.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    import django

    django.setup()
    from django.db import connection

    from sessions.broker import fill_market_order

    mark, *order_ids = argv
    connection.ensure_connection()  # connected before the start, so both start level
    print("ready", flush=True)
    sys.stdin.readline()
    outcomes = {order_id: str(fill_market_order(order_id, mark).outcome) for order_id in order_ids}
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

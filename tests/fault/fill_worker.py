"""A separate OS process that fills orders (or pauses a session), for the fill races.

    python -m tests.fault.fill_worker [--gap-ms N] MARK ORDER_ID [ORDER_ID...]
    python -m tests.fault.fill_worker --pause SESSION_ID AFTER_FILLS

Uses DATABASE_URL (the test database). Prints "ready" once Django is set up and waits
for a line on stdin, so that several processes start at the same moment; then fills
each order at MARK in the order given and prints {order_id: outcome} as JSON, or waits
until the session has AFTER_FILLS fills and pauses it through control.services (as the
API does), printing {"paused": id, "fills_seen": n}. --gap-ms paces the fills as an
execution agent handling one message after another does; without it a tight loop of
fills holds SQLite's write lock almost without a break, and a pause waits them all out.
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

    connection.ensure_connection()  # connected before the start, so all start level
    print("ready", flush=True)
    sys.stdin.readline()
    if argv[0] == "--pause":
        import time

        from control.services import pause_session
        from sessions.models import Fill

        session_id, after = argv[1], int(argv[2])
        deadline = time.monotonic() + 60
        while (seen := Fill.objects.filter(session_id=session_id).count()) < after:
            if time.monotonic() > deadline:
                raise SystemExit(f"no {after} fills within 60 s")
            time.sleep(0.001)  # polling another process's commits; there is nothing to block on
        pause_session(session_id)
        print(json.dumps({"paused": session_id, "fills_seen": seen}), flush=True)
        return
    import time

    from sessions.broker import fill_market_order

    gap = 0.0
    if argv[0] == "--gap-ms":
        gap, argv = float(argv[1]) / 1000, argv[2:]
    mark, *order_ids = argv
    outcomes = {}
    for order_id in order_ids:
        outcomes[order_id] = str(fill_market_order(order_id, mark).outcome)
        if gap:
            time.sleep(gap)
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""A pytest plugin (`-p tests.isolation`), imported before Django is set up.

Every test run gets its own Redis key prefix (unless one is given), so runs sharing the
machine's Redis never see each other's keys; the suite deletes only keys under it.
"""

import os
import tempfile
import uuid

_run = uuid.uuid4().hex[:10]
os.environ.setdefault("REDIS_PREFIX", f"test-{_run}:")
os.environ.setdefault("TEST_RUN_ID", _run)
# Short leases and heartbeats so crash-recovery tests take seconds, not minutes.
os.environ.setdefault("LEASE_EXTRA_SECONDS", "2")
os.environ.setdefault("HEARTBEAT_DB_SECONDS", "0.5")
os.environ.setdefault("SESSION_TICK_SECONDS", "0.2")
os.environ.setdefault("SESSION_EQUITY_SECONDS", "0.5")
os.environ.setdefault("STOP_GRACE_SECONDS", "3")
os.environ.setdefault("START_GRACE_SECONDS", "10")
# Agent log files and market data of this run, removed at the end of the session.
os.environ.setdefault("LOG_DIR", tempfile.mkdtemp(prefix=f"pt-test-logs-{_run}-"))
os.environ.setdefault("MARKET_DATA_DIR", tempfile.mkdtemp(prefix=f"pt-test-data-{_run}-"))

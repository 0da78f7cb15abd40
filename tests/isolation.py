"""A pytest plugin (`-p tests.isolation`), imported before Django is set up.

Every test run gets its own Redis key prefix (unless one is given), so runs sharing the
machine's Redis never see each other's keys; the suite deletes only keys under it.
"""

import os
import uuid

os.environ.setdefault("REDIS_PREFIX", f"test-{uuid.uuid4().hex[:10]}:")
# Short leases and heartbeats so crash-recovery tests take seconds, not minutes.
os.environ.setdefault("LEASE_EXTRA_SECONDS", "2")
os.environ.setdefault("HEARTBEAT_DB_SECONDS", "0.5")
os.environ.setdefault("STOP_GRACE_SECONDS", "3")
os.environ.setdefault("START_GRACE_SECONDS", "10")

"""The lease that allows at most one live loop per runnable, and fenced writes.

A loop holds `lease:<kind>:<id>` = its run_id. Every write a loop makes to Redis goes
through a script that first checks it still holds the lease, so a loop that stalled
past its lease (and was replaced) cannot write anything afterwards.
"""

from __future__ import annotations

import json
from typing import Any

import redis

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease, then keys only the holder's loop writes (its heartbeat), deleted with it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', unpack(KEYS))
end
return 0
"""

# One round trip per tick: renew the lease, write the heartbeat and counters, and read
# the flags. KEYS: lease, heartbeat, metrics, flags.
# ARGV: token, lease_ms, now, heartbeat_ttl_s, n_incr, incr pairs..., set pairs...
_TICK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
local n = tonumber(ARGV[5])
local i = 6
for _ = 1, n do
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local out = redis.call('HGETALL', KEYS[4])
table.insert(out, 1, 1)
return out
"""

# KEYS: lease, stream. ARGV: token, maxlen, payload.
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[3])
"""


class Fenced(RuntimeError):
    """The loop no longer holds its lease: it has been superseded and must stop."""


class Lease:
    """The lease of one loop incarnation (`token` is its run_id)."""

    def __init__(self, client: redis.Redis, key: str, token: str, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.token = token
        self.ttl_ms = ttl_ms
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._tick = client.register_script(_TICK)
        self._publish = client.register_script(_PUBLISH)

    def acquire(self) -> bool:
        """Take the lease if free (or already ours); False while another loop holds it."""
        return bool(self._acquire(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self, *also: str) -> None:
        """Give the lease up, and delete `also` (keys of the holder's) with it, if held."""
        self._release(keys=[self.key, *also], args=[self.token])

    def holder(self) -> str | None:
        return self.client.get(self.key)

    def tick(
        self,
        heartbeat_key: str,
        metrics_key: str,
        flags_key: str,
        now: float,
        heartbeat_ttl_s: int,
        incr: dict[str, int],
        gauges: dict[str, Any],
    ) -> dict[str, str]:
        """Renew, heartbeat, count; return the flags hash. Raises Fenced if not holder."""
        args: list[Any] = [self.token, self.ttl_ms, repr(now), heartbeat_ttl_s, len(incr)]
        for k, v in incr.items():
            args += [k, int(v)]
        for k, v in gauges.items():
            args += [k, v]
        out = self._tick(keys=[self.key, heartbeat_key, metrics_key, flags_key], args=args)
        if not out or int(out[0]) != 1:
            raise Fenced(f"lease {self.key} is no longer held by {self.token}")
        flat = out[1:]
        return dict(zip(flat[::2], flat[1::2], strict=True))

    def publish(self, stream_key: str, payload: dict[str, Any], maxlen: int) -> str:
        """XADD to `stream_key` only while holding the lease; raises Fenced otherwise."""
        msg_id = self._publish(
            keys=[self.key, stream_key], args=[self.token, maxlen, json.dumps(payload, separators=(",", ":"))]
        )
        if not msg_id:
            raise Fenced(f"lease {self.key} is no longer held by {self.token}; publish refused")
        return msg_id

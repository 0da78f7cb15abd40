"""When a loop that should be live is stale: the one rule the reconciler's alert, health,
the page and the API share.

A loop's Redis heartbeat (agents.runtime.loop) is written every tick and deleted when the
loop ends cleanly (Loop._release). So a heartbeat older than the threshold, or none
at all long after the runnable was (re)started, means its loop stopped ticking without
ending: its worker is frozen, overloaded or gone. The reconciler's relaunch of such a loop
does not make it fresh (the old heartbeat stays until a new loop ticks), so the warning
stays until a loop ticks again.
"""

from __future__ import annotations

import datetime as dt
import math

from agents.states import Desired, Status

# A loop that should be live has a heartbeat unless it is in one of these.
NOT_LIVE = (Status.ERROR, Status.READY)


def stale_for(
    desired: str,
    status: str,
    changed_at: dt.datetime | None,
    beat: float | None,
    now: float,
    threshold: float,
) -> float | None:
    """Seconds without a heartbeat, when past `threshold` for a loop that should be live;
    None when it is fresh or not meant to run; infinite when it never ticked and no
    start is known. `beat` is the Redis heartbeat (Unix time)
    or None; `changed_at` when its status last changed (a start: no heartbeat yet)."""
    if desired not in (Desired.RUNNING, Desired.PAUSED) or status in NOT_LIVE:
        return None
    if beat is not None:
        age = now - beat
    elif changed_at is not None:
        age = now - changed_at.timestamp()
    else:
        return math.inf  # never ticked, and no start to count from
    return age if age > threshold else None


def beat_time(raw: str | bytes | None) -> float | None:
    """A heartbeat as Redis holds it (Unix time as text), or None."""
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None

"""Messages per second along each edge of the agent graph, from its consumer's counter."""

from __future__ import annotations

import time
from typing import Any

# The counter's growth is measured over at least this long, so a rate does not jump
# with every sweep.
MIN_WINDOW_SECONDS = 2.0


class EdgeRates:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], tuple[int, float]] = {}
        self._rates: dict[tuple[str, str], float] = {}

    def with_rates(self, edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each edge with its "rate" and whether it is "live" (messages moving, consumer running)."""
        now = time.monotonic()
        out = []
        for edge in edges:
            key = (edge["from"], edge["to"])
            previous = self._counts.get(key)
            if previous is not None and now - previous[1] >= MIN_WINDOW_SECONDS:
                count, at = previous
                self._rates[key] = max(0.0, (edge["count"] - count) / (now - at))
                self._counts[key] = (edge["count"], now)
            elif previous is None:
                self._counts[key] = (edge["count"], now)
            rate = round(self._rates.get(key, 0.0), 1)
            out.append({**edge, "rate": rate, "live": rate > 0 and edge["consumer_running"]})
        return out

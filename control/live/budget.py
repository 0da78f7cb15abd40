"""How often one object on the page may be pushed: a token bucket per DOM id.

A person clicking pause sees two changes in quick succession (pausing, then paused) and
both should arrive at once; an object changing 50 times a second should not cost 50
re-renders and socket messages a second. A small burst, then a steady rate, gives both:
the latest state of a throttled object goes out when its next token is due.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RATE_PER_SECOND = 4.5
BURST = 2.0


@dataclass
class PushBudget:
    rate: float = RATE_PER_SECOND
    burst: float = BURST
    _tokens: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._tokens.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def take(self, key: str, now: float) -> bool:
        """Spend a push on `key` if one is available now."""
        level = self._level(key, now)
        if level < 1.0:
            return False
        self._tokens[key] = (level - 1.0, now)
        return True

    def last_taken(self, key: str) -> float:
        """When `key` was last pushed (-inf: never)."""
        entry = self._tokens.get(key)
        return entry[1] if entry is not None else float("-inf")

    def due(self, key: str, now: float) -> float:
        """When `key` may be pushed again (now, if it may already)."""
        level = self._level(key, now)
        return now if level >= 1.0 else now + (1.0 - level) / self.rate

    def forget(self, key: str) -> None:
        self._tokens.pop(key, None)

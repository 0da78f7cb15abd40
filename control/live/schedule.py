"""When a changed object may be pushed: its push budget, and the objects waiting their turn."""

from __future__ import annotations

from dataclasses import dataclass, field

from control.live.budget import PushBudget


@dataclass
class PushSchedule:
    budget: PushBudget = field(default_factory=PushBudget)
    deferred: dict[str, float] = field(default_factory=dict)  # "<kind>:<id>" or "system" -> when due
    now: float = 0.0  # monotonic start of the current pass
    read_at: float | None = None  # when the full read being applied started

    def admit(self, dom_id: str, key: str) -> bool:
        """May the part `dom_id` of object `key` (its announcement key) go out now? An
        object out of pushes is deferred and comes back, re-read, when its turn is due;
        one pushed on its own since the full read being applied began is newer than
        that read and left alone."""
        if self.read_at is not None and self.budget.last_taken(dom_id) > self.read_at:
            return False
        if not self.budget.take(dom_id, self.now):
            self.deferred[key] = self.budget.due(dom_id, self.now)
            return False
        return True

    def take_due(self, now: float) -> set[str]:
        """The deferred objects whose turn has come."""
        due = {key for key, at in self.deferred.items() if at <= now}
        for key in due:
            del self.deferred[key]
        return due

    def next_due(self) -> list[float]:
        """When the deferred objects' turns come."""
        return list(self.deferred.values())

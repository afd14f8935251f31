"""What the sync did with one event: its status, why, and the objects written or removed."""
from __future__ import annotations

import dataclasses

# Worst first: an event touching several annotations reports its worst outcome.
STATUS_RANK = ("failed", "rejected", "held", "applied", "stale", "duplicate", "ignored")


@dataclasses.dataclass
class Outcome:
    status: str
    reason: str | None = None
    written: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)

    def merge(self, other: "Outcome") -> "Outcome":
        worst = min(self.status, other.status, key=STATUS_RANK.index)
        reasons = "; ".join(r for r in (self.reason, other.reason) if r) or None
        return Outcome(worst, reasons, self.written + other.written, self.removed + other.removed)

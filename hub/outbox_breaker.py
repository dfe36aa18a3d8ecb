"""A circuit breaker per event consumer (pure: the caller passes the clock).

closed --(``threshold`` failures in a row)--> open --(``cooldown_s`` passed)-->
half-open: one trial call is allowed; its success closes the breaker, its failure
opens it again for another ``cooldown_s``.

While the breaker is open the outbox does not call the consumer at all, so an
endpoint that is down is not hammered and the events waiting for it do not burn
their retry attempts (they would all be dead-lettered during a long outage).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass
class Breaker:
    threshold: int
    cooldown_s: float
    state: str = CLOSED
    failures: int = 0  # consecutive
    opened_at: datetime | None = None

    @property
    def open_until(self) -> datetime | None:
        if self.state != OPEN or self.opened_at is None:
            return None
        return self.opened_at + timedelta(seconds=self.cooldown_s)

    def allow(self, now: datetime) -> bool:
        """May the consumer be called now? Moves open -> half-open once the
        cooldown has passed (the next call is the trial)."""
        if self.state == OPEN:
            until = self.open_until
            if until is not None and now < until:
                return False
            self.state = HALF_OPEN
        return True

    def success(self) -> bool:
        """Record a success; True when this closed an open/half-open breaker."""
        changed = self.state != CLOSED
        self.state = CLOSED
        self.failures = 0
        self.opened_at = None
        return changed

    def failure(self, now: datetime) -> bool:
        """Record a failure; True when this opened the breaker."""
        self.failures += 1
        if self.state == HALF_OPEN or (self.state == CLOSED and self.failures >= self.threshold):
            self.state = OPEN
            self.opened_at = now
            return True
        return False

    def as_dict(self) -> dict:
        until = self.open_until
        return {"state": self.state, "failures": self.failures, "open_until": until.isoformat() if until else None}

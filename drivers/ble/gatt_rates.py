"""Turning cumulative revolution counters into rates (speed, cadence).

CSC and Cycling Power sensors do not send speed or cadence. They send a
cumulative revolution count and the time of the last revolution event, both
wrapping counters: revolutions u32 (wheel) or u16 (crank), event time u16 in
1/1024 s (wraps every 64 s) or, for a power meter's wheel, 1/2048 s (every 32 s).
The rate is the count delta over the event-time delta, both taken modulo their
counter size.

A notification without a new event (both deltas 0) says only that no
revolution happened since the last one. The last rate is held for ``hold_s``,
then bounded by 1 revolution / time since the last event (the rate cannot be
higher, or another revolution would have come) and set to 0 after ``stop_s``.
"""

from __future__ import annotations


_EVENT_TIME_MODULO = 1 << 16


class RevolutionRate:
    """Revolutions per second from successive (count, event time) pairs of one counter.

    ``now_s`` is the receiver's monotonic clock when the notification arrived;
    it resolves event-time gaps longer than one wrap of the u16 event time and
    drives the hold/stop logic. ``max_rate_hz`` rejects deltas no real wheel or
    crank produces (a sensor reboot resetting its counter, a corrupt packet):
    the counter is re-based there and the previous rate held.
    """

    def __init__(
        self,
        count_bits: int,
        ticks_per_s: int,
        *,
        max_rate_hz: float,
        hold_s: float = 2.0,
        stop_s: float = 4.0,
    ) -> None:
        self._count_modulo = 1 << count_bits
        self._ticks_per_s = ticks_per_s
        self._wrap_s = _EVENT_TIME_MODULO / ticks_per_s
        self._max_rate_hz = max_rate_hz
        self._hold_s = hold_s
        self._stop_s = stop_s
        self.reset()

    def reset(self) -> None:
        """Forget the previous sample (after a reconnect the counters may have moved on)."""
        self._count: int | None = None
        self._ticks = 0
        self._event_at_s = 0.0  # receiver time of the notification with the last event
        self._rate: float | None = None
        self.revolutions = 0  # accepted revolutions since the start, for distance

    def update(self, count: int, ticks: int, now_s: float) -> float | None:
        """The rate in revolutions per second; None until two samples allow one."""
        if self._count is None:
            self._rebase(count, ticks, now_s)
            return None
        d_count = (count - self._count) % self._count_modulo
        d_ticks = (ticks - self._ticks) % _EVENT_TIME_MODULO
        if d_count == 0 and d_ticks == 0:
            return self._idle_rate(now_s)
        if d_ticks == 0:
            # Revolutions without time passing: not a real event. Start over
            # from here rather than divide by zero or invent a time.
            self._rebase(count, ticks, now_s, keep_rate=True)
            return self._idle_rate(now_s)
        dt = d_ticks / self._ticks_per_s
        # More than one wrap of the event time may have passed (a long coast, a
        # dropped connection): add the whole wraps that best match the wall clock.
        gap_s = now_s - self._event_at_s
        if gap_s > self._wrap_s / 2:
            dt += self._wrap_s * max(0, round((gap_s - dt) / self._wrap_s))
        rate = d_count / dt
        if rate > self._max_rate_hz:
            self._rebase(count, ticks, now_s, keep_rate=True)
            return self._rate
        self.revolutions += d_count
        self._count, self._ticks, self._event_at_s, self._rate = count, ticks, now_s, rate
        return rate

    def _rebase(self, count: int, ticks: int, now_s: float, keep_rate: bool = False) -> None:
        self._count, self._ticks, self._event_at_s = count, ticks, now_s
        if not keep_rate:
            self._rate = None

    def _idle_rate(self, now_s: float) -> float | None:
        idle_s = now_s - self._event_at_s
        if idle_s >= self._stop_s:
            # Also from the first sample on: a wheel that has not turned since
            # we connected is standing still, not unknown.
            self._rate = 0.0
            return 0.0
        if self._rate is None:
            return None
        if idle_s > self._hold_s:
            return min(self._rate, 1.0 / idle_s)
        return self._rate



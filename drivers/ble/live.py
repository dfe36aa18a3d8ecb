"""Live values from the sensors: each completed second combined as a recording
would combine it, for ``Hub.publish_live`` (Home Assistant's live heart rate...).

The sampler keeps only the last few seconds of readings; :meth:`LiveSampler.sample`
runs :func:`drivers.ble.combine.combine` over that window for one second, so a
live value is the same mean, the same per-channel sensor choice and the same
hold-over of a short silence as the stored session will have. Distance is left
out: over a window of seconds it would count from zero, not from the session start.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone

from hub.events import LIVE_CHANNELS, LiveValues

from .combine import DEFAULT_HOLD_S, combine
from .readings import Reading

log = logging.getLogger("fithub.ble")

# How long after a second ends its values are published: readings are stamped on
# arrival, so all of second s are in by s + 1; this only absorbs loop scheduling.
PUBLISH_DELAY_S = 0.05


class LiveSampler:
    """Recent readings in, one :class:`LiveValues` per second out (pure; the caller keeps time)."""

    def __init__(self, *, person: str, source: str, hold_s: float = DEFAULT_HOLD_S) -> None:
        self.person = person
        self.source = source
        self.hold_s = hold_s
        self._recent: deque[Reading] = deque()

    def add(self, reading: Reading) -> None:
        self._recent.append(reading)
        # A second's value needs readings back to hold_s before it (the hold-over);
        # one more second of slack for readings that arrive out of order.
        horizon = reading.time_s - self.hold_s - 3.0
        while self._recent and self._recent[0].time_s < horizon:
            self._recent.popleft()

    def sample(self, second_s: float) -> LiveValues | None:
        """The combined values of ``[second_s, second_s + 1)``; None when no sensor
        contributed a value (or held one) for that second."""
        lo = second_s - self.hold_s - 1.0
        window = [r for r in self._recent if lo <= r.time_s < second_s + 1]
        if not window:
            return None
        combined = combine(window, second_s, second_s + 1, self.hold_s)
        channels = {}
        for channel in LIVE_CHANNELS:
            column = combined.samples.columns.get(channel)
            if column and column[0] is not None:
                channels[channel] = column[0]
        if not channels:
            return None
        return LiveValues(
            person=self.person,
            source=self.source,
            time=datetime.fromtimestamp(second_s, timezone.utc),
            channels=channels,
            sensors={ch: combined.sources[ch] for ch in channels if ch in combined.sources},
        )


async def publish_seconds(
    sampler: LiveSampler,
    publish: Callable[[LiveValues], None],
    stop: asyncio.Event,
    *,
    active: Callable[[], bool],
    clock: Callable[[], float],
) -> None:
    """Until ``stop``: just after each second ends, publish its values while
    ``active()`` (a session is being recorded). A late wake-up publishes the
    latest complete second only: live values are never back-filled."""
    last: float | None = None
    failing = False
    while not stop.is_set():
        now = clock()
        try:
            await asyncio.wait_for(stop.wait(), timeout=math.floor(now) + 1 + PUBLISH_DELAY_S - now)
        except asyncio.TimeoutError:
            pass
        if stop.is_set():
            return
        second = float(math.floor(clock()) - 1)
        if second == last or not active():
            continue
        last = second
        values = sampler.sample(second)
        if values is None:
            continue
        try:
            publish(values)
        except Exception:  # publish_live should not raise; if it does, the sensors still matter more
            if not failing:
                log.exception("publishing live values of %s failed (logged once)", sampler.source)
            failing = True
        else:
            failing = False

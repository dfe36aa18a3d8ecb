"""Recording sessions from live readings (pure: the caller passes the clock).

A session starts with the first *active* reading (a non-zero value: a beating
heart, a turning crank) and ends when no active reading has arrived for
``idle_gap_s``; it then becomes an :class:`~hub.model.Activity` whose sport
follows from the sensors that took part. Readings of an idle trainer (zeros)
neither start nor prolong a session, and the idle tail is not recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from hub.model import Activity

from .combine import Combined, combine
from .readings import (
    CYCLING_POWER,
    CYCLING_SPEED_CADENCE,
    INDOOR_BIKE,
    RUNNING_SPEED_CADENCE,
    TREADMILL,
    Reading,
)

DEFAULT_IDLE_GAP_S = 120.0
DEFAULT_MIN_DURATION_S = 60.0


@dataclass
class Recording:
    """A session in progress (or finished): its readings and time bounds."""

    start_s: float  # whole second of the first active reading
    last_active_s: float
    readings: list[Reading] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.last_active_s - self.start_s

    @property
    def profiles(self) -> set[str]:
        return {r.profile for r in self.readings}


class SessionTracker:
    """Feeds readings in, hands finished recordings out.

    ``add`` and ``tick`` return a finished :class:`Recording` when one ends (an
    active reading after a gap longer than ``idle_gap_s`` ends the previous
    session and starts the next), else ``None``. Recordings shorter than
    ``min_duration_s`` (a strap put on for a moment) are dropped.
    """

    def __init__(self, idle_gap_s: float = DEFAULT_IDLE_GAP_S, min_duration_s: float = DEFAULT_MIN_DURATION_S) -> None:
        self.idle_gap_s = idle_gap_s
        self.min_duration_s = min_duration_s
        self.current: Recording | None = None

    def add(self, reading: Reading) -> Recording | None:
        finished = self.tick(reading.time_s) if reading.active else None
        if self.current is None:
            if not reading.active:
                return finished
            self.current = Recording(start_s=math.floor(reading.time_s), last_active_s=reading.time_s)
        self.current.readings.append(reading)
        if reading.active:
            self.current.last_active_s = max(self.current.last_active_s, reading.time_s)
        return finished

    def tick(self, now_s: float) -> Recording | None:
        if self.current is not None and now_s - self.current.last_active_s >= self.idle_gap_s:
            return self.finish()
        return None

    def finish(self) -> Recording | None:
        """End the current session now (Ctrl-C, shutdown)."""
        recording, self.current = self.current, None
        if recording is None or recording.duration_s < self.min_duration_s:
            return None
        # The idle tail (after the last active reading) is not part of the workout.
        end = recording.last_active_s + 1
        recording.readings = [r for r in recording.readings if r.time_s < end]
        return recording


def infer_sport(profiles: set[str]) -> tuple[str, str | None]:
    """(sport, sub_sport) as FIT names them, from the profiles that took part."""
    if TREADMILL in profiles:
        return "running", "treadmill"
    if INDOOR_BIKE in profiles or CYCLING_POWER in profiles:
        return "cycling", "indoor_cycling"
    if RUNNING_SPEED_CADENCE in profiles:
        return "running", None
    if CYCLING_SPEED_CADENCE in profiles:
        return "cycling", None
    return "generic", None


def source_label(combined: Combined) -> str:
    """The provenance source of a stored session: ``ble:power`` when a BLE sensor
    measured power (the merge policy prefers it for power), ``ble:hr`` when it
    only measured heart rate, else ``ble:<profile of the speed sensor>``."""
    if "power_w" in combined.profiles:
        return "ble:power"
    if set(combined.profiles) <= {"hr_bpm"} and combined.profiles:
        return "ble:hr"
    for channel in ("speed_mps", "cadence_rpm", "hr_bpm"):
        if channel in combined.profiles:
            return f"ble:{combined.profiles[channel]}"
    return "ble:sensors"


@dataclass(frozen=True)
class SessionResult:
    activity: Activity
    combined: Combined
    source: str  # e.g. "ble:power"


def to_activity(recording: Recording, *, person: str, hold_s: float | None = None) -> SessionResult:
    """The recording as an activity: combined 1 Hz samples, sport, RR intervals.

    Summary values (averages, maxima, distance) are derived from the samples by
    the FIT export and the import pipeline, as for any file.
    """
    end_s = recording.last_active_s + 1
    kwargs = {} if hold_s is None else {"hold_s": hold_s}
    combined = combine(recording.readings, recording.start_s, end_s, **kwargs)
    sport, sub_sport = infer_sport(recording.profiles)
    activity = Activity(
        person=person,
        sport=sport,
        sub_sport=sub_sport,
        start=datetime.fromtimestamp(recording.start_s, timezone.utc),
        elapsed_s=float(len(combined.samples)),
        samples=combined.samples,
        hrv_rr_s=combined.rr_s,
    )
    return SessionResult(activity=activity, combined=combined, source=source_label(combined))

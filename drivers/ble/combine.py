"""Several sensors' notifications combined into one 1 Hz sample stream (pure).

Each channel comes from exactly one sensor for the whole recording, picked by
profile (a power meter's cadence over a speed/cadence sensor's, a strap's heart
rate over a trainer's relayed one); splicing two sensors into one curve would
mix their offsets and lags, the same reason :mod:`hub.dedupe_merge` keeps one
source per channel. Which sensor supplied each channel is returned with the
samples.

Second ``i`` holds the mean of the chosen sensor's values received in
``[start + i, start + i + 1)``. Sensors notify about once a second with jitter,
so an empty second repeats the last value if it is at most ``hold_s`` old;
longer silences are explicit gaps (``None``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from hub.model import SampleStream

from .readings import (
    CYCLING_POWER,
    CYCLING_SPEED_CADENCE,
    HEART_RATE,
    INDOOR_BIKE,
    RUNNING_SPEED_CADENCE,
    TREADMILL,
    Reading,
)

# Channel -> profiles in order of preference. A profile not listed never
# supplies that channel.
CHANNEL_PRIORITY: dict[str, tuple[str, ...]] = {
    "hr_bpm": (HEART_RATE, INDOOR_BIKE, TREADMILL),
    "power_w": (CYCLING_POWER, INDOOR_BIKE, TREADMILL),
    "cadence_rpm": (CYCLING_POWER, CYCLING_SPEED_CADENCE, INDOOR_BIKE, RUNNING_SPEED_CADENCE),
    "speed_mps": (CYCLING_SPEED_CADENCE, TREADMILL, RUNNING_SPEED_CADENCE, INDOOR_BIKE, CYCLING_POWER),
    # A device's own odometer; without one, distance is integrated from speed.
    "distance_m": (TREADMILL, RUNNING_SPEED_CADENCE, INDOOR_BIKE),
}
DEFAULT_HOLD_S = 2.5


@dataclass(frozen=True)
class Combined:
    samples: SampleStream
    sources: dict[str, str] = field(default_factory=dict)  # channel -> sensor address
    profiles: dict[str, str] = field(default_factory=dict)  # channel -> profile of that sensor
    rr_s: tuple[float, ...] = ()  # from the sensor chosen for heart rate


def choose_sources(readings: Sequence[Reading]) -> dict[str, tuple[str, str]]:
    """Channel -> (sensor, profile): the most preferred profile, then the sensor
    with the most values, then the smaller address (deterministic). Distance comes
    from the speed sensor (its odometer, else integrated) so the two agree; another
    device's odometer only when nothing measures speed."""
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for reading in readings:
        for channel, value in reading.channels.items():
            if channel in CHANNEL_PRIORITY and value is not None and math.isfinite(value):
                counts[(channel, reading.sensor, reading.profile)] += 1
    chosen: dict[str, tuple[str, str]] = {}
    for channel, order in CHANNEL_PRIORITY.items():
        candidates = [
            (order.index(profile), -n, sensor, profile)
            for (ch, sensor, profile), n in counts.items()
            if ch == channel and profile in order
        ]
        if candidates:
            _, _, sensor, profile = min(candidates)
            chosen[channel] = (sensor, profile)
    if "speed_mps" in chosen:
        speed = chosen["speed_mps"]
        if counts.get(("distance_m", *speed)):
            chosen["distance_m"] = speed
        else:
            chosen.pop("distance_m", None)  # integrated from the speed below
    return chosen


def combine(readings: Sequence[Reading], start_s: float, end_s: float, hold_s: float = DEFAULT_HOLD_S) -> Combined:
    """Readings of one recording between ``start_s`` and ``end_s`` (POSIX seconds)
    as a 1 Hz stream whose offset 0 is ``start_s``."""
    n = max(1, math.ceil(end_s - start_s))
    chosen = choose_sources(readings)
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for reading in sorted(readings, key=lambda r: r.time_s):
        for channel, value in reading.channels.items():
            if chosen.get(channel, (None,))[0] == reading.sensor and chosen[channel][1] == reading.profile:
                if value is not None and math.isfinite(value):
                    series[channel].append((reading.time_s, float(value)))
    columns: dict[str, list[float | None]] = {}
    for channel in CHANNEL_PRIORITY:
        if channel in series:
            columns[channel] = _per_second(series[channel], start_s, n, hold_s)
    if "distance_m" in columns:
        columns["distance_m"] = _from_zero(columns["distance_m"])
    elif "speed_mps" in columns:
        columns["distance_m"] = _integrate(columns["speed_mps"])
    hr = chosen.get("hr_bpm")
    rr = tuple(
        x for r in readings if hr and r.sensor == hr[0] and r.profile == hr[1] and start_s <= r.time_s < start_s + n for x in r.rr_s
    )
    sources = {ch: sp[0] for ch, sp in chosen.items() if ch in columns}
    profiles = {ch: sp[1] for ch, sp in chosen.items() if ch in columns}
    if "distance_m" in columns and "distance_m" not in sources:
        sources["distance_m"], profiles["distance_m"] = sources["speed_mps"], profiles["speed_mps"]
    stream = SampleStream(offsets_s=[float(i) for i in range(n)], columns=columns)
    return Combined(samples=stream, sources=sources, profiles=profiles, rr_s=rr)


def _per_second(points: list[tuple[float, float]], start_s: float, n: int, hold_s: float) -> list[float | None]:
    out: list[float | None] = []
    j = 0
    last: tuple[float, float] | None = None
    for i in range(n):
        lo, hi = start_s + i, start_s + i + 1
        while j < len(points) and points[j][0] < lo:
            last = points[j]
            j += 1
        bucket: list[float] = []
        while j < len(points) and points[j][0] < hi:
            bucket.append(points[j][1])
            last = points[j]
            j += 1
        if bucket:
            out.append(sum(bucket) / len(bucket))
        elif last is not None and hi - last[0] <= hold_s:
            out.append(last[1])
        else:
            out.append(None)
    return out


def _from_zero(column: list[float | None]) -> list[float | None]:
    """A device odometer counts from before the recording; the activity starts at 0."""
    first = next((v for v in column if v is not None), None)
    return [None if v is None or first is None else max(0.0, v - first) for v in column]


def _integrate(speed: list[float | None]) -> list[float | None]:
    total, out = 0.0, []
    for value in speed:
        if value is None:
            out.append(None)
        else:
            total += value  # one-second samples: metres = m/s x 1 s
            out.append(total)
    return out

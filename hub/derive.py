"""Values derived from a sample stream when a file does not carry them.

Pure functions over lists; :func:`fill_summary` applies them to an activity and only
fills what is missing, so a device's own summary (often computed from finer data
than it records) always wins.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial, reduce
from itertools import compress, islice, repeat
from operator import add, and_, ge, is_not, le, lt, sub

from .model import Activity, SampleStream

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)

# Altitude changes smaller than this are GPS/barometer noise, not climbing: the
# running total only moves once the altitude has left a band of this height.
ELEVATION_NOISE_M = 3.0
# Below this speed a sample counts as standing still (walking pace is ~1.2 m/s).
MOVING_SPEED_MPS = 0.5
# A pause longer than this between two samples is never moving time (auto-pause).
MAX_MOVING_GAP_S = 60.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def cumulative_distance(lat: list[float | None], lon: list[float | None]) -> list[float | None]:
    """Distance along the track at each sample; ``None`` where the position is missing."""
    out: list[float | None] = []
    total = 0.0
    prev: tuple[float, float] | None = None
    for la, lo in zip(lat, lon):
        if la is None or lo is None:
            out.append(None)
            continue
        if prev is not None:
            total += haversine_m(prev[0], prev[1], la, lo)
        prev = (la, lo)
        out.append(total)
    return out


def elevation_gain(altitude: list[float | None], threshold_m: float = ELEVATION_NOISE_M) -> tuple[float, float]:
    """Total ascent and descent with a hysteresis band of ``threshold_m``."""
    ascent = descent = 0.0
    ref: float | None = None
    for alt in altitude:
        if alt is None or not math.isfinite(alt):
            continue
        if ref is None:
            ref = alt
            continue
        delta = alt - ref
        if delta >= threshold_m:
            ascent += delta
            ref = alt
        elif delta <= -threshold_m:
            descent -= delta
            ref = alt
    return ascent, descent


def moving_time(offsets: list[float], distance: list[float | None] | None, speed: list[float | None] | None) -> float | None:
    """Seconds spent above :data:`MOVING_SPEED_MPS`, from speed or else distance deltas."""
    if len(offsets) < 2:
        return None
    if speed is not None and None not in speed:
        return _moving_time_from_speed(offsets, speed)
    total = 0.0
    known = False
    prev_t = offsets[0]
    prev_d = distance[0] if distance else None
    for i in range(1, len(offsets)):
        t = offsets[i]
        dt = t - prev_t
        v: float | None = None
        if speed is not None and speed[i] is not None:
            v = speed[i]
        elif distance is not None and distance[i] is not None and prev_d is not None and dt > 0:
            v = (distance[i] - prev_d) / dt
        if v is not None:
            known = True
            if v >= MOVING_SPEED_MPS and 0 < dt <= MAX_MOVING_GAP_S:
                total += dt
        prev_t = t
        if distance is not None and distance[i] is not None:
            prev_d = distance[i]
    return total if known else None


def _moving_time_from_speed(offsets: list[float], speed: list[float]) -> float:
    """:func:`moving_time` when every sample has a speed, without a Python loop.

    The same additions in the same order as the loop (``reduce``, not ``sum``, whose
    compensated summation in newer Pythons could change the last bit)."""
    later = islice(offsets, 1, None)
    steps = list(map(sub, later, offsets))  # dt between each sample and the one before
    moving = map(ge, islice(speed, 1, None), repeat(MOVING_SPEED_MPS))
    short = map(and_, map(lt, repeat(0), steps), map(le, steps, repeat(MAX_MOVING_GAP_S)))
    return reduce(add, compress(steps, map(and_, moving, short)), 0.0)


_is_not_none = partial(is_not, None)


def finite_values(column: list[float | None]) -> list[float]:
    """The measured (non-gap, finite) values of a column, in order."""
    present = list(filter(_is_not_none, column)) if None in column else list(column)
    # A finite sum proves every value finite (one NaN or infinity poisons it), so the
    # usual clean column needs no per-value check; otherwise (or on overflow) check.
    try:
        if math.isfinite(sum(present)):
            return present
    except OverflowError:  # an integer sum too large for a float
        pass
    return [v for v in present if math.isfinite(v)]


def _mean(values: list[float]) -> float | None:
    # A plain per-sample mean: recorders sample at (near) fixed rates, and smart
    # recording's uneven spacing changes the result by well under a percent.
    if not values:
        return None
    return sum(values) / len(values)


def _max(values: list[float]) -> float | None:
    return max(values) if values else None


def with_distance(samples: SampleStream) -> SampleStream:
    """Add a ``distance_m`` column from positions when the stream has none."""
    if "distance_m" in samples.columns or "lat_deg" not in samples.columns:
        return samples
    dist = cumulative_distance(samples.columns["lat_deg"], samples.columns["lon_deg"])
    if all(d is None for d in dist):
        return samples
    return replace(samples, columns={**samples.columns, "distance_m": dist})


def fill_summary(activity: Activity) -> Activity:
    """Fill missing summary fields of ``activity`` from its samples."""
    s = activity.samples
    n = len(s)
    changes: dict[str, float | None] = {}
    if n:
        cols = s.columns
        if activity.elapsed_s is None and n > 1:
            changes["elapsed_s"] = s.offsets_s[-1] - s.offsets_s[0]
        if activity.distance_m is None:
            dist = cols.get("distance_m")
            last = next((d for d in reversed(dist) if d is not None), None) if dist else None
            if last is None and "lat_deg" in cols:
                geo = cumulative_distance(cols["lat_deg"], cols["lon_deg"])
                last = next((d for d in reversed(geo) if d is not None), None)
            if last is not None:
                changes["distance_m"] = last
        if (activity.ascent_m is None or activity.descent_m is None) and "altitude_m" in cols:
            up, down = elevation_gain(cols["altitude_m"])
            if activity.ascent_m is None:
                changes["ascent_m"] = up
            if activity.descent_m is None:
                changes["descent_m"] = down
        if activity.moving_s is None:
            dist = cols.get("distance_m")
            if dist is None and "lat_deg" in cols:
                dist = cumulative_distance(cols["lat_deg"], cols["lon_deg"])
            changes["moving_s"] = moving_time(s.offsets_s, dist, cols.get("speed_mps"))
        for stat, channel in (
            ("hr_bpm", "hr_bpm"),
            ("power_w", "power_w"),
            ("cadence_rpm", "cadence_rpm"),
            ("speed_mps", "speed_mps"),
        ):
            column = cols.get(channel)
            if column is None:
                continue
            # Average speed is distance over time (below), never a per-sample mean:
            # smart recording spaces samples unevenly, which biases such a mean.
            want_avg = getattr(activity, f"avg_{stat}") is None and stat != "speed_mps"
            want_max = getattr(activity, f"max_{stat}") is None
            if not (want_avg or want_max):
                continue
            values = finite_values(column)  # once for both statistics
            if want_avg:
                changes[f"avg_{stat}"] = _mean(values)
            if want_max:
                changes[f"max_{stat}"] = _max(values)
    elapsed = changes.get("elapsed_s", activity.elapsed_s)
    moving = changes.get("moving_s", activity.moving_s)
    distance = changes.get("distance_m", activity.distance_m)
    if activity.avg_speed_mps is None and distance:
        # Average speed is distance over moving time, as devices report it.
        duration = moving or elapsed
        if duration:
            changes["avg_speed_mps"] = distance / duration
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(activity, **changes) if changes else activity


__all__ = [
    "cumulative_distance",
    "elevation_gain",
    "fill_summary",
    "haversine_m",
    "moving_time",
    "with_distance",
]

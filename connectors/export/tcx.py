"""TCX export (TrainingCenterDatabase v2 with ActivityExtension v2).

Every sample becomes a ``Trackpoint`` (TCX, unlike GPX, allows points without a
position). Samples are grouped into the activity's laps by time; an activity
without laps gets one lap spanning everything, because TCX requires at least one.

Element order follows the v2 schema exactly (``Lap``: TotalTimeSeconds,
DistanceMeters, MaximumSpeed, Calories, AverageHeartRateBpm, MaximumHeartRateBpm,
Intensity, Cadence, TriggerMethod, Track, Extensions): strict readers such as
Garmin Connect validate against it.
"""

from __future__ import annotations

import bisect
import dataclasses
from datetime import timedelta
from xml.sax.saxutils import escape

from hub.derive import fill_summary
from hub.model import Activity, Lap

from .csv_format import format_number
from .json_format import iso_utc

TCD_NS = "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"
AX_NS = "http://www.garmin.com/xmlschemas/ActivityExtension/v2"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{TCD_NS} http://www.garmin.com/xmlschemas/TrainingCenterDatabasev2.xsd"

JOULES_PER_KCAL = 4184.0

# TCX knows three sports only.
_SPORTS = {"running": "Running", "cycling": "Biking", "e_biking": "Biking"}
_TRIGGERS = {
    "manual": "Manual",
    "distance": "Distance",
    "time": "Time",
    "heart_rate": "HeartRate",
    "position_start": "Location",
    "position_lap": "Location",
    "position_waypoint": "Location",
    "position_marked": "Location",
}


def _whole(value: float) -> str:
    return str(round(value))


def _tag(name: str, value: float | None, fmt=format_number) -> str:
    return "" if value is None else f"<{name}>{fmt(value)}</{name}>"


def laps_or_whole(activity: Activity, *, trigger: str) -> list[Lap]:
    """The activity's laps in time order, or one lap spanning it all.

    TCX and FIT activity files both require at least one lap; the stand-in carries
    the activity's own totals and ``trigger`` as its reason.
    """
    if activity.laps:
        return sorted(activity.laps, key=lambda lap: lap.start)
    # The activity's summary fields share their names with Lap's.
    shared = {f.name for f in dataclasses.fields(Lap)} - {"trigger"}
    return [Lap(**{name: getattr(activity, name) for name in shared}, trigger=trigger)]


def lap_ranges(activity: Activity, laps: list[Lap]) -> list[range]:
    """The sample indices of each lap: from its start to the next lap's start.

    Samples before the first lap's start belong to the first lap, so none is lost.
    """
    offsets = activity.samples.offsets_s
    starts = [(lap.start - activity.start).total_seconds() for lap in laps]
    bounds = [0] + [bisect.bisect_left(offsets, t) for t in starts[1:]] + [len(offsets)]
    return [range(bounds[k], max(bounds[k], bounds[k + 1])) for k in range(len(laps))]


def lap_span(activity: Activity, indices: range) -> tuple[float | None, float | None]:
    """Duration and distance covered by a lap's samples, for laps that lack totals."""
    if not indices:
        return None, None
    s = activity.samples
    duration = s.offsets_s[indices[-1]] - s.offsets_s[indices[0]]
    dist = s.columns.get("distance_m")
    distance = None
    if dist is not None:
        known = [dist[i] for i in indices if dist[i] is not None]
        if known:
            # Measured from the previous lap's last distance so that lap
            # distances add up to the total rather than losing one step per lap.
            before = (dist[i] for i in reversed(range(indices[0])) if dist[i] is not None)
            distance = known[-1] - next(before, known[0])
    return duration, distance


def _trackpoint(activity: Activity, i: int, running: bool) -> str:
    s = activity.samples

    def get(name: str) -> float | None:
        column = s.columns.get(name)
        return column[i] if column is not None else None

    parts = [f"<Trackpoint><Time>{iso_utc(activity.start + timedelta(seconds=s.offsets_s[i]))}</Time>"]
    lat, lon = get("lat_deg"), get("lon_deg")
    if lat is not None and lon is not None:
        parts.append(
            f"<Position><LatitudeDegrees>{format_number(lat)}</LatitudeDegrees>"
            f"<LongitudeDegrees>{format_number(lon)}</LongitudeDegrees></Position>"
        )
    parts.append(_tag("AltitudeMeters", get("altitude_m")))
    parts.append(_tag("DistanceMeters", get("distance_m")))
    hr = get("hr_bpm")
    if hr is not None and round(hr) >= 1:  # the schema's HR value is 1..255
        parts.append(f"<HeartRateBpm><Value>{round(hr)}</Value></HeartRateBpm>")
    cadence = get("cadence_rpm")
    # Garmin writes running cadence as the RunCadence extension; the core
    # Cadence element means pedal cadence.
    if not running:
        parts.append(_tag("Cadence", cadence, _whole))
    tpx = (
        _tag("ns3:Speed", get("speed_mps"))
        + (_tag("ns3:RunCadence", cadence, _whole) if running else "")
        + _tag("ns3:Watts", get("power_w"), _whole)
    )
    if tpx:
        parts.append(f"<Extensions><ns3:TPX>{tpx}</ns3:TPX></Extensions>")
    parts.append("</Trackpoint>")
    return "".join(parts)


def _lap(activity: Activity, lap: Lap, indices: range, running: bool) -> str:
    duration, distance = lap_span(activity, indices)
    total_time = lap.moving_s if lap.moving_s is not None else lap.elapsed_s
    if total_time is None:
        total_time = duration or 0.0
    if lap.distance_m is not None:
        distance = lap.distance_m
    calories = round(lap.energy_j / JOULES_PER_KCAL) if lap.energy_j is not None else 0
    out = [
        f'<Lap StartTime="{iso_utc(lap.start)}">',
        _tag("TotalTimeSeconds", total_time),
        _tag("DistanceMeters", distance or 0.0),
        _tag("MaximumSpeed", lap.max_speed_mps),
        f"<Calories>{min(calories, 65535)}</Calories>",
    ]
    if lap.avg_hr_bpm is not None and round(lap.avg_hr_bpm) >= 1:
        out.append(f"<AverageHeartRateBpm><Value>{round(lap.avg_hr_bpm)}</Value></AverageHeartRateBpm>")
    if lap.max_hr_bpm is not None and round(lap.max_hr_bpm) >= 1:
        out.append(f"<MaximumHeartRateBpm><Value>{round(lap.max_hr_bpm)}</Value></MaximumHeartRateBpm>")
    out.append("<Intensity>Active</Intensity>")
    if not running:
        out.append(_tag("Cadence", lap.avg_cadence_rpm, _whole))
    out.append(f"<TriggerMethod>{_TRIGGERS.get(lap.trigger or '', 'Manual')}</TriggerMethod>")
    if indices:
        out.append("<Track>")
        out.extend(_trackpoint(activity, i, running) for i in indices)
        out.append("</Track>")
    lx = _tag("ns3:AvgSpeed", lap.avg_speed_mps)
    if running:
        lx += _tag("ns3:AvgRunCadence", lap.avg_cadence_rpm, _whole)
        lx += _tag("ns3:MaxRunCadence", lap.max_cadence_rpm, _whole)
    else:
        lx += _tag("ns3:MaxBikeCadence", lap.max_cadence_rpm, _whole)
    lx += _tag("ns3:AvgWatts", lap.avg_power_w, _whole) + _tag("ns3:MaxWatts", lap.max_power_w, _whole)
    if lx:
        out.append(f"<Extensions><ns3:LX>{lx}</ns3:LX></Extensions>")
    out.append("</Lap>")
    return "\n".join(part for part in out if part)


def _creator(activity: Activity) -> str:
    device = activity.device
    if device is None:
        return ""
    # Garmin's own TCX files name the product alone ("Forerunner 935"); TCX has
    # no field for the manufacturer.
    name = device.product or device.manufacturer or "unknown"
    product_id = int(device.product) if device.product and device.product.isdigit() else 0
    major, minor = 0, 0
    if device.software_version:
        head, _, tail = device.software_version.partition(".")
        if head.isdigit():
            major = int(head)
        if tail[:2].isdigit():
            minor = int(tail[:2])
    return (
        f'<Creator xsi:type="Device_t"><Name>{escape(name)}</Name>'
        f"<UnitId>{device.serial_number or 0}</UnitId><ProductID>{min(product_id, 65535)}</ProductID>"
        f"<Version><VersionMajor>{major}</VersionMajor><VersionMinor>{minor}</VersionMinor></Version>"
        "</Creator>"
    )


def write_tcx(activity: Activity) -> bytes:
    # A file should carry its totals even when the stored record lacks some;
    # fill_summary only adds what is missing, never overrides the device.
    activity = fill_summary(activity)
    running = activity.sport == "running"
    laps = laps_or_whole(activity, trigger="manual")
    ranges = lap_ranges(activity, laps)
    sport = _SPORTS.get(activity.sport, "Other")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<TrainingCenterDatabase xmlns="{TCD_NS}" xmlns:ns3="{AX_NS}" xmlns:xsi="{XSI_NS}"'
        f' xsi:schemaLocation="{SCHEMA_LOCATION}">',
        "<Activities>",
        f'<Activity Sport="{sport}">',
        f"<Id>{iso_utc(activity.start)}</Id>",
    ]
    lines.extend(_lap(activity, lap, r, running) for lap, r in zip(laps, ranges))
    if activity.name:
        lines.append(f"<Notes>{escape(activity.name)}</Notes>")
    creator = _creator(activity)
    if creator:
        lines.append(creator)
    lines += ["</Activity>", "</Activities>", "</TrainingCenterDatabase>"]
    return ("\n".join(lines) + "\n").encode("utf-8")


__all__ = ["JOULES_PER_KCAL", "lap_ranges", "lap_span", "laps_or_whole", "write_tcx"]

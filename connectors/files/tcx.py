"""Garmin Training Center XML (TCX v2) decoder: bytes in, :class:`hub.model.Decoded` out.

Decisions a reader cannot see from the code alone:

* Elements are matched by local name: the TCX namespace is sometimes missing and the
  ActivityExtension prefix (``ns3``, ``x``, ``ext``) or its presence varies by writer.
* Lap ``TotalTimeSeconds`` is timer time (pauses excluded), so it is the lap's
  ``moving_s``; a lap's elapsed time runs to the next lap's start (to its last
  trackpoint for the final lap). The activity summary sums or combines the laps,
  which carry the device's own figures; what they lack is derived from the samples.
* ``RunCadence`` is per leg, like FIT running cadence and TCX ``Cadence``, so both
  go to ``cadence_rpm`` unchanged.
* A ``MultiSportSession`` yields one activity per sport section, sharing a
  ``multisport_group`` made from the session's own ``Id`` (the file content, so the
  same file always groups the same way); transitions are not activities.
* ``source_id`` is ``tcx:<Activity Id>``: the Id is the start time the device gave the
  recording, stable across re-exports of the same workout.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hub.derive import fill_summary
from hub.errors import DecodeError
from hub.model import Activity, Decoded, Device, Lap, Provenance, SampleStream

from . import xmlsafe
from .xmlsafe import local, number

SPORTS = {"running": "running", "biking": "cycling", "other": "generic"}
TRIGGERS = {
    "manual": "manual",
    "distance": "distance",
    "time": "time",
    "location": "position_lap",
    "heartrate": "heart_rate",
}
KCAL_J = 4184.0

# Trackpoint children (and TPX extension children) -> sample channel.
_POINT_VALUES = {
    "AltitudeMeters": "altitude_m",
    "DistanceMeters": "distance_m",
    "Cadence": "cadence_rpm",
    "Speed": "speed_mps",
    "RunCadence": "cadence_rpm",
    "Watts": "power_w",
}


def decode_tcx(data: bytes, origin: Provenance) -> Decoded:
    """Decode one TCX file; every failure is a single :class:`DecodeError`."""
    try:
        return _decode(bytes(data), origin)
    except DecodeError:
        raise
    except Exception as exc:  # the boundary: whatever the data made us raise
        raise DecodeError(origin.name, f"cannot read TCX: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class _Section:
    """One Activity element and, for multisport, its place in the session."""

    element: ET.Element
    group: str | None = None
    index: int | None = None


def _decode(data: bytes, origin: Provenance) -> Decoded:
    name = origin.name
    root = xmlsafe.parse(data, name)
    root_name = local(root.tag)
    if root_name != "TrainingCenterDatabase":
        raise DecodeError(name, f"root element is <{root_name}>, not <TrainingCenterDatabase>")
    sections = list(_sections(root, data))
    if not sections:
        return Decoded(not_activity=_why_not_activity(root))

    activities: list[Activity] = []
    warnings: list[str] = []
    for position, section in enumerate(sections, start=1):
        activity = _activity(section, origin)
        if activity is None:
            warnings.append(f"activity {position} skipped: it has no time at all")
        else:
            activities.append(activity)
    if not activities:
        return Decoded(not_activity="TCX activities carry no times: not an activity", warnings=warnings)
    return Decoded(activities=activities, warnings=warnings)


def _why_not_activity(root: ET.Element) -> str:
    present = {local(child.tag) for child in root}
    planned = sorted(present & {"Courses", "Workouts"})
    if planned:
        return f"TCX holds only {' and '.join(p.lower() for p in planned)}, no recorded activity: not an activity"
    return "TCX holds no activities: not an activity"


def _sections(root: ET.Element, data: bytes) -> Iterator[_Section]:
    for activities in _children(root, "Activities"):
        for element in activities:
            kind = local(element.tag)
            if kind == "Activity":
                yield _Section(element)
            elif kind == "MultiSportSession":
                yield from _multisport(element, data)


def _multisport(session: ET.Element, data: bytes) -> Iterator[_Section]:
    session_id = _text(session, "Id")
    # Without an Id the file's own bytes still identify the session deterministically.
    group = f"tcx:{session_id}" if session_id else f"tcx:sha256:{hashlib.sha256(data).hexdigest()[:16]}"
    index = 0
    for part in session:
        if local(part.tag) not in ("FirstSport", "NextSport"):
            continue
        for element in _children(part, "Activity"):
            yield _Section(element, group, index)
            index += 1


@dataclass
class _Samples:
    """Columns under construction; a channel first seen late is padded with gaps."""

    times: list[datetime] = field(default_factory=list)
    columns: dict[str, list[float | None]] = field(default_factory=dict)
    bad_positions: int = 0
    untimed: int = 0

    def add(self, time: datetime, values: dict[str, float]) -> None:
        n = len(self.times)
        self.times.append(time)
        for channel, value in values.items():
            if channel not in self.columns:
                self.columns[channel] = [None] * n
            self.columns[channel].append(value)
        for column in self.columns.values():
            if len(column) == n:
                column.append(None)


def _activity(section: _Section, origin: Provenance) -> Activity | None:
    element = section.element
    activity_id = _text(element, "Id")
    id_time = xmlsafe.parse_time(activity_id)
    samples = _Samples()
    raw_laps: list[tuple[datetime | None, ET.Element, list[datetime]]] = []
    for lap in _children(element, "Lap"):
        first = len(samples.times)
        for track in _children(lap, "Track"):
            for point in _children(track, "Trackpoint"):
                _read_point(point, samples)
        raw_laps.append((xmlsafe.parse_time(lap.get("StartTime")), lap, samples.times[first:]))

    # The earliest of the recording's own times, so no sample lies before the start.
    first_lap = raw_laps[0][0] if raw_laps else None
    first_sample = min(samples.times) if samples.times else None
    candidates = [t for t in (id_time, first_lap, first_sample) if xmlsafe.plausible(t)]
    if not candidates:
        return None
    start = min(candidates)

    laps = _laps(raw_laps, start)
    warnings = _sample_warnings(samples)
    sport = _sport(element.get("Sport"), warnings)
    end = _end(samples, laps, start)
    stream = SampleStream(
        offsets_s=[(t - start).total_seconds() for t in samples.times],
        columns={k: v for k, v in samples.columns.items() if any(x is not None for x in v)},
    )
    notes = _text(element, "Notes")
    activity = Activity(
        sport=sport,
        start=start,
        elapsed_s=max(0.0, (end - start).total_seconds()),
        name=notes or None,
        device=_device(element),
        laps=tuple(laps),
        samples=stream,
        source_id=f"tcx:{activity_id}" if activity_id else None,
        multisport_group=section.group,
        multisport_index=section.index,
        provenance=origin,
        warnings=tuple(warnings),
        **_summary(laps),
    )
    return fill_summary(activity)


def _sample_warnings(samples: _Samples) -> list[str]:
    warnings = []
    if samples.bad_positions:
        warnings.append(
            f"dropped the position of {samples.bad_positions} trackpoint(s) with invalid coordinates "
            "(latitude outside +-90, longitude outside +-180, or not a number)"
        )
    if samples.untimed:
        warnings.append(f"dropped {samples.untimed} trackpoint(s) without a valid time")
    return warnings


def _sport(attribute: str | None, warnings: list[str]) -> str:
    name = (attribute or "").strip()
    sport = SPORTS.get(name.lower())
    if sport is None:
        sport = "generic"
        if name:
            warnings.append(f"unknown TCX sport {name!r}, stored as generic")
    return sport


def _end(samples: _Samples, laps: list[Lap], start: datetime) -> datetime:
    """The last recorded instant: the last trackpoint, else the end of the last lap."""
    if samples.times:
        return max(samples.times)
    if laps and (laps[-1].elapsed_s is not None or laps[-1].moving_s is not None):
        last = laps[-1]
        return last.start + timedelta(seconds=_first(last.elapsed_s, last.moving_s) or 0.0)
    return start


def _read_point(point: ET.Element, samples: _Samples) -> None:
    time: datetime | None = None
    values: dict[str, float] = {}
    for child in point:
        tag = local(child.tag)
        if tag == "Time":
            time = xmlsafe.parse_time(child.text)
        elif tag == "Position":
            _read_position(child, values, samples)
        elif tag == "HeartRateBpm":
            _put(values, "hr_bpm", number(_text(child, "Value")))
        elif tag == "Extensions":
            for ext in child.iter():
                channel = _POINT_VALUES.get(local(ext.tag))
                if channel is not None and not len(ext):
                    _put(values, channel, number(ext.text))
        elif tag in _POINT_VALUES:
            _put(values, _POINT_VALUES[tag], number(child.text))
    if not xmlsafe.plausible(time):
        samples.untimed += 1
        return
    samples.add(time, values)


def _read_position(position: ET.Element, values: dict[str, float], samples: _Samples) -> None:
    lat = number(_text(position, "LatitudeDegrees"))
    lon = number(_text(position, "LongitudeDegrees"))
    if lat is not None and lon is not None and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0:
        values["lat_deg"] = lat
        values["lon_deg"] = lon
    else:
        samples.bad_positions += 1


def _put(values: dict[str, float], channel: str, value: float | None) -> None:
    # The first value for a channel wins (a point may carry Cadence and RunCadence).
    if value is not None and channel not in values:
        values[channel] = value


def _laps(raw: list[tuple[datetime | None, ET.Element, list[datetime]]], start: datetime) -> list[Lap]:
    laps: list[Lap] = []
    for i, (lap_start, lap, times) in enumerate(raw):
        begin = lap_start if xmlsafe.plausible(lap_start) else (min(times) if times else start)
        next_start = raw[i + 1][0] if i + 1 < len(raw) else None
        if xmlsafe.plausible(next_start) and next_start >= begin:
            elapsed: float | None = (next_start - begin).total_seconds()
        elif times and max(times) >= begin:
            elapsed = (max(times) - begin).total_seconds()
        else:
            elapsed = None
        laps.append(_lap(lap, begin, elapsed))
    return laps


def _lap(lap: ET.Element, begin: datetime, elapsed: float | None) -> Lap:
    fields: dict[str, float | None] = {}
    ext: dict[str, float | None] = {}
    trigger = None
    for child in lap:
        tag = local(child.tag)
        if tag == "TotalTimeSeconds":
            fields["moving_s"] = number(child.text)
        elif tag == "DistanceMeters":
            fields["distance_m"] = number(child.text)
        elif tag == "MaximumSpeed":
            fields["max_speed_mps"] = number(child.text)
        elif tag == "Calories":
            kcal = number(child.text)
            fields["energy_j"] = kcal * KCAL_J if kcal is not None else None
        elif tag == "AverageHeartRateBpm":
            fields["avg_hr_bpm"] = number(_text(child, "Value"))
        elif tag == "MaximumHeartRateBpm":
            fields["max_hr_bpm"] = number(_text(child, "Value"))
        elif tag == "Cadence":
            fields["avg_cadence_rpm"] = number(child.text)
        elif tag == "TriggerMethod" and child.text:
            trigger = TRIGGERS.get(child.text.strip().lower(), child.text.strip().lower())
        elif tag == "Extensions":
            for item in child.iter():
                if not len(item):
                    ext[local(item.tag)] = number(item.text)
    fields.setdefault("avg_cadence_rpm", None)
    if fields["avg_cadence_rpm"] is None:
        fields["avg_cadence_rpm"] = ext.get("AvgRunCadence")
    fields["max_cadence_rpm"] = _first(ext.get("MaxBikeCadence"), ext.get("MaxRunCadence"))
    fields["avg_speed_mps"] = ext.get("AvgSpeed")
    fields["avg_power_w"] = ext.get("AvgWatts")
    fields["max_power_w"] = ext.get("MaxWatts")
    return Lap(start=begin, elapsed_s=elapsed, trigger=trigger, **fields)


def _summary(laps: list[Lap]) -> dict[str, float | None]:
    """Activity totals from the laps; None where a lap lacks the figure (derived later)."""
    if not laps:
        return {}
    out: dict[str, float | None] = {
        "moving_s": _sum(lap.moving_s for lap in laps),
        "distance_m": _sum(lap.distance_m for lap in laps),
        # The schema makes Calories mandatory, so writers without an estimate put 0
        # in every lap: a whole workout at 0 kcal means "unknown".
        "energy_j": _sum(lap.energy_j for lap in laps) or None,
        "max_hr_bpm": _max(lap.max_hr_bpm for lap in laps),
        "max_speed_mps": _max(lap.max_speed_mps for lap in laps),
        "max_cadence_rpm": _max(lap.max_cadence_rpm for lap in laps),
        "max_power_w": _max(lap.max_power_w for lap in laps),
        "avg_hr_bpm": _weighted(laps, "avg_hr_bpm"),
        "avg_cadence_rpm": _weighted(laps, "avg_cadence_rpm"),
        "avg_power_w": _weighted(laps, "avg_power_w"),
    }
    if out["distance_m"] is not None and out["moving_s"]:
        # As devices report it: distance over timer time.
        out["avg_speed_mps"] = out["distance_m"] / out["moving_s"]
    return out


def _sum(values: Iterable[float | None]) -> float | None:
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    return float(sum(values))


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _weighted(laps: list[Lap], attr: str) -> float | None:
    """Lap averages combined by lap timer time; None unless every lap has both."""
    pairs = [(getattr(lap, attr), lap.moving_s) for lap in laps]
    if any(v is None or w is None for v, w in pairs):
        return None
    total = sum(w for _, w in pairs)
    if total <= 0:
        return None
    return sum(v * w for v, w in pairs) / total


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _device(activity: ET.Element) -> Device | None:
    creator = next(_children(activity, "Creator"), None)
    if creator is None:
        return None
    product = (_text(creator, "Name") or "").strip() or None
    unit = number(_text(creator, "UnitId"))
    serial = int(unit) if unit is not None and unit.is_integer() and 0 < unit < 2**63 else None
    return Device(product=product, serial_number=serial, software_version=_version(creator))


def _version(creator: ET.Element) -> str | None:
    version = next(_children(creator, "Version"), None)
    if version is None:
        return None
    parts = [number(_text(version, tag)) for tag in ("VersionMajor", "VersionMinor", "BuildMajor", "BuildMinor")]
    if parts[0] is None or any(p is not None and not p.is_integer() for p in parts):
        return None
    major, minor, build_major, build_minor = (int(p) if p is not None else 0 for p in parts)
    text = f"{major}.{minor}"
    if build_major or build_minor:
        text += f".{build_major}.{build_minor}"
    return text


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if local(child.tag) == name)


def _text(element: ET.Element, name: str) -> str | None:
    child = next(_children(element, name), None)
    if child is None or child.text is None:
        return None
    return child.text.strip()


__all__ = ["SPORTS", "TRIGGERS", "decode_tcx"]

"""Apple Health workouts -> :class:`hub.model.Activity`, through a canonical blob.

Each workout is stored like a file: its *blob* holds the Workout element (attributes
sorted, the device's per-export object address removed), the heart-rate samples the
watch recorded during it, and the route GPX. The blob's SHA-256 is the workout's
identity, so importing the same workout from a newer export is a harmless
duplicate, and :func:`decode_workout` rebuilds the activity from the blob alone (so
``fithub reprocess`` can redo it). Pure: no database, no files.
"""

from __future__ import annotations

import base64
import math
import pyexpat
import re
from datetime import datetime
from xml.sax.saxutils import quoteattr

from connectors.files import xmlsafe
from hub.derive import fill_summary
from hub.errors import DecodeError
from hub.model import Activity, Decoded, Device, Lap, Provenance, SampleStream

from .records import BadDate, normalise_device, parse_date

FORMAT = "apple_health_workout"

# HKWorkoutActivityType suffix -> (sport, sub_sport), FIT-style names as the other decoders use.
SPORTS: dict[str, tuple[str, str | None]] = {
    "Running": ("running", None), "Walking": ("walking", None), "Cycling": ("cycling", None),
    "Hiking": ("hiking", None), "Swimming": ("swimming", None), "Rowing": ("rowing", None),
    "Elliptical": ("fitness_equipment", "elliptical"), "StairClimbing": ("fitness_equipment", "stair_climbing"),
    "Stairs": ("fitness_equipment", "stair_climbing"),
    "TraditionalStrengthTraining": ("training", "strength_training"),
    "FunctionalStrengthTraining": ("training", "strength_training"),
    "HighIntensityIntervalTraining": ("training", "cardio_training"), "CoreTraining": ("training", None),
    "CrossTraining": ("training", None), "MixedCardio": ("training", "cardio_training"),
    "Yoga": ("training", "yoga"), "Pilates": ("training", "pilates"), "Flexibility": ("training", "flexibility_training"),
    "CrossCountrySkiing": ("cross_country_skiing", None), "DownhillSkiing": ("alpine_skiing", None),
    "Snowboarding": ("snowboarding", None), "SkatingSports": ("inline_skating", None),
    "PaddleSports": ("paddling", None), "Paddling": ("paddling", None), "SurfingSports": ("surfing", None),
    "Climbing": ("rock_climbing", None), "Boxing": ("boxing", None), "Soccer": ("soccer", None),
    "Tennis": ("tennis", None), "Basketball": ("basketball", None), "Golf": ("golf", None),
    "Other": ("generic", None),
}
INDOOR_SUB_SPORT = {"running": "treadmill", "cycling": "indoor_cycling", "walking": "indoor_walking",
                    "rowing": "indoor_rowing"}
_TO_M = {"km": 1000.0, "m": 1.0, "mi": 1609.344, "ft": 0.3048, "yd": 0.9144, "cm": 0.01}
_TO_J = {"kcal": 4184.0, "Cal": 4184.0, "kJ": 1000.0, "J": 1.0}
_TO_S = {"min": 60.0, "s": 1.0, "hr": 3600.0, "h": 3600.0, "ms": 0.001}


def sport_of(activity_type: str | None) -> tuple[str, str | None]:
    name = (activity_type or "").removeprefix("HKWorkoutActivityType")
    return SPORTS.get(name, ("generic", None))


# -- the blob ---------------------------------------------------------------------------------------------


def _element(tree: list, indent: str) -> str:
    tag, attrs, children = tree
    attrs = dict(attrs)
    if "device" in attrs:
        attrs["device"] = normalise_device(attrs["device"]) or ""
    text = f"{indent}<{tag}" + "".join(f" {k}={quoteattr(v)}" for k, v in sorted(attrs.items()))
    if not children:
        return text + "/>\n"
    inner = "".join(_element(child, indent + " ") for child in children)
    return f"{text}>\n{inner}{indent}</{tag}>\n"


def workout_blob(tree: list, heart_rate: list[tuple[datetime, float]], route: tuple[str, bytes] | None) -> bytes:
    """The canonical bytes of one workout (see the module docstring)."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<AppleHealthWorkout version="1">\n', _element(tree, " ")]
    if heart_rate:
        parts.append(" <HeartRate>\n")
        parts.extend(f'  <S t="{t:%Y-%m-%dT%H:%M:%S}Z" bpm="{v:g}"/>\n' for t, v in heart_rate)
        parts.append(" </HeartRate>\n")
    if route is not None:
        name, data = route
        parts.append(f" <Route name={quoteattr(name)}>{base64.b64encode(data).decode()}</Route>\n")
    parts.append("</AppleHealthWorkout>\n")
    return "".join(parts).encode("utf-8")


def inline_locations(tree: list) -> bool:
    """True when the workout carries its route inline (old exports: WorkoutRoute/Location)."""
    return any(child[0] == "WorkoutRoute" and any(g[0] == "Location" for g in child[2]) for child in tree[2])


def route_reference(tree: list) -> str | None:
    for child in tree[2]:
        if child[0] == "WorkoutRoute":
            for grand in child[2]:
                if grand[0] == "FileReference" and grand[1].get("path"):
                    return grand[1]["path"]
    return None


# -- decoding ---------------------------------------------------------------------------------------------


def decode_workout(data: bytes, origin: Provenance) -> Decoded:
    """One workout blob -> one activity; every failure is one DecodeError."""
    try:
        return Decoded(activities=[_decode(data, origin)])
    except DecodeError:
        raise
    except (BadDate, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DecodeError(origin.name, f"cannot read the Apple Health workout: {type(exc).__name__}: {exc}") from exc


def _quantity(text: str | None, table: dict[str, float]) -> float | None:
    """'4520 cm' -> 45.2 (with the table of factors for the wanted unit)."""
    if not text:
        return None
    number, _, unit = text.strip().partition(" ")
    value = xmlsafe.number(number)
    factor = table.get(unit.strip())
    return value * factor if value is not None and factor is not None else None


def _scaled(value: str | None, unit: str | None, table: dict[str, float]) -> float | None:
    number = xmlsafe.number(value)
    factor = table.get(unit or "")
    return number * factor if number is not None and factor is not None else None


def _decode(data: bytes, origin: Provenance) -> Activity:
    root = xmlsafe.parse(data, origin.name)
    if root.tag != "AppleHealthWorkout":
        raise DecodeError(origin.name, f"root element is <{root.tag}>, not <AppleHealthWorkout>")
    workout = root.find("Workout")
    if workout is None:
        raise DecodeError(origin.name, "no <Workout> in the workout blob")
    a = workout.attrib
    start, offset = parse_date(a["startDate"])
    end, _ = parse_date(a["endDate"])
    elapsed = max((end - start).total_seconds(), 0.0)
    meta = {m.get("key"): m.get("value") for m in workout.findall("MetadataEntry")}
    sport, sub_sport = sport_of(a.get("workoutActivityType"))
    if meta.get("HKIndoorWorkout") == "1":
        sub_sport = INDOOR_SUB_SPORT.get(sport, sub_sport)
    if sport == "swimming":
        sub_sport = {"1": "lap_swimming", "2": "open_water"}.get(meta.get("HKSwimmingLocationType") or "", sub_sport)
    warnings: list[str] = []

    distance = _scaled(a.get("totalDistance"), a.get("totalDistanceUnit"), _TO_M)
    energy = _scaled(a.get("totalEnergyBurned"), a.get("totalEnergyBurnedUnit"), _TO_J)
    avg_hr = max_hr = None
    for stat in workout.findall("WorkoutStatistics"):  # iOS 16+: the totals live here
        stype, unit = stat.get("type", ""), stat.get("unit")
        if stype.startswith("HKQuantityTypeIdentifierDistance") and distance is None:
            distance = _scaled(stat.get("sum"), unit, _TO_M)
        elif stype == "HKQuantityTypeIdentifierActiveEnergyBurned" and energy is None:
            energy = _scaled(stat.get("sum"), unit, _TO_J)
        elif stype == "HKQuantityTypeIdentifierHeartRate" and unit == "count/min":
            avg_hr, max_hr = xmlsafe.number(stat.get("average")), xmlsafe.number(stat.get("maximum"))

    laps, paused = _events(workout, start, end)
    duration = _scaled(a.get("duration"), a.get("durationUnit"), _TO_S)
    moving = duration if duration is not None else (elapsed - paused if paused else None)
    samples = _samples(root, workout, start, end, origin, warnings)
    device_text = a.get("device") or ""
    product = next((p.split(":", 1)[1] for p in device_text.split(", ") if p.startswith("name:")), None)
    activity = Activity(
        sport=sport,
        sub_sport=sub_sport,
        start=start,
        utc_offset_s=offset,
        elapsed_s=elapsed,
        moving_s=moving,
        distance_m=distance,
        energy_j=energy,
        ascent_m=_quantity(meta.get("HKElevationAscended"), _TO_M),
        avg_hr_bpm=avg_hr,
        max_hr_bpm=max_hr,
        device=Device(manufacturer="apple", product=product or a.get("sourceName"), software_version=a.get("sourceVersion")),
        laps=tuple(laps),
        samples=samples,
        # Same workout in another export (even with more samples) -> same source identity.
        source_id=f"apple_health:{a.get('sourceName', '')}:{start.isoformat()}:{a.get('workoutActivityType', '')}",
        provenance=origin,
        warnings=tuple(warnings),
    )
    return fill_summary(activity)


def _events(workout, start: datetime, end: datetime) -> tuple[list[Lap], float]:
    """Laps (lap events, else segment events) and the total paused time."""
    laps: dict[str, list[Lap]] = {"HKWorkoutEventTypeLap": [], "HKWorkoutEventTypeSegment": []}
    paused = 0.0
    pause_at: datetime | None = None
    for event in workout.findall("WorkoutEvent"):
        etype = event.get("type", "")
        try:
            when, _ = parse_date(event.get("date", ""))
        except BadDate:
            continue
        if etype in laps:
            laps[etype].append(Lap(start=when, elapsed_s=_scaled(event.get("duration"), event.get("durationUnit"), _TO_S),
                                   trigger="manual" if etype.endswith("Lap") else "segment"))
        elif etype in ("HKWorkoutEventTypePause", "HKWorkoutEventTypeMotionPaused") and pause_at is None:
            pause_at = when
        elif etype in ("HKWorkoutEventTypeResume", "HKWorkoutEventTypeMotionResumed") and pause_at is not None:
            paused += max((when - pause_at).total_seconds(), 0.0)
            pause_at = None
    if pause_at is not None:
        paused += max((end - pause_at).total_seconds(), 0.0)
    chosen = laps["HKWorkoutEventTypeLap"] or laps["HKWorkoutEventTypeSegment"]
    return sorted(chosen, key=lambda lap: lap.start), paused


def _samples(root, workout, start: datetime, end: datetime, origin: Provenance, warnings: list[str]) -> SampleStream:
    """Route positions and heart rate on one time axis (offsets from the workout start)."""
    rows: dict[float, dict[str, float]] = {}
    route = root.find("Route")
    if route is not None and route.text:
        points = parse_route(base64.b64decode(route.text), route.get("name"))
        if not points:
            warnings.append(f"route {route.get('name')}: no timed points with valid coordinates")
        for when, values in points:
            row = rows.setdefault((when - start).total_seconds(), {})
            for name, value in values.items():
                row.setdefault(name, value)
    for location in workout.iter("Location"):  # old exports: the route inline
        try:
            when, _ = parse_date(location.get("date", ""))
        except BadDate:
            continue
        row = rows.setdefault((when - start).total_seconds(), {})
        for attr, name in (("latitude", "lat_deg"), ("longitude", "lon_deg"), ("altitude", "altitude_m"), ("speed", "speed_mps")):
            value = xmlsafe.number(location.get(attr))
            if value is not None and not (name == "speed_mps" and value < 0):
                row.setdefault(name, value)
    hr = root.find("HeartRate")
    if hr is not None:
        for s in hr.findall("S"):
            when = xmlsafe.parse_time(s.get("t"))
            bpm = xmlsafe.number(s.get("bpm"))
            if when is not None and bpm is not None:
                rows.setdefault((when - start).total_seconds(), {})["hr_bpm"] = bpm
    limit = (end - start).total_seconds() + 60
    offsets = sorted(t for t in rows if -60 <= t <= limit and math.isfinite(t))
    dropped = len(rows) - len(offsets)
    if dropped:
        warnings.append(f"dropped {dropped} sample(s) more than a minute outside the workout")
    offsets = [max(t, 0.0) for t in offsets]  # a fix a few seconds early belongs to the start
    keys = sorted(rows)
    kept = [t for t in keys if -60 <= t <= limit]
    names = sorted({n for t in kept for n in rows[t]})
    columns = {n: [rows[t].get(n) for t in kept] for n in names}
    return SampleStream(offsets_s=offsets, columns=columns)


# Apple's exporter writes every point in one shape; matching that shape directly is
# ~10x faster than an XML parser. Used only when it accounts for every <trkpt> of a
# well-formed file; anything else goes through expat.
_APPLE_POINT = re.compile(
    rb'<trkpt lon="([-0-9.]+)" lat="([-0-9.]+)"><ele>([-0-9.]+)</ele><time>([0-9T:Z-]+)</time>'
    rb'<extensions><speed>([-0-9.]+)</speed>'
)


def parse_route(data: bytes, name: str | None) -> list[tuple[datetime, dict[str, float]]]:
    """The timed points of an Apple workout-route GPX: (time, {channel: value}).

    A dedicated reader instead of the general GPX decoder: these files are all written
    by one exporter in one shape, and gpxpy's object model cost ~0.2 s per route, more
    than the rest of a workout's import. Hardened like every XML input: the file is
    always checked by expat with no DTD and no entities.
    """
    points = _parse_route_xml(data, name, collect=False)
    matches = _APPLE_POINT.findall(data)
    if matches and len(matches) == data.count(b"<trkpt"):
        fast = []
        for lon, lat, ele, when, speed in matches:
            t = xmlsafe.parse_time(when.decode())
            la, lo = float(lat), float(lon)
            if t is None or abs(la) > 90 or abs(lo) > 180:
                continue
            values = {"lat_deg": la, "lon_deg": lo, "altitude_m": float(ele)}
            if float(speed) >= 0:
                values["speed_mps"] = float(speed)
            fast.append((t, values))
        return fast
    return _parse_route_xml(data, name, collect=True) if points is None else points


def _parse_route_xml(data: bytes, name: str | None, collect: bool) -> list[tuple[datetime, dict[str, float]]] | None:
    """Parse (and, with ``collect``, read the points of) a route GPX with expat."""
    parser = pyexpat.ParserCreate()
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True

    def refuse(*_args):
        raise DecodeError(name, "the route declares a DTD or entities, which are refused")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = lambda *a: 0
    points: list[tuple[datetime, dict[str, float]]] = []
    current: dict[str, str] = {}
    text: list[str] = []
    fields = {"ele": "altitude_m", "time": "time", "speed": "speed_mps"}

    def start(tag: str, attrs: dict) -> None:
        tag = tag.rpartition(":")[2]
        if tag == "trkpt":
            current.clear()
            current["lat_deg"], current["lon_deg"] = attrs.get("lat", ""), attrs.get("lon", "")
        text.clear()

    def end(tag: str) -> None:
        tag = tag.rpartition(":")[2]
        if tag in fields and "lat_deg" in current:
            current[fields[tag]] = "".join(text)
        elif tag == "trkpt":
            when = xmlsafe.parse_time(current.get("time"))
            lat, lon = xmlsafe.number(current.get("lat_deg")), xmlsafe.number(current.get("lon_deg"))
            if when is not None and lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
                values = {"lat_deg": lat, "lon_deg": lon}
                for key in ("altitude_m", "speed_mps"):
                    value = xmlsafe.number(current.get(key))
                    if value is not None and not (key == "speed_mps" and value < 0):
                        values[key] = value
                points.append((when, values))
            current.clear()

    if collect:
        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = text.append
    try:
        parser.Parse(data, True)
    except pyexpat.ExpatError as exc:
        raise DecodeError(name, f"route GPX is not well-formed XML: {pyexpat.ErrorString(exc.code)}",
                          f"line {exc.lineno}") from exc
    return points if collect else None


def workout_name(tree: list) -> str:
    a = tree[1]
    return f"{sport_of(a.get('workoutActivityType'))[0]} {a.get('startDate', '')}".strip()


__all__ = ["FORMAT", "SPORTS", "decode_workout", "inline_locations", "parse_route", "route_reference", "sport_of", "workout_blob",
           "workout_name"]

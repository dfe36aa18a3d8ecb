"""GPX 1.0 / 1.1 decoder: bytes in, :class:`hub.model.Decoded` out.

Decisions a reader cannot see from the code alone:

* One :class:`Activity` per ``<trk>``; the segments of a track are joined in file
  order. Recorders start a new ``<trkseg>`` when they pause or lose the satellite
  fix, which is a gap in time inside one workout, not a second workout.
* Only timed points are samples; a time before the GPS epoch (1980) is a writer's
  placeholder, not a time. A track without any valid ``<time>`` is a planned route
  or course, and so are ``<rte>`` and waypoint-only files: those are reported as
  ``not_activity``, not as errors.
* Points whose coordinates are not numbers or lie outside +-90 / +-180 are dropped
  (OpenTracks, for one, writes lat=100 or 200 as pause markers), with a warning that
  says how many.
* Sensor values come from ``<extensions>`` matched by *local* element name, because
  writers use Garmin TrackPointExtension v1 or v2, cluetrust gpxdata, bare elements or
  their own namespaces for the same quantities. Other writers' distance extensions
  are ignored, as their meaning differs (cumulative, per point, per segment), and
  distance is derived from the positions; the one exception is the device's
  cumulative distance that fithub's own GPX export writes in its namespace.
* There is no natural identity in a GPX file, so ``source_id`` stays None and
  duplicates are recognised by content elsewhere.

The XML is parsed once, by the hardened parser in :mod:`xmlsafe` (no entity
expansion, no external references, bounded nesting); gpxpy's field model then reads
that tree, so gpxpy's own text handling never sees untrusted input.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import gpxpy.gpx
import gpxpy.gpxfield

from hub.derive import fill_summary
from hub.errors import DecodeError
from hub.model import Activity, Decoded, Provenance, SampleStream

from . import xmlsafe

# Local names of extension elements and the channel each one feeds. The first
# element found for a channel wins (Amazfit writes both <heartrate> and <hr>).
EXTENSION_CHANNELS: dict[str, str] = {
    "hr": "hr_bpm",
    "heartrate": "hr_bpm",
    "heart_rate": "hr_bpm",
    "cad": "cadence_rpm",
    "cadence": "cadence_rpm",
    "runcadence": "cadence_rpm",
    "power": "power_w",
    "powerinwatts": "power_w",
    "watts": "power_w",
    "speed": "speed_mps",
    "atemp": "temperature_c",
    "wtemp": "temperature_c",
    "temp": "temperature_c",
    "temperature": "temperature_c",
}

# The device's cumulative distance, as fithub's own GPX export writes it. Other
# writers' "distance" extensions mean different things (per-leg, since last point),
# so only this namespace is trusted.
FITHUB_NS = "urn:fithub:gpx:1"
FITHUB_DISTANCE = f"{{{FITHUB_NS}}}distance"

# <trk><type> values, normalised to lower case with "_" for spaces and dashes, mapped
# to FIT-style (sport, sub_sport). Garmin Connect writes FIT-like names, Strava its
# activity names or a number (1 ride, 4 hike, 9 run, 10 walk, 16 swim), apps free text.
SPORTS: dict[str, tuple[str, str | None]] = {
    "running": ("running", None),
    "run": ("running", None),
    "9": ("running", None),
    "street_running": ("running", "street"),
    "trail_running": ("running", "trail"),
    "trailrun": ("running", "trail"),
    "treadmill_running": ("running", "treadmill"),
    "track_running": ("running", "track"),
    "virtualrun": ("running", "virtual_activity"),
    "virtual_run": ("running", "virtual_activity"),
    "cycling": ("cycling", None),
    "biking": ("cycling", None),
    "bike": ("cycling", None),
    "ride": ("cycling", None),
    "1": ("cycling", None),
    "road_biking": ("cycling", "road"),
    "road_cycling": ("cycling", "road"),
    "mountain_biking": ("cycling", "mountain"),
    "mountainbikeride": ("cycling", "mountain"),
    "gravel_cycling": ("cycling", "gravel_cycling"),
    "gravelride": ("cycling", "gravel_cycling"),
    "indoor_cycling": ("cycling", "indoor_cycling"),
    "virtualride": ("cycling", "virtual_activity"),
    "virtual_ride": ("cycling", "virtual_activity"),
    "ebikeride": ("cycling", "e_bike_fitness"),
    "e_bike_ride": ("cycling", "e_bike_fitness"),
    "walking": ("walking", None),
    "walk": ("walking", None),
    "10": ("walking", None),
    "casual_walking": ("walking", "casual_walking"),
    "speed_walking": ("walking", "speed_walking"),
    "hiking": ("hiking", None),
    "hike": ("hiking", None),
    "4": ("hiking", None),
    "swimming": ("swimming", None),
    "swim": ("swimming", None),
    "16": ("swimming", None),
    "open_water_swimming": ("swimming", "open_water"),
    "lap_swimming": ("swimming", "lap_swimming"),
    "rowing": ("rowing", None),
    "row": ("rowing", None),
    "indoor_rowing": ("rowing", "indoor_rowing"),
    "alpine_skiing": ("alpine_skiing", None),
    "alpineski": ("alpine_skiing", None),
    "resort_skiing": ("alpine_skiing", None),
    "backcountryski": ("alpine_skiing", "backcountry"),
    "backcountry_skiing": ("alpine_skiing", "backcountry"),
    "cross_country_skiing": ("cross_country_skiing", None),
    "nordicski": ("cross_country_skiing", None),
    "nordic_ski": ("cross_country_skiing", None),
    "snowboarding": ("snowboarding", None),
    "snowboard": ("snowboarding", None),
    "snowshoeing": ("snowshoeing", None),
    "snowshoe": ("snowshoeing", None),
    "inline_skating": ("inline_skating", None),
    "inlineskate": ("inline_skating", None),
    "ice_skating": ("ice_skating", None),
    "iceskate": ("ice_skating", None),
    "stand_up_paddleboarding": ("stand_up_paddleboarding", None),
    "standuppaddling": ("stand_up_paddleboarding", None),
    "kayaking": ("kayaking", None),
    "canoeing": ("paddling", None),
    "paddling": ("paddling", None),
    "mountaineering": ("mountaineering", None),
    "rock_climbing": ("rock_climbing", None),
    "rockclimbing": ("rock_climbing", None),
    "workout": ("training", None),
    "training": ("training", None),
    "weighttraining": ("training", "strength_training"),
    "strength_training": ("training", "strength_training"),
}


def sport_of(track_type: str | None) -> tuple[str, str | None]:
    """FIT-style (sport, sub_sport) for a ``<trk><type>`` value; unknown -> generic."""
    if not track_type:
        return "generic", None
    key = "_".join(track_type.strip().lower().replace("-", " ").split())
    return SPORTS.get(key, ("generic", None))


def decode_gpx(data: bytes, origin: Provenance) -> Decoded:
    """Decode one GPX file; every failure is a single :class:`DecodeError`."""
    try:
        return _decode(bytes(data), origin)
    except DecodeError:
        raise
    except Exception as exc:  # the boundary: whatever gpxpy or the data raised
        raise DecodeError(origin.name, f"cannot read GPX: {type(exc).__name__}: {exc}") from exc


def _decode(data: bytes, origin: Provenance) -> Decoded:
    name = origin.name
    root = xmlsafe.parse(data, name)
    root_name = xmlsafe.local(root.tag)
    if root_name != "gpx":
        raise DecodeError(name, f"root element is <{root_name}>, not <gpx>")
    try:
        gpx = _gpx_model(root)
    except gpxpy.gpx.GPXException as exc:
        raise DecodeError(name, f"invalid GPX: {exc}") from exc

    activities: list[Activity] = []
    warnings: list[str] = []
    reasons: list[str] = []
    for number, track in enumerate(gpx.tracks, start=1):
        activity, reason = _track_activity(track, gpx, origin)
        if activity is not None:
            activities.append(activity)
        elif reason is not None:
            reasons.append(reason)
            if len(gpx.tracks) > 1:
                warnings.append(f"track {number} skipped: {reason}")
    if activities:
        return Decoded(activities=activities, warnings=warnings)
    return Decoded(not_activity=_why_not_activity(gpx, reasons))


def _gpx_model(root: ET.Element) -> gpxpy.gpx.GPX:
    """gpxpy's object model of the already-parsed, hardened tree.

    ``gpxpy.parse()`` would parse the text a second time, with the stdlib parser,
    after running regular expressions over the whole text that take quadratic time
    on crafted input (thousands of " xmlns" with no "=" after them). Handing gpxpy
    the vetted tree avoids both. gpxpy looks elements up by bare name, so the
    document's own namespace is removed from the tags first, as ``gpxpy.parse()``
    does by deleting the default ``xmlns`` from the text.
    """
    if root.tag.startswith("{"):
        prefix = root.tag[: root.tag.index("}") + 1]
        for element in root.iter():
            if isinstance(element.tag, str) and element.tag.startswith(prefix):
                element.tag = element.tag[len(prefix) :]
    gpx = gpxpy.gpx.GPX()
    gpxpy.gpxfield.gpx_fields_from_xml(gpx, root, root.get("version"))
    return gpx


def _why_not_activity(gpx: gpxpy.gpx.GPX, reasons: list[str]) -> str:
    if reasons:
        return f"GPX {reasons[0]}: not an activity"
    if gpx.routes:
        return "GPX has a route but no timed track: not an activity"
    if gpx.waypoints:
        return "GPX has only waypoints, no track: not an activity"
    return "GPX holds no track points: not an activity"


def _track_activity(
    track: gpxpy.gpx.GPXTrack, gpx: gpxpy.gpx.GPX, origin: Provenance
) -> tuple[Activity | None, str | None]:
    """The activity one ``<trk>`` records, or None and why not."""
    times: list[datetime] = []
    columns: dict[str, list[float | None]] = {"lat_deg": [], "lon_deg": [], "altitude_m": []}
    bad_coords = untimed = total = 0
    for segment in track.segments:
        for point in segment.points:
            total += 1
            lat, lon = point.latitude, point.longitude
            if not _valid_position(lat, lon):
                bad_coords += 1
                continue
            time = xmlsafe.as_utc(point.time)
            if time is None or not xmlsafe.plausible(time):
                untimed += 1
                continue
            row = _extension_values(point.extensions)
            speed = _finite(point.speed)  # GPX 1.0 <speed>, m/s
            if speed is not None:
                row["speed_mps"] = speed
            n = len(times)
            times.append(time)
            columns["lat_deg"].append(float(lat))
            columns["lon_deg"].append(float(lon))
            columns["altitude_m"].append(_finite(point.elevation))
            for channel, value in row.items():
                if channel not in columns:
                    # A channel first seen mid-track has gaps before it.
                    columns[channel] = [None] * n
                columns[channel].append(value)
            for column in columns.values():
                if len(column) == n:
                    column.append(None)

    if total == 0:
        return None, None
    if not times:
        if untimed:
            return None, "track has no timestamps (a planned route or course)"
        return None, f"track has no point with valid coordinates ({bad_coords} dropped)"

    warnings: list[str] = []
    if bad_coords:
        warnings.append(
            f"dropped {bad_coords} track point(s) with invalid coordinates "
            "(latitude outside +-90, longitude outside +-180, or not a number)"
        )
    if untimed:
        warnings.append(f"dropped {untimed} track point(s) without a valid time")
    backwards = sum(1 for a, b in zip(times, times[1:]) if b < a)
    if backwards:
        warnings.append(f"time goes backwards {backwards} time(s) between consecutive points")

    start = min(times)
    samples = SampleStream(
        offsets_s=[(t - start).total_seconds() for t in times],
        columns={k: v for k, v in columns.items() if any(x is not None for x in v)},
    )
    sport, sub_sport = sport_of(track.type)
    activity = Activity(
        sport=sport,
        sub_sport=sub_sport,
        start=start,
        elapsed_s=(max(times) - start).total_seconds(),
        name=(track.name or gpx.name or None),
        samples=samples,
        provenance=origin,
        warnings=tuple(warnings),
    )
    return fill_summary(activity), None


def _valid_position(lat: Any, lon: Any) -> bool:
    try:
        lat, lon = float(lat), float(lon)
    except (TypeError, ValueError):
        return False
    return math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _extension_values(extensions: list[Any]) -> dict[str, float]:
    """Channel values found anywhere under a point's ``<extensions>``."""
    values: dict[str, float] = {}
    for top in extensions:
        for element in top.iter():
            if len(element):
                continue  # a container such as TrackPointExtension
            if element.tag == FITHUB_DISTANCE:
                channel: str | None = "distance_m"
            else:
                channel = EXTENSION_CHANNELS.get(xmlsafe.local(element.tag).lower())
            if channel is None or channel in values:
                continue
            value = xmlsafe.number(element.text)
            if value is not None:
                values[channel] = value
    return values


__all__ = ["EXTENSION_CHANNELS", "SPORTS", "decode_gpx", "sport_of"]

"""GPX 1.1 export with Garmin's TrackPointExtension v2.

Heart rate, cadence, air temperature and speed go in ``gpxtpx:TrackPointExtension``
(the extension Garmin, Strava and most tools read); power has no standard GPX
home, so it is written as a bare ``<power>`` element, the form Strava and
Garmin Connect exports use and their importers read back.

The device's own cumulative distance (wheel sensor, foot pod or the watch's
filtered GPS) usually differs from the straight-line sum of the recorded points by
a few percent, so it is kept per point as ``<fithub:distance>`` (metres) in a
namespace of our own; other tools ignore it, fithub's GPX decoder reads it back.

GPX can only hold points with a position. Samples without one are left out, and
the track is split into a new ``trkseg`` where the position drops out, which is
how the GPX 1.1 schema says lost reception is to be recorded.
"""

from __future__ import annotations

from datetime import timedelta
from xml.sax.saxutils import escape, quoteattr

from hub.model import Activity

from .csv_format import format_number
from .json_format import iso_utc

GPX_NS = "http://www.topografix.com/GPX/1/1"
TPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
FITHUB_NS = "urn:fithub:gpx:1"
SCHEMA_LOCATION = (
    f"{GPX_NS} http://www.topografix.com/GPX/1/1/gpx.xsd "
    f"{TPX_NS} http://www.garmin.com/xmlschemas/TrackPointExtensionv2.xsd"
)

# Child order inside TrackPointExtension v2 is fixed by its schema
# (atemp, wtemp, depth, hr, cad, speed, course, bearing); hr and cad are
# xsd:unsignedByte, hence whole numbers.
_TPX_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("atemp", "temperature_c", False),
    ("hr", "hr_bpm", True),
    ("cad", "cadence_rpm", True),
    ("speed", "speed_mps", False),
)


def _number(value: float, whole: bool) -> str:
    return str(round(value)) if whole else format_number(value)


def _point(activity: Activity, i: int) -> str:
    s = activity.samples
    cols = s.columns

    def get(name: str) -> float | None:
        column = cols.get(name)
        return column[i] if column is not None else None

    lat, lon = get("lat_deg"), get("lon_deg")
    parts = [f'<trkpt lat="{format_number(lat)}" lon="{format_number(lon)}">']
    ele = get("altitude_m")
    if ele is not None:
        parts.append(f"<ele>{format_number(ele)}</ele>")
    parts.append(f"<time>{iso_utc(activity.start + timedelta(seconds=s.offsets_s[i]))}</time>")
    ext = []
    power = get("power_w")
    if power is not None:
        ext.append(f"<power>{round(power)}</power>")
    tpx = [
        f"<gpxtpx:{tag}>{_number(v, whole)}</gpxtpx:{tag}>"
        for tag, name, whole in _TPX_FIELDS
        if (v := get(name)) is not None
    ]
    if tpx:
        ext.append("<gpxtpx:TrackPointExtension>" + "".join(tpx) + "</gpxtpx:TrackPointExtension>")
    distance = get("distance_m")
    if distance is not None:
        ext.append(f"<fithub:distance>{format_number(distance)}</fithub:distance>")
    if ext:
        parts.append("<extensions>" + "".join(ext) + "</extensions>")
    parts.append("</trkpt>")
    return "".join(parts)


def _segments(activity: Activity) -> list[list[int]]:
    """Sample indices grouped into runs that all have a position."""
    cols = activity.samples.columns
    lat, lon = cols.get("lat_deg"), cols.get("lon_deg")
    if lat is None or lon is None:
        return []
    segments: list[list[int]] = []
    current: list[int] = []
    for i, (la, lo) in enumerate(zip(lat, lon)):
        if la is None or lo is None:
            if current:
                segments.append(current)
                current = []
            continue
        current.append(i)
    if current:
        segments.append(current)
    return segments


def write_gpx(activity: Activity) -> bytes:
    name = f"<name>{escape(activity.name)}</name>" if activity.name else ""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<gpx version="1.1" creator="fithub" xmlns="{GPX_NS}" xmlns:gpxtpx="{TPX_NS}" xmlns:fithub="{FITHUB_NS}"'
        f" xmlns:xsi={quoteattr(XSI_NS)} xsi:schemaLocation={quoteattr(SCHEMA_LOCATION)}>",
        f"<metadata>{name}<time>{iso_utc(activity.start)}</time></metadata>",
        f"<trk>{name}<type>{escape(activity.sport)}</type>",
    ]
    for segment in _segments(activity):
        lines.append("<trkseg>")
        lines.extend(_point(activity, i) for i in segment)
        lines.append("</trkseg>")
    lines.append("</trk>")
    lines.append("</gpx>")
    return ("\n".join(lines) + "\n").encode("utf-8")


__all__ = ["write_gpx"]

"""Build the copies of one real workout that reach fithub by different roads.

A watch writes a FIT file; the same workout then comes back as a GPX or TCX from a
web service, converted by another tool, with its clock off by whole hours (the
timezone bug of many exporters), cropped at both ends, or split across devices
(positions from the phone, heart rate from a strap). The functions here make such
copies from real corpus files, so the dedupe tests import files, not hand-built
records.

Two independent roads are used on purpose: fithub's own exporter (decode, change,
export) and GPSBabel, plus plain text edits of the XML. A copy made only by
fithub's exporter could hide a bug that the exporter and the decoder share.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.etree import ElementTree

from connectors.export import export
from connectors.files import decoders
from hub.derive import fill_summary
from hub.model import Activity, Provenance, SampleStream

# Summary fields a stream determines: cleared on every edited copy and computed
# again from what the copy keeps, so a cropped or stripped copy does not carry
# the totals of the whole original.
_STREAM_SUMMARY = (
    "moving_s", "distance_m", "ascent_m", "descent_m", "energy_j",
    "avg_hr_bpm", "max_hr_bpm", "avg_power_w", "max_power_w",
    "avg_cadence_rpm", "max_cadence_rpm", "avg_speed_mps", "max_speed_mps",
)


def decode(path: Path) -> list[Activity]:
    """Every activity fithub's decoders find in ``path``."""
    fmt = path.suffix.lower().lstrip(".")
    origin = Provenance(source=f"file:{fmt}", sha256=None, received_at=datetime.now(timezone.utc), name=str(path))
    return decoders()[fmt](path.read_bytes(), origin).activities


def decode_one(path: Path) -> Activity:
    [activity] = decode(path)
    return activity


def write(activity: Activity, path: Path) -> Path:
    """Export ``activity`` in the format named by ``path``'s suffix."""
    path.write_bytes(export(activity, path.suffix.lstrip(".")))
    return path


def _resummarised(activity: Activity, samples: SampleStream, start: datetime) -> Activity:
    """``activity`` with a new stream: totals recomputed, per-lap data dropped."""
    elapsed = samples.offsets_s[-1] - samples.offsets_s[0] if len(samples) > 1 else 0.0
    blank = {name: None for name in _STREAM_SUMMARY}
    edited = replace(
        activity, start=start, samples=samples, elapsed_s=elapsed, laps=(), lengths=(), sets=(),
        hrv_rr_s=(), source_id=None, **blank,
    )
    return fill_summary(edited)


def window(activity: Activity, t0_s: float, t1_s: float) -> Activity:
    """The part of ``activity`` whose sample offsets lie in ``[t0_s, t1_s]``, as its own recording."""
    s = activity.samples
    keep = [i for i, t in enumerate(s.offsets_s) if t0_s <= t <= t1_s]
    if len(keep) < 2:
        raise ValueError(f"window {t0_s}..{t1_s} s keeps {len(keep)} samples")
    first = s.offsets_s[keep[0]]
    columns = {name: [col[i] for i in keep] for name, col in s.columns.items()}
    if "distance_m" in columns:
        # The device's running distance restarts at zero in a recording of its own.
        base = next((d for d in columns["distance_m"] if d is not None), 0.0)
        columns["distance_m"] = [None if d is None else d - base for d in columns["distance_m"]]
    samples = SampleStream(offsets_s=[s.offsets_s[i] - first for i in keep], columns=columns, units=dict(s.units))
    return _resummarised(activity, samples, activity.start + timedelta(seconds=first))


def trimmed(activity: Activity, head_s: float, tail_s: float) -> Activity:
    """``activity`` with ``head_s`` cut from its start and ``tail_s`` from its end."""
    last = activity.samples.offsets_s[-1]
    return window(activity, head_s, last - tail_s)


def halves(activity: Activity) -> tuple[Activity, Activity]:
    """Two back-to-back recordings: the samples before the middle, and from it on."""
    offsets = activity.samples.offsets_s
    middle = offsets[len(offsets) // 2]
    before = max(t for t in offsets if t < middle)
    return window(activity, offsets[0], before), window(activity, middle, offsets[-1])


def shifted(activity: Activity, seconds: float) -> Activity:
    """``activity`` with every absolute time moved by ``seconds`` (the stream is relative)."""
    d = timedelta(seconds=seconds)
    return replace(
        activity,
        start=activity.start + d,
        laps=tuple(replace(lap, start=lap.start + d) for lap in activity.laps),
        lengths=tuple(replace(x, start=x.start + d) for x in activity.lengths),
        sets=tuple(replace(x, start=x.start + d if x.start else None) for x in activity.sets),
        source_id=None,
    )


def only_channels(activity: Activity, names: set[str]) -> Activity:
    """``activity`` as a recorder that measured only the channels ``names``."""
    s = activity.samples
    kept = {name: col for name, col in s.columns.items() if name in names}
    missing = names - kept.keys()
    if missing:
        raise ValueError(f"{activity.source_id}: no channel {sorted(missing)} to keep")
    # Drop the instants where none of the kept channels has a value: a recorder
    # without them would not have written a point there.
    rows = [i for i in range(len(s)) if any(col[i] is not None for col in kept.values())]
    first = s.offsets_s[rows[0]]
    samples = SampleStream(
        offsets_s=[s.offsets_s[i] - first for i in rows],
        columns={name: [col[i] for i in rows] for name, col in kept.items()},
        units={k: v for k, v in s.units.items() if k in kept},
    )
    return _resummarised(activity, samples, activity.start + timedelta(seconds=first))


# --------------------------------------------------------------------------- XML text edits

_GPX_TIME = re.compile(r"(<time>)([^<]+)(</time>)")
_TCX_TIME = re.compile(r"(<Time>|<Id>|StartTime=\")([^<\"]+)(</Time>|</Id>|\")")


def _moved(stamp: str, seconds: float) -> str:
    value = datetime.fromisoformat(stamp.strip()).astimezone(timezone.utc) + timedelta(seconds=seconds)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def shift_xml_times(text: str, seconds: float) -> str:
    """Move every timestamp of a GPX or TCX document by ``seconds``, by text substitution.

    Works on the text rather than through a decoder, like the broken exporters it
    imitates: nothing else in the file changes.
    """
    pattern = _TCX_TIME if "<TrainingCenterDatabase" in text else _GPX_TIME
    count = 0

    def move(m: re.Match) -> str:
        nonlocal count
        count += 1
        return m.group(1) + _moved(m.group(2), seconds) + m.group(3)

    out = pattern.sub(move, text)
    if count == 0:
        raise ValueError("no timestamps found to shift")
    return out


# --------------------------------------------------------------------------- GPSBabel

GPSBABEL_FORMATS = {"gpx": "gpx", "tcx": "gtrnctr,course=0"}
# GPSBabel writes every TCX as a bike ride unless told the sport.
GPSBABEL_SPORTS = {"running": "Running", "cycling": "Biking"}


def gpsbabel_available() -> bool:
    return shutil.which("gpsbabel") is not None


def gpsbabel(src: Path, dest: Path, *, sport: str | None = None) -> Path:
    """Convert the FIT file ``src`` to GPX or TCX (by ``dest``'s suffix) with GPSBabel.

    Checks that the result is a timed track, since a converter that drops the
    times would turn a recording into a route that dedupe cannot place.
    """
    fmt = dest.suffix.lstrip(".")
    option = GPSBABEL_FORMATS[fmt]
    if fmt == "tcx" and sport in GPSBABEL_SPORTS:
        option += f",sport={GPSBABEL_SPORTS[sport]}"
    cmd = ["gpsbabel", "-i", "garmin_fit", "-f", str(src), "-o", option, "-F", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    points, timed = count_timed_points(dest)
    if points == 0 or timed != points:
        raise RuntimeError(f"gpsbabel wrote {dest} with {timed} timed points of {points}")
    return dest


def count_timed_points(path: Path) -> tuple[int, int]:
    """(track points, track points with a time) in a GPX or TCX file."""
    root = ElementTree.parse(path).getroot()
    local = lambda el: el.tag.rsplit("}", 1)[-1]  # noqa: E731
    points = [el for el in root.iter() if local(el) in ("trkpt", "Trackpoint")]
    timed = sum(1 for p in points if any(local(c) in ("time", "Time") and (c.text or "").strip() for c in p))
    return len(points), timed

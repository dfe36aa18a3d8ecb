"""Turn a :class:`fit_scan.Scan` into canonical model objects.

Pure functions. Decisions that are not obvious from the code:

* Time. FIT ``date_time`` is seconds since 1989-12-31 00:00 UTC. Values below
  0x10000000 count from device power-on; they are anchored with a
  ``timestamp_correlation`` message when the file has one, else with
  ``activity.local_timestamp`` taken as UTC (the offset is then unknown, so
  ``utc_offset_s`` stays None and a warning says so). Without either anchor there is
  no way to date the recording and the file is refused.
* Sessions. One :class:`Activity` per ``session``, ordered by start time (files may
  put the summaries before or after the samples). Records, laps, lengths, sets and
  R-R intervals go to the last session starting at or before them; anything before
  the first session belongs to it.
* Identity. ``source_id`` uses the *numeric* manufacturer and product ids, not their
  profile names: a newer profile naming a product must not change the identity of a
  file already stored.
* Values. A FIT field that is absent or holds its "invalid" sentinel is ``None``;
  anything that is not a finite number where a number is expected (corrupt files)
  is treated the same way, never as zero.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from itertools import compress, repeat
from operator import eq, is_, le, mul, sub
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hub.derive import fill_summary
from hub.model import (
    Activity,
    Device,
    Lap,
    Measurement,
    Provenance,
    SampleStream,
    StrengthSet,
    SwimLength,
)

from .fit_scan import Scan, Sparse

FIT_EPOCH_UNIX = 631065600  # 1989-12-31T00:00:00Z
RELATIVE_LIMIT = 0x10000000  # date_time values below this count from power-on
SEMICIRCLE_DEG = 180.0 / 2**31
KCAL_J = 4184.0
MAX_UTC_OFFSET_S = 15 * 3600  # real zones span -12 h .. +14 h
_NUMBER_TYPES = frozenset({int, float})


class UndatableError(Exception):
    """The file's times cannot be placed on the calendar."""


def is_num(value: Any) -> bool:
    return (value.__class__ is int or value.__class__ is float) and math.isfinite(value)


def num(message: dict[str, Any], *names: str) -> float | None:
    """The first finite number among ``names`` (e.g. enhanced_* before the plain field)."""
    for name in names:
        value = message.get(name)
        if value is not None and is_num(value):
            return value
    return None


def enum_name(value: Any, kind: str) -> str | None:
    """A profile enum as a lower-case name; unknown numeric values as ``<kind>_<n>``."""
    if isinstance(value, tuple):  # arrays (e.g. set.category): the first entry
        value = next((v for v in value if v is not None), None)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() or None
    if value.__class__ is int:
        return f"{kind}_{value}"
    return None


# ---------------------------------------------------------------------------- time


@dataclass(frozen=True)
class Clock:
    """Maps raw FIT seconds to calendar time."""

    shift: int = 0  # added to device-relative values
    anchored: str | None = None  # how relative values were anchored, for the warning

    def abs(self, raw: Any) -> int | None:
        if raw is None or raw.__class__ is not int or raw < 0:
            return None
        return raw + self.shift if raw < RELATIVE_LIMIT else raw

    def dt(self, raw: Any) -> datetime | None:
        value = self.abs(raw)
        if value is None:
            return None
        return datetime.fromtimestamp(value + FIT_EPOCH_UNIX, timezone.utc)


def make_clock(scan: Scan, record_ts: Sparse | None) -> Clock:
    """Find how to turn device-relative times into calendar times, if needed."""
    relative = False
    if record_ts is not None and record_ts.values:
        first = record_ts.values[0]
        relative = first.__class__ is int and first < RELATIVE_LIMIT
    for name in ("session", "lap"):
        for message in scan.kept(name):
            start = message.get("start_time")
            if start.__class__ is int and start < RELATIVE_LIMIT:
                relative = True
    if not relative:
        return Clock()
    for corr in scan.kept("timestamp_correlation"):
        ts, system = corr.get("timestamp"), corr.get("system_timestamp")
        if ts.__class__ is int and system.__class__ is int and ts >= RELATIVE_LIMIT > system:
            return Clock(shift=ts - system, anchored="timestamp_correlation")
    for act in scan.kept("activity"):
        ts, local = act.get("timestamp"), act.get("local_timestamp")
        if ts.__class__ is int and local.__class__ is int and ts < RELATIVE_LIMIT <= local:
            return Clock(shift=local - ts, anchored="local_timestamp")
    raise UndatableError(
        "timestamps count from device power-on and the file holds no absolute time to anchor them"
    )


# ---------------------------------------------------------------------------- samples


def dense(
    sparse: Sparse | None,
    n: int,
    scale: float | None = None,
    limit: float | None = None,
    index: list[int] | None = None,
) -> list[Any] | None:
    """Expand a sparse column to ``n`` rows; non-numbers and out-of-range values are gaps.

    ``index`` is ``list(range(n))``, passed in when several columns of one file are
    expanded so that it is built once.
    """
    if sparse is None or not sparse.rows:
        return None
    rows, values = sparse.rows, sparse.values
    # Fast path, done with C-level builtins: all values are numbers and their sum is
    # finite (so none is inf/NaN). Corrupt files fall through to the checked loop.
    if set(map(type, values)) <= _NUMBER_TYPES and math.isfinite(sum(values)):
        if scale is not None:
            values = list(map(mul, values, repeat(scale)))  # v * scale, without a Python loop
        if limit is None or (min(values) >= -limit and max(values) <= limit):
            return _scatter(rows, values, index if index is not None else list(range(n)), copy=scale is None)
        rows, values = sparse.rows, sparse.values
    out = [None] * n
    found = False
    for i, v in zip(rows, values):
        if (v.__class__ is int or v.__class__ is float) and math.isfinite(v):
            if scale is not None:
                v = v * scale
            if limit is not None and not -limit <= v <= limit:
                continue
            out[i] = v
            found = True
    return out if found else None


def _scatter(rows: list[int], values: list[Any], index: list[int], *, copy: bool) -> list[Any]:
    """``n`` rows with ``values[k]`` at ``rows[k]`` (a later duplicate row wins), else None.

    Record columns come in a few unbroken stretches of rows (a sensor drops out, then
    returns), so each stretch is copied with one slice; a column without stretches
    falls back to setting its values one by one.
    """
    n = len(index)
    if rows == index:  # every row, in order: the values as they are
        return list(values) if copy else values
    runs = _runs(rows, index)
    out: list[Any] = [None] * n
    if runs is None:
        deque(map(out.__setitem__, rows, values), maxlen=0)
    else:
        for a, b in runs:
            first = rows[a]
            out[first : first + b - a] = values[a:b]
    return out


def _runs(rows: list[int], index: list[int], limit: int = 64) -> list[tuple[int, int]] | None:
    """The stretches ``(a, b)`` where ``rows[a:b]`` counts up by one, in order, found
    by halving; None when there are more than ``limit`` or a row is outside 0..n-1
    (``index`` is ``list(range(n))``: its slices are the stretches to compare with)."""
    n = len(index)
    runs: list[tuple[int, int]] = []
    todo = [(0, len(rows))]
    while todo:
        a, b = todo.pop()
        first = rows[a]
        if rows[b - 1] - first == b - 1 - a:
            if first.__class__ is not int or first < 0 or first + b - a > n:
                return None
            if b - a > 2 and rows[a:b] != index[first : first + b - a]:
                return None  # rows repeat or go back: only the one-by-one fill is right
            runs.append((a, b))
            if len(runs) > limit:
                return None
        else:  # two or more rows that do not count up: halve (right half done last)
            mid = (a + b) // 2
            todo.append((mid, b))
            todo.append((a, mid))
    return runs


def unsigned_le(value: Any) -> int | None:
    """Raw bytes of an undescribed developer field, read as a little-endian unsigned int.

    Without its description the type is unknown; integer types are by far the most
    common and FIT data is little-endian unless a definition says otherwise, so this
    is the most useful reading. All-0xFF is FIT's "invalid" for every integer type.
    """
    if value.__class__ is int:
        return value
    if isinstance(value, tuple) and len(value) in (1, 2, 4, 8) and all(v.__class__ is int and 0 <= v <= 255 for v in value):
        if all(v == 0xFF for v in value):
            return None
        return int.from_bytes(bytes(value), "little")
    return None


def overlay(base: list[Any] | None, top: list[Any] | None) -> list[Any] | None:
    """``top`` where it has a value, else ``base`` (enhanced_* over the plain field)."""
    if top is None:
        return base
    if base is None:
        return top
    if None not in top:  # the usual case; ``top`` is a fresh list from dense()
        return top
    return [t if t is not None else b for b, t in zip(base, top)]


def timestamps(scan: Scan, clock: Clock, index: list[int] | None = None) -> list[int | None]:
    """One calendar timestamp (raw FIT seconds) per record, carried forward over gaps.

    ``index`` is ``list(range(scan.records))`` when the caller has one."""
    n = scan.records
    out: list[int | None] = [None] * n
    ts = scan.columns.get("timestamp")
    if ts is not None and ts.values:
        values = ts.values
        if set(map(type, values)) == {int} and min(values) >= RELATIVE_LIMIT:
            # already calendar time; a fresh list, since gaps are filled in place below
            out = _scatter(ts.rows, values, index if index is not None else list(range(n)), copy=True)
        else:
            to_abs = clock.abs
            for i, v in zip(ts.rows, values):
                out[i] = to_abs(v)
    if None not in out:
        return out
    last = None
    for i in range(n):
        if out[i] is None:
            out[i] = last
        else:
            last = out[i]
    first = next((t for t in out if t is not None), None)
    for i in range(n):  # records before the first timestamp share it
        if out[i] is not None:
            break
        out[i] = first
    return out


@dataclass
class Samples:
    """All records of the file as dense columns, before they are split by session."""

    ts: list[int | None]
    columns: dict[str, list[Any]]
    units: dict[str, str] = field(default_factory=dict)


def build_samples(scan: Scan, clock: Clock) -> Samples:
    n = scan.records
    cols = scan.columns
    index = list(range(n))

    def column(name: str, scale: float | None = None, limit: float | None = None) -> list[Any] | None:
        return dense(cols.get(name), n, scale, limit, index)

    columns: dict[str, list[Any] | None] = {
        "lat_deg": column("position_lat", SEMICIRCLE_DEG, 90.0),
        "lon_deg": column("position_long", SEMICIRCLE_DEG, 180.0),
        "altitude_m": overlay(column("altitude"), column("enhanced_altitude")),
        "distance_m": column("distance"),
        "hr_bpm": column("heart_rate"),
        "cadence_rpm": column("cadence"),
        "power_w": column("power"),
        "speed_mps": overlay(column("speed"), column("enhanced_speed")),
        "temperature_c": column("temperature"),
    }
    # A position needs both halves.
    lat, lon = columns["lat_deg"], columns["lon_deg"]
    if lat is None or lon is None:
        columns["lat_deg"] = columns["lon_deg"] = None
    elif _gaps(lat) != _gaps(lon):  # the usual file has its gaps in both already
        for i in range(n):
            if lat[i] is None or lon[i] is None:
                lat[i] = lon[i] = None
    cadence = columns["cadence_rpm"]
    fraction = column("fractional_cadence")
    if cadence is not None and fraction is not None:
        columns["cadence_rpm"] = [c + f if c is not None and f is not None else c for c, f in zip(cadence, fraction)]
    units: dict[str, str] = {}
    taken = set(columns)
    for (dev_index, field_num, _), dev in scan.dev_columns.items():
        data = dev.data if dev.described else Sparse(dev.data.rows, [unsigned_le(v) for v in dev.data.values])
        values = dense(data, n, index=index)
        if values is None:
            continue
        name = dev.name
        if name in taken:  # two apps may both call their field "Power"
            name = f"{name}_{dev_index}_{field_num}"
        taken.add(name)
        columns[name] = values
        if dev.units:
            units[name] = dev.units
    kept = {name: col for name, col in columns.items() if col is not None}
    return Samples(ts=timestamps(scan, clock, index), columns=kept, units=units)


def _gaps(column: list[Any]) -> list[bool]:
    return list(map(is_, column, repeat(None)))


def _pick(column: list[Any], rows: list[int]) -> list[Any]:
    return list(map(column.__getitem__, rows))


def stream(samples: Samples, rows: list[int] | None, start: int) -> SampleStream:
    """The samples of one activity (``rows`` None = all), offsets from ``start``."""
    ts = samples.ts if rows is None else _pick(samples.ts, rows)
    if None in ts:  # only when no record in the file has a time
        keep = [i for i, t in enumerate(ts) if t is not None]
        rows = keep if rows is None else [rows[i] for i in keep]
        ts = [ts[i] for i in keep]
    offsets = list(map(float, map(sub, ts, repeat(start))))  # float(t - start) per sample
    columns: dict[str, list[Any]] = {}
    for name, col in samples.columns.items():
        part = col if rows is None else _pick(col, rows)
        if any(v is not None for v in part):
            columns[name] = part
    units = {k: v for k, v in samples.units.items() if k in columns}
    return SampleStream(offsets_s=offsets, columns=columns, units=units)


# ---------------------------------------------------------------------------- summaries


def message_start(message: dict[str, Any], clock: Clock) -> int | None:
    """Start of a lap/session/length in calendar FIT seconds."""
    start = clock.abs(message.get("start_time"))
    if start is not None:
        return start
    end = clock.abs(message.get("timestamp"))
    if end is None:
        return None
    elapsed = num(message, "total_elapsed_time")
    return end - int(elapsed) if elapsed is not None and 0 <= elapsed < end else end


def cadence(message: dict[str, Any], whole: str, fraction: str) -> float | None:
    value = num(message, whole)
    extra = num(message, fraction)
    return value + extra if value is not None and extra is not None else value


def summary_values(message: dict[str, Any]) -> dict[str, Any]:
    """The summary fields shared by session and lap, in model names."""
    calories = num(message, "total_calories")
    return {
        "elapsed_s": num(message, "total_elapsed_time"),
        "moving_s": num(message, "total_timer_time"),
        "distance_m": num(message, "total_distance"),
        "ascent_m": num(message, "total_ascent"),
        "descent_m": num(message, "total_descent"),
        "energy_j": calories * KCAL_J if calories is not None else None,
        "avg_hr_bpm": num(message, "avg_heart_rate"),
        "max_hr_bpm": num(message, "max_heart_rate"),
        "avg_power_w": num(message, "avg_power"),
        "max_power_w": num(message, "max_power"),
        "avg_cadence_rpm": cadence(message, "avg_cadence", "avg_fractional_cadence"),
        "max_cadence_rpm": cadence(message, "max_cadence", "max_fractional_cadence"),
        "avg_speed_mps": num(message, "enhanced_avg_speed", "avg_speed"),
        "max_speed_mps": num(message, "enhanced_max_speed", "max_speed"),
    }


def build_lap(message: dict[str, Any], clock: Clock) -> Lap | None:
    start = message_start(message, clock)
    if start is None:
        return None
    return Lap(
        start=clock.dt(start),
        trigger=enum_name(message.get("lap_trigger"), "lap_trigger"),
        **summary_values(message),
    )


def build_length(message: dict[str, Any], clock: Clock) -> SwimLength | None:
    start = message_start(message, clock)
    if start is None:
        return None
    kind = enum_name(message.get("length_type"), "length_type")
    strokes = num(message, "total_strokes")
    return SwimLength(
        start=clock.dt(start),
        elapsed_s=num(message, "total_elapsed_time"),
        length_type=kind if kind in ("idle", "active") else "active",
        strokes=int(strokes) if strokes is not None else None,
        stroke=enum_name(message.get("swim_stroke"), "swim_stroke"),
    )


def build_set(message: dict[str, Any], clock: Clock) -> StrengthSet:
    start = clock.abs(message.get("start_time"))
    if start is None:
        start = clock.abs(message.get("timestamp"))
    kind = enum_name(message.get("set_type"), "set_type")
    reps = num(message, "repetitions")
    category = enum_name(message.get("category"), "exercise_category")
    return StrengthSet(
        start=clock.dt(start) if start is not None else None,
        duration_s=num(message, "duration"),
        set_type="rest" if kind == "rest" else "active",
        category=None if category == "unknown" else category,
        reps=int(reps) if reps is not None else None,
        weight_kg=num(message, "weight"),  # the profile's scale (1/16 kg) is applied by the reader
    )


# ---------------------------------------------------------------------------- device


def device(scan: Scan) -> Device | None:
    fid = scan.file_id or {}
    raw = scan.file_id_raw
    creator = next(
        (d for d in scan.kept("device_info") if d.get("device_index") in ("creator", 0)),
        None,
    )
    manufacturer = fid.get("manufacturer")
    if manufacturer is None and creator:
        manufacturer = creator.get("manufacturer")
    product = None
    for name in ("garmin_product", "favero_product", "product"):
        value = fid.get(name)
        if isinstance(value, str):
            product = value
            break
    if product is None:
        name = fid.get("product_name")
        if isinstance(name, str) and name.strip("\x00 "):
            product = name.strip("\x00 ")
        elif raw.get("product") is not None or raw.get("garmin_product") is not None:
            product = str(raw.get("garmin_product", raw.get("product")))
    serial = fid.get("serial_number")
    serial = serial if serial.__class__ is int else None
    software = None
    version = creator.get("software_version") if creator else None
    if is_num(version):
        software = f"{version:.2f}"
    else:
        for fc in scan.kept("file_creator"):
            version = fc.get("software_version")
            if version.__class__ is int:
                software = f"{version / 100:.2f}"
                break
    if manufacturer is None and product is None and serial is None and software is None:
        return None
    return Device(
        manufacturer=manufacturer if isinstance(manufacturer, str) else (str(manufacturer) if manufacturer is not None else None),
        product=product,
        serial_number=serial,
        software_version=software,
    )


def file_identity(scan: Scan) -> str | None:
    """``fit:<manufacturer>:<product>:<serial>:<time_created>`` from file_id, numeric ids."""
    raw = scan.file_id_raw
    serial = raw.get("serial_number")
    created = raw.get("time_created")
    serial = serial if serial.__class__ is int else None
    created = created if created.__class__ is int else None
    if serial is None and created is None:
        return None
    manufacturer = raw.get("manufacturer")
    product = raw.get("garmin_product", raw.get("favero_product", raw.get("product")))
    parts = [manufacturer, product, serial, created]
    return "fit:" + ":".join("" if p is None or p.__class__ is not int else str(p) for p in parts)


# ---------------------------------------------------------------------------- activities


@dataclass
class Part:
    """What belongs to one session while the file is being split."""

    summary: dict[str, Any]
    start: int
    rows: list[int] | None = None  # record indexes; None = every record (one session)
    laps: list[Lap] = field(default_factory=list)
    lengths: list[SwimLength] = field(default_factory=list)
    sets: list[StrengthSet] = field(default_factory=list)
    rr: list[float] = field(default_factory=list)


def _owner(starts: list[int], t: int | None) -> int:
    if t is None:
        return 0
    return max(0, bisect_right(starts, t) - 1)


def _assign_rows(parts: list[Part], starts: list[int], ts: list[int | None]) -> None:
    """Give every record to its session (as :func:`_owner` does, one record at a time)."""
    if None in ts:
        for part in parts:
            part.rows = []
        for i, t in enumerate(ts):
            parts[_owner(starts, t)].rows.append(i)  # type: ignore[union-attr]
        return
    # bisect_right(starts, t) for every record at C speed; 0 and 1 both mean the
    # first session (records before the first start belong to it).
    after = list(map(bisect_right, repeat(starts, len(ts)), ts))
    n = len(ts)
    parts[0].rows = list(compress(range(n), map(le, after, repeat(1))))
    for index in range(1, len(parts)):
        parts[index].rows = list(compress(range(n), map(eq, after, repeat(index + 1))))


def split(scan: Scan, clock: Clock, samples: Samples, sessions: list[dict[str, Any]], warnings: list[str]) -> list[Part]:
    """Sort sessions by start and hand every time-stamped item to its session."""
    parts: list[Part] = []
    ts = samples.ts
    first_ts = next((t for t in ts if t is not None), None)
    for message in sessions:
        start = message_start(message, clock)
        if start is None:
            start = first_ts if len(sessions) == 1 else None
        if start is None:
            warnings.append("a session without any start time was skipped")
            continue
        parts.append(Part(summary=message, start=start))
    parts.sort(key=lambda p: p.start)
    if not parts:
        return parts
    starts = [p.start for p in parts]
    if len(parts) > 1:
        _assign_rows(parts, starts, ts)
    for message in scan.kept("lap"):
        lap = build_lap(message, clock)
        if lap is not None:
            parts[_owner(starts, message_start(message, clock))].laps.append(lap)
    for message in scan.kept("length"):
        length = build_length(message, clock)
        if length is not None:
            parts[_owner(starts, message_start(message, clock))].lengths.append(length)
    for message in scan.kept("set"):
        item = build_set(message, clock)
        t = clock.abs(message.get("start_time"))
        if t is None:
            t = clock.abs(message.get("timestamp"))
        parts[_owner(starts, t)].sets.append(item)
    # The range test also refuses NaN and infinities (every comparison with NaN is
    # false), so no separate finiteness check is needed.
    if len(parts) == 1:  # one session owns every beat: no need to place each message
        parts[0].rr.extend(
            [
                float(v)
                for _, values in scan.hrv
                for v in values
                if (v.__class__ is float or v.__class__ is int) and 0 < v < 65.535
            ]
        )
    else:
        for before, values in scan.hrv:
            t = ts[before - 1] if before > 0 and ts else (ts[0] if ts else None)
            parts[_owner(starts, t)].rr.extend(
                [float(v) for v in values if (v.__class__ is float or v.__class__ is int) and 0 < v < 65.535]
            )
    for part in parts:
        part.laps.sort(key=lambda x: x.start)
        part.lengths.sort(key=lambda x: x.start)
    return parts


def utc_offset(scan: Scan, clock: Clock) -> int | None:
    if clock.anchored:  # anchored on local time: the offset is what we assumed away
        return None
    for act in scan.kept("activity"):
        ts, local = act.get("timestamp"), act.get("local_timestamp")
        if ts.__class__ is int and local.__class__ is int and ts >= RELATIVE_LIMIT:
            offset = local - ts
            if abs(offset) <= MAX_UTC_OFFSET_S:
                return offset
    return None


def sport_of(summary: dict[str, Any], scan: Scan) -> tuple[str, str | None]:
    sport = summary.get("sport")
    sub = summary.get("sub_sport")
    if sport is None:
        fallback = next(iter(scan.kept("sport")), None) or next(iter(scan.kept("lap")), None) or {}
        sport = fallback.get("sport")
        sub = sub if sub is not None else fallback.get("sub_sport")
    return enum_name(sport, "sport") or "generic", enum_name(sub, "sub_sport")


def build_activities(scan: Scan, origin: Provenance, warnings: list[str]) -> list[Activity]:
    """Every session of the file as an Activity (or one from the records if none)."""
    clock = make_clock(scan, scan.columns.get("timestamp"))
    if clock.anchored == "local_timestamp":
        warnings.append(
            "timestamps count from device power-on; anchored on the device's local clock "
            "taken as UTC, so the start may be off by the time-zone offset"
        )
    samples = build_samples(scan, clock)
    sessions = scan.kept("session")
    synthetic = not sessions
    if synthetic:
        # A head unit that crashed (or a file cut short) has samples but no summary.
        sessions = [{}]
        warnings.append(
            f"no session message (recording not finished or file cut short): "
            f"activity built from its {scan.records} records"
        )
    parts = split(scan, clock, samples, sessions, warnings)
    identity = file_identity(scan)
    multisport = len(parts) > 1
    group = None
    if multisport:
        group = identity or (f"sha256:{origin.sha256}" if origin.sha256 else None)
    dev = device(scan)
    offset = utc_offset(scan, clock)
    activities: list[Activity] = []
    for index, part in enumerate(parts):
        summary = part.summary
        sport, sub_sport = sport_of(summary, scan)
        values = summary_values(summary)
        source_id = identity
        if identity is not None and multisport:
            source_id = f"{identity}:{index}"
        activity = Activity(
            sport=sport,
            sub_sport=sub_sport,
            start=clock.dt(part.start),
            utc_offset_s=offset,
            device=dev,
            laps=tuple(part.laps),
            lengths=tuple(part.lengths),
            sets=tuple(part.sets),
            samples=stream(samples, part.rows, part.start),
            hrv_rr_s=tuple(part.rr),
            source_id=source_id,
            multisport_group=group,
            multisport_index=index if multisport else None,
            provenance=origin,
            **values,
        )
        activities.append(fill_summary(activity))
    return activities


# ---------------------------------------------------------------------------- measurements

WEIGHT_SCALE_KINDS: tuple[tuple[str, str, float], ...] = (
    ("weight", "weight_kg", 1.0),
    ("percent_fat", "body_fat_pct", 1.0),
    ("percent_hydration", "body_water_pct", 1.0),
    ("muscle_mass", "muscle_mass_kg", 1.0),
    ("bone_mass", "bone_mass_kg", 1.0),
    ("visceral_fat_rating", "visceral_fat_rating", 1.0),
    ("bmi", "bmi_kg_m2", 1.0),
    ("basal_met", "basal_metabolic_rate_j", KCAL_J),  # kcal per day
)


def build_measurements(scan: Scan, origin: Provenance) -> list[Measurement]:
    """Weight-scale readings. A reading without a calendar time is not a measurement."""
    clock = Clock()  # scales keep real time; a relative stamp means "unknown"
    out: list[Measurement] = []
    for message in scan.kept("weight_scale"):
        raw = message.get("timestamp")
        if raw.__class__ is not int or raw < RELATIVE_LIMIT:
            continue
        when = clock.dt(raw)
        for name, kind, factor in WEIGHT_SCALE_KINDS:
            value = num(message, name)
            # Scales write 0 for "not measured" as often as the invalid sentinel.
            if value is not None and value > 0:
                out.append(Measurement(kind=kind, time=when, value=value * factor, provenance=origin))
    return out


__all__ = ["UndatableError", "build_activities", "build_measurements", "device", "file_identity"]

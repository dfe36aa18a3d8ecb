"""An activity as plain JSON-ready data, and the JSON export built on it.

:func:`activity_to_dict` is the one place that decides how an activity looks to the
outside world as data: the CLI's ``--json`` output and the JSON export both use it,
so the two can never drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone

from hub.model import Activity, SampleStream


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; milliseconds only when the time has them.

    Whole seconds stay short because that is what nearly every sample time is;
    sub-second times keep millisecond precision, which GPX, TCX and CSV readers
    all accept.
    """
    value = value.astimezone(timezone.utc)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def finite(value: float | None) -> float | None:
    """``value``, or ``None`` for NaN and infinities (which JSON cannot carry)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _plain(value: object) -> object:
    """Dataclasses, tuples and datetimes turned into JSON types, recursively."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, float):
        return finite(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def stream_units(samples: SampleStream) -> dict[str, str]:
    """The unit of every column whose unit is known (standard or declared)."""
    units = {}
    for name in samples.columns:
        unit = samples.unit(name)
        if unit:
            units[name] = unit
    return units


# Summary fields copied as they are, in the order a reader expects them.
_SUMMARY = (
    "person",
    "sport",
    "sub_sport",
    "start",
    "utc_offset_s",
    "elapsed_s",
    "moving_s",
    "distance_m",
    "ascent_m",
    "descent_m",
    "energy_j",
    "avg_hr_bpm",
    "max_hr_bpm",
    "avg_power_w",
    "max_power_w",
    "avg_cadence_rpm",
    "max_cadence_rpm",
    "avg_speed_mps",
    "max_speed_mps",
    "name",
)


def activity_to_dict(
    activity: Activity, *, activity_id: int | None = None, with_samples: bool = True
) -> dict:
    """A JSON-ready dict of ``activity``.

    ``samples`` is always the sample count; ``stream`` (offsets, columns, units) is
    present only ``with_samples``, since listings want the summary without the
    thousands of values behind it. Non-finite numbers become ``None``.
    """
    out: dict = {"id": activity_id}
    for name in _SUMMARY:
        out[name] = _plain(getattr(activity, name))
    out["device"] = _plain(activity.device)
    out["laps"] = _plain(activity.laps)
    out["lengths"] = _plain(activity.lengths)
    out["sets"] = _plain(activity.sets)
    out["samples"] = len(activity.samples)
    if with_samples:
        s = activity.samples
        out["stream"] = {
            "offsets_s": _plain(s.offsets_s),
            "columns": _plain(s.columns),
            "units": stream_units(s),
        }
    out["hrv_rr_s"] = _plain(activity.hrv_rr_s)
    out["source_id"] = activity.source_id
    out["multisport_group"] = activity.multisport_group
    out["multisport_index"] = activity.multisport_index
    out["provenance"] = _plain(activity.provenance)
    out["warnings"] = list(activity.warnings)
    return out


def write_json(activity: Activity) -> bytes:
    # allow_nan=False: _plain already removed NaN; this makes any slip an error
    # instead of a file other tools refuse to parse.
    text = json.dumps(activity_to_dict(activity), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


__all__ = ["activity_to_dict", "finite", "iso_utc", "stream_units", "write_json"]


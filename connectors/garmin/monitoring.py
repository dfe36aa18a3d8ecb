"""Garmin all-day monitoring FIT files (``GARMIN/Monitor/*.fit``) -> measurements.

What a watch writes there (FIT file types monitoring_a / monitoring_b):

* ``monitoring_info``: the file's start in UTC and in local time; their difference
  is the local offset, which says where local midnight falls.
* ``monitoring`` with ``activity_type`` and ``cycles`` (``steps`` for walking and
  running): the steps of that activity type *since local midnight*, one counter per
  type, each reset to zero at local midnight. Steps per interval are therefore the
  difference to the previous value of the same type on the same local day, summed
  over the types; the first value of a type on a new local day is all new.
* ``monitoring`` with ``heart_rate`` (usually stamped only with ``timestamp_16``).
* ``stress_level`` (0-100; negative values mean "not measured": off wrist, moving).
* ``monitoring_hr_data``: resting heart rate (today's, and a 7-day average).

A file may start in the middle of a day (a watch writes several a day). The first
value of each type in such a file has no earlier value to subtract, so it starts no
interval (its steps belong to the previous file's intervals); the day's total is
still exact, as ``steps_day_cumulative`` (the counters' sum at the last record of
each local day), which is safe to read across files: take the latest per day.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from hub.model import Decoded, Measurement, Provenance

from ._fit import Message, file_type_of, read_messages

FORMAT = "garmin_monitoring"
FILE_TYPES = ("monitoring_a", "monitoring_b", 15, 32)
# activity_type values whose cycles are steps (FIT profile subfield "steps").
STEP_TYPES = {1: "running", 6: "walking", "running": "running", "walking": "walking"}


def is_monitoring(data: bytes) -> bool:
    return _is_fit(data) and file_type_of(data) in FILE_TYPES


def decode_monitoring(data: bytes, origin: Provenance) -> Decoded:
    content = read_messages(data, origin.name or "monitoring FIT")
    warnings = list(content.warnings)
    offset = _local_offset(content.messages)
    if offset is None:
        warnings.append("no monitoring_info with local time: daily step counters assumed to reset at 00:00 UTC")
    start = next((m.time for m in content.messages if m.time is not None), None)
    starts_at_midnight = offset is not None and start is not None and _is_local_midnight(start, offset)

    def m(kind: str, time: datetime, value: float) -> Measurement:
        return Measurement(kind=kind, time=time, value=float(value), provenance=origin)

    intervals, day_totals = _steps(content.messages, offset or 0, start, starts_at_midnight)
    found = [m("steps", t, v) for t, v in sorted(intervals.items()) if v > 0]
    found += [m("steps_day_cumulative", t, v) for t, v in sorted(day_totals.items())]
    found += [m("hr_bpm", t, v) for t, v in sorted(_heart_rate(content.messages).items())]
    found += [m("stress_score", t, v) for t, v in sorted(_stress(content.messages).items())]
    found += [m("resting_hr_bpm", t, v) for t, v in sorted(_resting(content.messages).items())]
    if not found:
        return Decoded(not_activity="monitoring FIT file holds no steps, heart rate, stress or resting heart rate", warnings=warnings)
    return Decoded(measurements=found, warnings=warnings)


def _is_fit(data: bytes) -> bool:
    return len(data) >= 12 and data[0] in (12, 14) and data[8:12] == b".FIT"


def _local_offset(messages: list[Message]) -> int | None:
    for msg in messages:
        if msg.name == "monitoring_info":
            utc, local = msg.raw.get("timestamp"), msg.raw.get("local_timestamp")
            if isinstance(utc, int) and isinstance(local, int):
                return local - utc
    return None


def _local_day(time: datetime, offset: int) -> date:
    return (time + timedelta(seconds=offset)).date()


def _is_local_midnight(time: datetime, offset: int) -> bool:
    local = time + timedelta(seconds=offset)
    return (local.hour, local.minute, local.second) == (0, 0, 0)


def _activity_type(msg: Message) -> str | None:
    # Either the activity_type field or the packed current_activity_type_intensity
    # byte (low 5 bits), which fitdecode expands into activity_type as a component.
    kind = msg.values.get("activity_type")
    if kind is None and isinstance(msg.raw.get("current_activity_type_intensity"), (tuple, list)):
        kind = msg.raw["current_activity_type_intensity"][0] & 0x1F
    if isinstance(kind, (tuple, list)):
        kind = kind[0] if kind else None
    return STEP_TYPES.get(kind)


def _steps(messages: list[Message], offset: int, start: datetime | None, starts_at_midnight: bool):
    """(steps per interval by end time, steps since local midnight at each local day's last record)."""
    start_day = _local_day(start, offset) if start else None
    last: dict[str, tuple[date, int]] = {}
    intervals: dict[datetime, int] = defaultdict(int)
    latest: dict[date, dict[str, tuple[datetime, int]]] = defaultdict(dict)
    for msg in messages:
        if msg.name != "monitoring" or msg.time is None:
            continue
        kind = _activity_type(msg)
        # The raw value: for walking/running the "steps" subfield is the raw count
        # (the generic "cycles" field would halve it).
        count = msg.raw.get("steps", msg.raw.get("cycles"))
        if kind is None or not isinstance(count, int):
            continue
        day = _local_day(msg.time, offset)
        prev = last.get(kind)
        if prev is None:
            # No earlier value in this file: all new only if the counter provably
            # started from zero inside this file (file begins at local midnight, or a
            # midnight passed since the file began).
            delta = count if (starts_at_midnight or (start_day is not None and day > start_day)) else 0
        elif day != prev[0] or count < prev[1]:
            delta = count  # reset at local midnight
        else:
            delta = count - prev[1]
        intervals[msg.time] += delta
        last[kind] = (day, count)
        latest[day][kind] = (msg.time, count)
    day_totals = {
        max(t for t, _ in per_type.values()): sum(c for _, c in per_type.values()) for per_type in latest.values()
    }
    return dict(intervals), day_totals


def _heart_rate(messages: list[Message]) -> dict[datetime, int]:
    found = {}
    for msg in messages:
        bpm = msg.values.get("heart_rate") if msg.name == "monitoring" else None
        if msg.time is not None and isinstance(bpm, (int, float)) and 20 <= bpm <= 250:
            found.setdefault(msg.time, bpm)
    return found


def _stress(messages: list[Message]) -> dict[datetime, int]:
    found = {}
    for msg in messages:
        if msg.name != "stress_level":
            continue
        when, value = msg.values.get("stress_level_time"), msg.values.get("stress_level_value")
        if isinstance(when, datetime) and isinstance(value, (int, float)) and 0 <= value <= 100:
            found.setdefault(when, value)
    return found


def _resting(messages: list[Message]) -> dict[datetime, int]:
    found = {}
    for msg in messages:
        if msg.name != "monitoring_hr_data" or msg.time is None:
            continue
        # Today's value when the watch gives it; the other is a 7-day average.
        bpm = msg.values.get("current_day_resting_heart_rate") or msg.values.get("resting_heart_rate")
        if isinstance(bpm, (int, float)) and 20 <= bpm <= 200:
            found[msg.time] = bpm
    return found


class MonitoringDecoder:
    """:class:`hub.plugins.FileDecoder` for monitoring FIT files."""

    format = FORMAT
    refines = "fit"  # a FIT file by its header; asked before the activity decoder

    def sniff(self, name: str, head: bytes) -> bool:
        return is_monitoring(head)

    def decode(self, data: bytes, origin: Provenance) -> Decoded:
        return decode_monitoring(data, origin)

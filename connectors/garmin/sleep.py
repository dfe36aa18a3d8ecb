"""Garmin sleep FIT files (``GARMIN/Sleep/*.fit``) -> sleep measurements.

Watches write one ``sleep_level`` message per stage change or per minute
(awake / light / deep / rem, or unmeasurable). Each level lasts until the next
message; the last one lasts the file's usual spacing (the median gap). Messages more
than two hours apart start a new sleep period (a nap, the next night). Per period
the decoder stores ``sleep_s`` (light + deep + REM) and the time in each stage,
stamped with the period's end.

The file type is 49, which the public FIT profile does not name; the decoder also
accepts any FIT file made only of sleep_level messages.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from hub.model import Decoded, Measurement, Provenance

from ._fit import file_type_of, read_messages

FORMAT = "garmin_sleep"
SLEEP_FILE_TYPES = (49, "sleep")
LEVELS = {0: "unmeasurable", 1: "awake", 2: "light", 3: "deep", 4: "rem"}
ASLEEP = ("light", "deep", "rem")
PERIOD_GAP = timedelta(hours=2)


def is_sleep(data: bytes) -> bool:
    return len(data) >= 12 and data[8:12] == b".FIT" and file_type_of(data) in SLEEP_FILE_TYPES


def decode_sleep(data: bytes, origin: Provenance) -> Decoded:
    content = read_messages(data, origin.name or "sleep FIT")
    levels: list[tuple[datetime, str]] = []
    for msg in content.messages:
        if msg.name == "sleep_level" and msg.time is not None:
            level = msg.values.get("sleep_level")
            level = LEVELS.get(level, level) if isinstance(level, int) else level
            if level in LEVELS.values():
                levels.append((msg.time, level))
    if not levels:
        return Decoded(not_activity="sleep FIT file holds no sleep_level messages", warnings=content.warnings)
    levels.sort()
    found: list[Measurement] = []
    for period in _periods(levels):
        end, totals = _totals(period)
        totals["sleep_s"] = sum(totals.get(f"sleep_{lv}_s", 0.0) for lv in ASLEEP)
        found += [
            Measurement(kind=kind, time=end, value=value, provenance=origin)
            for kind, value in sorted(totals.items())
        ]
    return Decoded(measurements=found, warnings=content.warnings)


def _periods(levels: list[tuple[datetime, str]]) -> list[list[tuple[datetime, str]]]:
    periods = [[levels[0]]]
    for prev, item in zip(levels, levels[1:]):
        if item[0] - prev[0] > PERIOD_GAP:
            periods.append([])
        periods[-1].append(item)
    return periods


def _totals(period: list[tuple[datetime, str]]) -> tuple[datetime, dict[str, float]]:
    gaps = [(b[0] - a[0]).total_seconds() for a, b in zip(period, period[1:])]
    last_s = statistics.median(gaps) if gaps else 60.0
    totals: dict[str, float] = {}
    for (when, level), gap in zip(period, [*gaps, last_s]):
        if level != "unmeasurable":
            totals[f"sleep_{level}_s"] = totals.get(f"sleep_{level}_s", 0.0) + gap
    return period[-1][0] + timedelta(seconds=last_s), totals


class SleepDecoder:
    """:class:`hub.plugins.FileDecoder` for sleep FIT files."""

    format = FORMAT
    refines = "fit"  # a FIT file by its header; asked before the activity decoder

    def sniff(self, name: str, head: bytes) -> bool:
        return is_sleep(head)

    def decode(self, data: bytes, origin: Provenance) -> Decoded:
        return decode_sleep(data, origin)

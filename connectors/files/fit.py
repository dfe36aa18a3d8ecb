"""FIT decoder: bytes in, :class:`hub.model.Decoded` out.

The work is split in two pure steps: :mod:`fit_scan` reads the frames once (and
never raises for bad input), :mod:`fit_build` turns what was read into activities
and measurements. This module decides what a file *is*:

* ``file_id.type`` other than activity (course, workout, settings, segment,
  activity_summary, ...) is a valid file that holds no recording: ``not_activity``
  with the reason, not an error. A weight file gives :class:`Measurement` values.
* A file that stops early (truncated, corrupt message, bad CRC) is salvaged when what
  came before the defect is a usable recording; the defect becomes a warning that
  names it and where it is. Otherwise the file is refused with one
  :class:`DecodeError` naming the file, the position and the reason.
* Any exception from the reading library, whatever its type, is mapped to
  :class:`DecodeError` here, at the boundary.

Two scanners give the same :class:`Scan`: :mod:`fit_fast` (compiled definitions,
many times faster) reads every file, damaged ones included, unless it meets what it
does not imitate: then it raises its :class:`FastUnsupported` and the file goes to
:mod:`fit_scan` (fitdecode), the reference. :data:`FALLBACKS` counts why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from fitdecode.exceptions import FitEOFError, FitHeaderError

from hub.errors import DecodeError
from hub.model import Decoded, Provenance

from .fit_build import UndatableError, build_activities, build_measurements
from .fit_fast import FastUnsupported, scan_fit_fast
from .fit_scan import FIT_HEADER_MAGIC, Scan, describe_error, scan_fit

# What each non-activity FIT file type holds, for the rejection message.
NOT_ACTIVITY_TYPES: dict[str, str] = {
    "device": "a device description",
    "settings": "device settings",
    "sport": "sport settings",
    "workout": "a workout (a planned training session)",
    "course": "a course (a planned route)",
    "schedules": "a training schedule",
    "totals": "lifetime totals",
    "goals": "training goals",
    "blood_pressure": "blood-pressure readings",
    "monitoring_a": "all-day monitoring data",
    "monitoring_b": "all-day monitoring data",
    "monitoring_daily": "daily monitoring totals",
    "activity_summary": "an activity summary without recorded samples",
    "segment": "a segment (a route section to race against)",
    "segment_list": "a list of segments",
    "exd_configuration": "a data-screen configuration",
}

# Files handed to fitdecode by the fast scanner, by reason (for tests and benchmarks;
# a count only, nothing reads it to decide anything).
FALLBACKS: Counter[str] = Counter()

# Fewer records than this, with no session to describe them, is not a recording.
MIN_RECORDS = 2


def decode_fit(data: bytes, origin: Provenance) -> Decoded:
    """Decode one FIT file (possibly several chained FIT segments)."""
    return decode_fit_with(data, origin, scan_fast_or_reference)


def decode_fit_with(data: bytes, origin: Provenance, scanner: Callable[[bytes], Scan]) -> Decoded:
    """:func:`decode_fit` with a chosen scanner (tests and benchmarks compare the two)."""
    try:
        return _decode(data, origin, scanner)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the boundary: nothing foreign escapes
        raise DecodeError(origin.name, f"cannot decode FIT data ({type(exc).__name__}: {exc})") from exc


def _decode(data: bytes, origin: Provenance, scanner: Callable[[bytes], Scan]) -> Decoded:
    name = origin.name
    if not data:
        raise DecodeError(name, "empty file", "byte 0")
    if len(data) < 12 or data[8:12] != FIT_HEADER_MAGIC or data[0] < 12:
        raise DecodeError(name, "not a FIT file: bad header", "byte 0")
    if len(data) < data[0]:
        raise DecodeError(name, "truncated FIT header", "byte 0")

    scan = scanner(data)
    warnings = _defects(scan)
    stopped = scan.error is not None and not _trailing_junk(scan)

    file_type = (scan.file_id or {}).get("type")
    if isinstance(file_type, str) and file_type in NOT_ACTIVITY_TYPES:
        return Decoded(not_activity=f"FIT file type '{file_type}' is {NOT_ACTIVITY_TYPES[file_type]}, not an activity")
    if file_type == "weight":
        measurements = build_measurements(scan, origin)
        if measurements:
            return Decoded(measurements=measurements, warnings=warnings)
        if stopped:
            _refuse(scan, name)
        return Decoded(not_activity="FIT weight file holds no dated weight reading")
    if file_type is not None and file_type != "activity":
        return Decoded(not_activity=f"FIT file type {file_type!r} is not an activity")

    has_recording = bool(scan.kept("session")) or scan.records >= MIN_RECORDS
    if not has_recording:
        if stopped:
            _refuse(scan, name)
        # An untyped file may still be a scale's export.
        measurements = build_measurements(scan, origin) if file_type is None else []
        if measurements:
            return Decoded(measurements=measurements, warnings=warnings)
        if scan.file_id is None:
            return Decoded(not_activity="FIT file holds no file_id, session or records")
        return Decoded(not_activity="FIT file holds no session and no recorded samples: not an activity")

    try:
        activities = build_activities(scan, origin, warnings)
    except UndatableError as exc:
        raise DecodeError(name, str(exc)) from exc
    if not activities:
        raise DecodeError(name, "no session with a usable start time")
    if warnings:
        activities = [replace(a, warnings=(*warnings, *a.warnings)) for a in activities]
    return Decoded(activities=activities, warnings=warnings)


def scan_fast_or_reference(data: bytes) -> Scan:
    """The fast scan, or fitdecode's when the fast scanner does not support the file."""
    try:
        return scan_fit_fast(data)
    except FastUnsupported as exc:
        FALLBACKS[exc.reason] += 1
        return scan_fit(data)


def _trailing_junk(scan: Scan) -> bool:
    """Garbage after a complete FIT segment (padding, a partial copy): harmless."""
    return isinstance(scan.error, FitHeaderError) and scan.complete_segments >= 1


def _where(scan: Scan) -> str | None:
    if scan.error_offset is not None:
        return f"byte {scan.error_offset}"
    return f"message {scan.data_messages}"


def _defects(scan: Scan) -> list[str]:
    """Warnings for what was wrong with a file that still gave data."""
    out: list[str] = []
    if scan.header_patched is not None:
        out.append(
            f"header declares {scan.header_patched} bytes of data but more follow: "
            f"read them as the file's data"
        )
    if scan.crc_mismatch:
        out.append("CRC mismatch: file may be corrupt")
    if scan.error is None:
        return out
    where = _where(scan)
    if _trailing_junk(scan):
        out.append(f"ignored unreadable bytes after the FIT data from {where}")
    elif isinstance(scan.error, FitEOFError):
        out.append(f"truncated at {where}: kept the {scan.records} records before it")
    else:
        out.append(f"{describe_error(scan.error)} at {where}: kept the {scan.records} records before it")
    return out


def _refuse(scan: Scan, name: str | None) -> None:
    raise DecodeError(name, describe_error(scan.error), _where(scan)) from scan.error


__all__ = ["decode_fit", "decode_fit_with", "scan_fast_or_reference", "NOT_ACTIVITY_TYPES", "FALLBACKS"]

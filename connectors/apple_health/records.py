"""HealthKit records -> fithub rows: types, units, dates, identity. Pure, no I/O.

A record is kept whatever its type (unknown types are stored generically with their
own unit); a type with a fithub meaning also gets a canonical ``kind`` and its value
in that kind's SI unit (``kind_value``), which is what daily totals and the
``measurements`` table use.

Identity: a record is the same record when its type, source name, start, end and
value agree. Deliberately ignored: ``creationDate`` (re-written when the phone
re-syncs), ``sourceVersion`` and ``device`` (the device string embeds an object
address that changes on every export), metadata (order and keys vary by iOS version).
"""

from __future__ import annotations

import calendar
import hashlib
import struct
from datetime import datetime, timedelta, timezone

# HealthKit type -> (fithub kind, {unit: factor to the kind's unit}).
# A unit missing from the table leaves ``kind_value`` empty (counted as a warning).
_KCAL_J = 4184.0
KINDS: dict[str, tuple[str, dict[str, float]]] = {
    "HKQuantityTypeIdentifierBodyMass": ("weight_kg", {"kg": 1.0, "lb": 0.45359237, "g": 0.001, "st": 6.35029318}),
    "HKQuantityTypeIdentifierBodyFatPercentage": ("body_fat_pct", {"%": 100.0}),  # stored as a fraction
    "HKQuantityTypeIdentifierLeanBodyMass": ("lean_mass_kg", {"kg": 1.0, "lb": 0.45359237, "g": 0.001}),
    "HKQuantityTypeIdentifierBodyMassIndex": ("bmi_kg_m2", {"count": 1.0}),
    "HKQuantityTypeIdentifierHeartRate": ("hr_bpm", {"count/min": 1.0}),
    "HKQuantityTypeIdentifierRestingHeartRate": ("resting_hr_bpm", {"count/min": 1.0}),
    "HKQuantityTypeIdentifierHeartRateVariabilitySDNN": ("hrv_sdnn_ms", {"ms": 1.0}),
    "HKQuantityTypeIdentifierVO2Max": ("vo2max_ml_kg_min", {"mL/min·kg": 1.0, "ml/(kg*min)": 1.0}),
    "HKQuantityTypeIdentifierStepCount": ("steps", {"count": 1.0}),
    "HKQuantityTypeIdentifierDistanceWalkingRunning": ("distance_walking_running_m", {"km": 1000.0, "m": 1.0, "mi": 1609.344, "ft": 0.3048, "yd": 0.9144}),
    "HKQuantityTypeIdentifierDistanceCycling": ("distance_cycling_m", {"km": 1000.0, "m": 1.0, "mi": 1609.344}),
    "HKQuantityTypeIdentifierActiveEnergyBurned": ("active_energy_j", {"kcal": _KCAL_J, "Cal": _KCAL_J, "kJ": 1000.0, "J": 1.0}),
    "HKQuantityTypeIdentifierBasalEnergyBurned": ("basal_energy_j", {"kcal": _KCAL_J, "Cal": _KCAL_J, "kJ": 1000.0, "J": 1.0}),
    "HKQuantityTypeIdentifierFlightsClimbed": ("flights_climbed", {"count": 1.0}),
    "HKQuantityTypeIdentifierOxygenSaturation": ("spo2_pct", {"%": 100.0}),  # a fraction, like body fat
    "HKQuantityTypeIdentifierRespiratoryRate": ("respiratory_rate_bpm", {"count/min": 1.0}),
}
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
# Sleep stages that count as sleep; InBed and Awake are kept but are not sleep.
ASLEEP = {"HKCategoryValueSleepAnalysisAsleep", "HKCategoryValueSleepAnalysisAsleepUnspecified",
          "HKCategoryValueSleepAnalysisAsleepCore", "HKCategoryValueSleepAnalysisAsleepDeep",
          "HKCategoryValueSleepAnalysisAsleepREM"}

# Kinds whose values add up over time, so overlapping sources must be deduplicated.
ADDITIVE_KINDS = ("steps", "distance_walking_running_m", "distance_cycling_m", "active_energy_j",
                  "basal_energy_j", "flights_climbed")
# Point kinds that also go to the ``measurements`` table (low volume, one value at a time).
POINT_KINDS = ("weight_kg", "body_fat_pct", "lean_mass_kg", "bmi_kg_m2", "resting_hr_bpm", "hrv_sdnn_ms",
               "vo2max_ml_kg_min", "spo2_pct", "respiratory_rate_bpm")
# Names accepted by `fithub measurements daily --type`.
DAILY_TYPES = {"steps": "steps", "distance": "distance_walking_running_m", "cycling_distance": "distance_cycling_m",
               "active_energy": "active_energy_j", "basal_energy": "basal_energy_j", "flights": "flights_climbed",
               **{k: k for k in ADDITIVE_KINDS}}


def normalise_device(device: str | None) -> str | None:
    """The device string without the object address that changes on every export."""
    if not device:
        return None
    at = device.find("HKDevice: 0x")
    if at == -1:
        return device
    end = at + 12
    while end < len(device) and device[end] in "0123456789abcdefABCDEF":
        end += 1
    return device[:at] + "HKDevice" + device[end:]


class BadDate(ValueError):
    pass


class DateParser:
    """``2024-10-25 07:04:44 -0500`` -> (UTC ``YYYY-MM-DD HH:MM:SS``, offset seconds).

    The hot path of an import: exports hold millions of dates, clustered in time, so
    the UTC hour (or minute, for offsets like +0530) is cached per local hour and
    offset; the cache is dropped when it grows, which bounds memory.
    """

    def __init__(self) -> None:
        self._prefix: dict[str, str] = {}
        self._offsets: dict[str, int] = {}

    def parse(self, text: str) -> tuple[str, int]:
        if len(text) != 25 or text[10] != " " or text[19] != " ":
            return self._slow(text)
        zone = text[20:]
        offset = self._offsets.get(zone)
        if offset is None:
            offset = self._offset(zone, text)
        if zone[3:] == "00":
            key = text[:13] + zone
            cut = 13
        else:
            key = text[:16] + zone
            cut = 16
        prefix = self._prefix.get(key)
        if prefix is None:
            if len(self._prefix) > 8192:
                self._prefix.clear()
            try:
                local = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                                 int(text[14:16]) if cut == 16 else 0)
            except ValueError as exc:
                raise BadDate(f"unreadable date {text!r}") from exc
            prefix = (local - timedelta(seconds=offset)).strftime("%Y-%m-%d %H:%M" if cut == 16 else "%Y-%m-%d %H")
            self._prefix[key] = prefix
        rest = text[cut:19]
        if not (rest[1:3].isdigit() and (cut == 16 or rest[4:6].isdigit())):
            raise BadDate(f"unreadable date {text!r}")
        return prefix + rest, offset

    def _offset(self, zone: str, text: str) -> int:
        if len(zone) != 5 or zone[0] not in "+-" or not zone[1:].isdigit():
            raise BadDate(f"unreadable UTC offset in date {text!r}")
        minutes = int(zone[1:3]) * 60 + int(zone[3:5])
        if minutes > 18 * 60:
            raise BadDate(f"UTC offset out of range in date {text!r}")
        offset = (minutes if zone[0] == "+" else -minutes) * 60
        self._offsets[zone] = offset
        return offset

    @staticmethod
    def _slow(text: str) -> tuple[str, int]:
        """Anything not in the usual shape: ISO 8601 variants, 'Z', missing seconds."""
        try:
            value = datetime.fromisoformat(text.strip().replace(" +", "+").replace(" -", "-"))
        except (ValueError, AttributeError) as exc:
            raise BadDate(f"unreadable date {text!r}") from exc
        if value.utcoffset() is None:
            raise BadDate(f"date {text!r} has no UTC offset")
        offset = int(value.utcoffset().total_seconds())
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"), offset


def utc_datetime(text: str) -> datetime:
    """A parsed ``YYYY-MM-DD HH:MM:SS`` UTC string back as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


def parse_date(text: str) -> tuple[datetime, int]:
    """One Apple date as (aware UTC datetime, offset seconds); for the cold paths."""
    utc, offset = DateParser().parse(text)
    return utc_datetime(utc), offset


def utc_seconds(utc: str) -> int:
    """A parsed ``YYYY-MM-DD HH:MM:SS`` UTC string as seconds since 1970; BadDate for a
    minute or second out of range (which :class:`DateParser` lets through)."""
    try:
        moment = datetime(int(utc[0:4]), int(utc[5:7]), int(utc[8:10]), int(utc[11:13]), int(utc[14:16]),
                          int(utc[17:19]), tzinfo=timezone.utc)
    except ValueError as exc:
        raise BadDate(f"unreadable date {utc!r}") from exc
    return calendar.timegm(moment.utctimetuple())


def identity_hour(start_s: int) -> bytes:
    """The identity's first 4 bytes for a start in epoch seconds: the UTC hour as hours
    since 1970 (the same as :func:`hub.storage.health.key_hour`)."""
    return (start_s // 3600 & 0xFFFFFFFF).to_bytes(4, "big")


def identity(rtype: str, source: str, start_s: int, end_s: int, value: str) -> bytes:
    """16 bytes naming a record (see the module docstring for what is left out); the
    times are UTC epoch seconds, so the same instant written with another offset by a
    later export is the same record.

    The first 4 bytes are the UTC hour of the start (:func:`identity_hour`), the other
    12 a hash. The identity is the records' primary key, so records arriving roughly
    in time order land near each other instead of at random places in a tree of
    millions of entries (the page cache stays effective), and a time range is a key
    range. 96 bits of hash make a collision within one hour practically impossible.
    ``AppleHealthImporter`` computes the same bytes inline on its hot path.
    """
    data = identity_head(rtype, source) + IDENTITY_TIMES.pack(start_s, end_s) + value.encode()
    return identity_hour(start_s) + hashlib.blake2b(data, digest_size=12).digest()


# What the identity hashes: type and source (which cannot contain the separator: XML
# forbids the control character), both times as fixed-width integers, then the value.
IDENTITY_TIMES = struct.Struct(">qq")


def identity_head(rtype: str, source: str) -> bytes:
    return f"{rtype}\x1f{source}\x1f".encode()


_SPEC_CACHE: dict[tuple[str, str | None], tuple[str | None, float | None]] = {}


def _spec(rtype: str, unit: str | None) -> tuple[str | None, float | None]:
    """(kind, factor to the kind's unit) for a type and unit; cached, types are few."""
    found = _SPEC_CACHE.get((rtype, unit))
    if found is None:
        spec = KINDS.get(rtype)
        found = (None, None) if spec is None else (spec[0], spec[1].get(unit or ""))
        if len(_SPEC_CACHE) < 10000:
            _SPEC_CACHE[(rtype, unit)] = found
    return found


def map_value(rtype: str, unit: str | None, raw: str | None, seconds: float = 0.0
              ) -> tuple[str | None, float | None, str | None, float | None]:
    """(kind, numeric value, text value, value in the kind's unit) of one record.

    A value that is not a number (a category such as a sleep stage) is kept as text.
    A known type in an unknown unit gets its kind but no kind value.
    """
    text: str | None = None
    try:
        value: float | None = float(raw) if raw is not None else None
        if value is not None and value != value:  # NaN
            value, text = None, raw
    except ValueError:
        value, text = None, raw
    if rtype == SLEEP:
        asleep = text in ASLEEP
        return ("sleep_s" if asleep else None), value, text, (seconds if asleep else None)
    kind, factor = _spec(rtype, unit)
    if kind is None or value is None or factor is None:
        return kind, value, text, None
    if factor == 100.0 and value > 1.0 and unit == "%":
        factor = 1.0  # already a percentage (some third-party apps write 18, not 0.18)
    return kind, value, text, value * factor


__all__ = ["ADDITIVE_KINDS", "DAILY_TYPES", "KINDS", "POINT_KINDS", "BadDate", "DateParser",
           "IDENTITY_TIMES", "identity", "identity_head", "identity_hour", "map_value", "normalise_device", "parse_date", "utc_datetime", "utc_seconds"]

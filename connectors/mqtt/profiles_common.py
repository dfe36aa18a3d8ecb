"""What every payload profile needs: strict JSON, numbers, times, device ids, keys.

Everything here raises :class:`~connectors.mqtt.readings.PayloadError` naming the
topic and what was wrong, never anything else: a gateway that publishes garbage must
cost one log line, not the MQTT loop.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from connectors.mqtt.readings import PayloadError

UTC = timezone.utc

# JSON payloads larger than this are not sensor messages; refuse before parsing so a
# stray multi-megabyte publish cannot stall the loop. (Whole activity files go
# through the fithub "activity" topic, which does not parse JSON.)
MAX_JSON_BYTES = 1 << 20

# Plausible ranges, in SI units, for what a person or a sensor can produce. A value
# outside them is a decoding or unit error upstream (a 900 kg "weight" is a scale
# reporting in the wrong unit or a corrupted advertisement), so the whole message is
# refused rather than stored.
RANGES: dict[str, tuple[float, float]] = {
    # sample channels (hub.model.CHANNELS)
    "hr_bpm": (20.0, 250.0),
    "power_w": (0.0, 3000.0),
    "cadence_rpm": (0.0, 300.0),
    "speed_mps": (0.0, 60.0),
    "lat_deg": (-90.0, 90.0),
    "lon_deg": (-180.0, 180.0),
    "altitude_m": (-500.0, 9000.0),
    "distance_m": (0.0, 5_000_000.0),
    "temperature_c": (-60.0, 70.0),
    # measurement kinds (hub.model.MEASUREMENT_KINDS) a profile can produce
    "weight_kg": (1.0, 350.0),
    "body_fat_pct": (0.0, 100.0),
    "body_water_pct": (0.0, 100.0),
    "muscle_mass_kg": (0.0, 250.0),
    "bone_mass_kg": (0.0, 30.0),
    "lean_mass_kg": (0.0, 300.0),
    "visceral_fat_rating": (0.0, 60.0),
    "bmi_kg_m2": (5.0, 100.0),
    "basal_metabolic_rate_j": (0.0, 50e6),
    "resting_hr_bpm": (20.0, 250.0),
    "hrv_rmssd_ms": (0.0, 1000.0),
    "hrv_sdnn_ms": (0.0, 1000.0),
    "steps": (0.0, 200_000.0),
    "steps_day_cumulative": (0.0, 200_000.0),
    "spo2_pct": (0.0, 100.0),
    "respiratory_rate_bpm": (0.0, 100.0),
    "sleep_s": (0.0, 86_400.0),
    "sleep_light_s": (0.0, 86_400.0),
    "sleep_deep_s": (0.0, 86_400.0),
    "sleep_rem_s": (0.0, 86_400.0),
    "sleep_awake_s": (0.0, 86_400.0),
    "stress_score": (0.0, 100.0),
    "vo2max_ml_kg_min": (0.0, 100.0),
    "distance_walking_running_m": (0.0, 300_000.0),
    "distance_cycling_m": (0.0, 1_000_000.0),
    "active_energy_j": (0.0, 100e6),
    "basal_energy_j": (0.0, 100e6),
    "flights_climbed": (0.0, 2000.0),
    # extras carried next to a measurement
    "impedance_ohm": (1.0, 3000.0),
}

# Mass units scales report in, to kg. "jin" (市斤) is exactly 0.5 kg; Xiaomi scales
# sold in China weigh in it.
MASS_TO_KG: dict[str, float] = {"kg": 1.0, "lbs": 0.45359237, "lb": 0.45359237, "jin": 0.5, "g": 0.001}

# Devices with a flat clock battery send 1970 (or 2000); a time this early is not
# when a measurement happened.
EARLIEST = datetime(2000, 1, 2, tzinfo=UTC)
# Clocks run ahead a little; a day ahead of our own receive time is a wrong clock.
MAX_AHEAD = timedelta(days=1)
# Epoch numbers above this are milliseconds (1e11 s would be the year 5138).
_EPOCH_MS_ABOVE = 1e11

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
# Device ids end up in keys, topics and log lines: printable, no MQTT wildcards.
_DEVICE_ID = re.compile(r"^[^\x00-\x1f\x7f+#]{1,128}$")


class IgnoredPayload(PayloadError):
    """A well-formed message that holds nothing fithub stores: another kind of device
    on a gateway's topic, a status message, a retained state of unknown age. The
    source counts these apart from errors and logs them quietly."""


@dataclass(frozen=True)
class ProfileOptions:
    """Per-subscription settings a profile needs beyond the message itself.

    ``zone``: the time zone of naive times in payloads; None refuses naive times
    (a time without an offset is ambiguous by hours). ``esphome_sensors``: ESPHome
    sensor name -> target (see :mod:`connectors.mqtt.profiles_esphome`).
    """

    zone: tzinfo | None = None
    esphome_sensors: dict[str, str] = field(default_factory=dict)


def load_json(topic: str, payload: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity literals, no duplicate keys."""
    if len(payload) > MAX_JSON_BYTES:
        raise PayloadError(topic, f"payload of {len(payload)} bytes is larger than {MAX_JSON_BYTES} for a JSON message")
    text = utf8(topic, payload)
    if not text or text.isspace():
        raise PayloadError(topic, "empty payload where JSON was expected")
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(topic, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except _BadJson as exc:
        raise PayloadError(topic, f"malformed JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # over-long integers, absurd nesting
        raise PayloadError(topic, f"malformed JSON: {type(exc).__name__}: {str(exc)[:120]}") from exc


def load_object(topic: str, payload: bytes) -> dict[str, Any]:
    value = load_json(topic, payload)
    if not isinstance(value, dict):
        raise PayloadError(topic, f"expected a JSON object, got {json_type(value)}")
    return value


class _BadJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _BadJson(f"{name} is not a number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Called for every JSON object of every message: build the dict in C and look
    # for the culprit only when it came out shorter than the list of pairs.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                # Two values for one field: which one the sender meant is a guess.
                raise _BadJson(f"duplicate key {key!r}")
            seen.add(key)
    return result


# One decoder for every message: json.loads with options builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_no_duplicates)


def utf8(topic: str, payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(topic, f"payload is not UTF-8 (byte {exc.start}: {payload[exc.start:exc.start + 1]!r})") from exc


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def number(topic: str, field_name: str, value: Any) -> float:
    """A finite JSON number as float (booleans are not numbers, whatever Python thinks)."""
    kind = type(value)  # exact types: bool is a subclass of int and must not pass
    if kind is float:
        if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
            return value
        raise PayloadError(topic, f"{field_name} is not finite")
    if kind is int:
        try:
            return float(value)
        except OverflowError as exc:
            raise PayloadError(topic, f"{field_name} is too large") from exc
    raise PayloadError(topic, f"{field_name} must be a number, got {json_type(value)}")


def in_range(topic: str, field_name: str, quantity: str, value: float) -> float:
    """``value`` (already SI) if plausible for ``quantity`` (a key of RANGES)."""
    low, high = RANGES[quantity]
    if not low <= value <= high:  # also refuses NaN, which compares false to everything
        raise PayloadError(topic, f"{field_name} = {value:g} is outside the plausible range {low:g}..{high:g} for {quantity}")
    return value


def mass_kg(topic: str, field_name: str, value: Any, unit: Any) -> float:
    """A scale's weight in its declared unit, converted to kg and range-checked."""
    if not isinstance(unit, str) or unit.lower() not in MASS_TO_KG:
        raise PayloadError(topic, f"unknown weight unit {unit!r} (expected one of {', '.join(sorted(MASS_TO_KG))})")
    kg = number(topic, field_name, value) * MASS_TO_KG[unit.lower()]
    return in_range(topic, field_name, "weight_kg", kg)


def timestamp(topic: str, field_name: str, value: Any, received_at: datetime, zone: tzinfo | None) -> datetime:
    """A payload's own time: ISO 8601 text, or epoch seconds or milliseconds.

    Naive ISO times are read in ``zone`` or refused. The result is UTC and lies
    between 2000 and a day after ``received_at``.
    """
    if isinstance(value, str):
        when = _iso(topic, field_name, value, zone)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = number(topic, field_name, value)
        if abs(seconds) > _EPOCH_MS_ABOVE:
            seconds /= 1000.0
        try:
            when = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise PayloadError(topic, f"{field_name} = {value!r} is not a usable epoch time") from exc
    else:
        raise PayloadError(topic, f"{field_name} must be an ISO 8601 string or epoch seconds/milliseconds, got {json_type(value)}")
    if when < EARLIEST:
        raise PayloadError(topic, f"{field_name} {when.isoformat()} is before 2000: the device clock is not set")
    if when > received_at + MAX_AHEAD:
        raise PayloadError(topic, f"{field_name} {when.isoformat()} is more than a day after it was received ({received_at.isoformat()})")
    return when


def _iso(topic: str, field_name: str, text: str, zone: tzinfo | None) -> datetime:
    raw = text.strip()
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise PayloadError(topic, f"{field_name} {text[:40]!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None or when.utcoffset() is None:
        if zone is None:
            raise PayloadError(topic, f"{field_name} {text[:40]!r} has no UTC offset and no time zone is configured for it")
        local = when.replace(tzinfo=zone)
        try:
            round_trip = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        except (OverflowError, ValueError) as exc:
            raise PayloadError(topic, f"{field_name} {text[:40]!r} is out of range") from exc
        # A wall time in the spring-forward gap does not exist; refusing beats guessing an hour.
        if round_trip != when:
            raise PayloadError(topic, f"{field_name} {text[:40]!r} does not exist in {zone} (clock change)")
        when = local
    try:
        return when.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise PayloadError(topic, f"{field_name} {text[:40]!r} is out of range") from exc


def device_id(topic: str, value: Any, what: str = "device id") -> str:
    """A stable device id: MAC addresses as upper-case colon form, else as given."""
    if not isinstance(value, str):
        raise PayloadError(topic, f"{what} must be a string, got {json_type(value)}")
    canonical = canonical_device(value)
    if canonical is None:
        raise PayloadError(topic, f"{what} {value.strip()[:40]!r} is empty, too long or contains control or wildcard characters")
    return canonical


def canonical_device(text: str) -> str | None:
    """The one spelling of a device id (MACs upper-case with colons, whatever form
    the gateway or the config used), or None if it cannot be a device id."""
    text = text.strip()
    if _MAC.match(text):
        digits = re.sub(r"[:-]", "", text).upper()
        return ":".join(digits[i:i + 2] for i in range(0, 12, 2))
    return text if _DEVICE_ID.match(text) else None


def second(received_at: datetime) -> datetime:
    """``received_at`` in UTC, truncated to the second (the time of a time-less message)."""
    return received_at.astimezone(UTC).replace(microsecond=0)


def time_key(profile: str, device: str, when: datetime, seq: int | None = None) -> str:
    """Key of a message that carries its own time: device + time (+ sequence number)."""
    stamp = when.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{profile}|{device}|{stamp}" + (f"|{seq}" if seq is not None else "")


def received_key(profile: str, device: str, received_at: datetime, content: Any) -> str:
    """Key of a time-less message (QoS 0 gateways): device + the receive second + a
    hash of the normalised content, so one advertisement republished within the same
    second is stored once while a new reading a second later is not lost."""
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    return f"{profile}|{device}|{second(received_at).isoformat()}|{digest}"

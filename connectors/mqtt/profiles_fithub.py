"""fithub's own MQTT schema, version 1 (documented in ``SCHEMA.md`` next to this file).

Topics ``<prefix>/<device>/samples``, ``<prefix>/<device>/measurement`` and
``<prefix>/<device>/activity``. Validation is strict: an unknown field, a missing
``"v": 1`` or a value of the wrong type refuses the whole message, so a typo in a
device's firmware shows up at once instead of as silently missing data.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from connectors.files.sniff import sniff
from connectors.mqtt.profiles_common import (
    _EPOCH_MS_ABOVE,
    EARLIEST,
    MAX_AHEAD,
    RANGES,
    UTC,
    IgnoredPayload,
    ProfileOptions,
    device_id,
    in_range,
    json_type,
    load_object,
    number,
    time_key,
    timestamp,
)
from connectors.mqtt.utctext import naive_utc_text
from connectors.mqtt.readings import ActivityReading, MeasurementReading, PayloadError, Reading, SampleReading
from hub.model import MEASUREMENT_KINDS

VERSION = 1
MAX_BATCH = 10_000

# Wire name -> model channel. Short names keep messages small on constrained devices.
SAMPLE_FIELDS: dict[str, str] = {
    "hr": "hr_bpm",
    "power": "power_w",
    "cadence": "cadence_rpm",
    "speed": "speed_mps",
    "lat": "lat_deg",
    "lon": "lon_deg",
    "alt": "altitude_m",
    "dist": "distance_m",
    "temp": "temperature_c",
}
_SAMPLE_META = {"t", "seq"}
_SHARED = {"v", "sport", "person"}  # allowed on a single sample and on a batch
_BATCH_TOP = frozenset(_SHARED | {"samples"})
_SINGLE_TOP = frozenset(_SHARED | _SAMPLE_META | set(SAMPLE_FIELDS))
_MEASUREMENT_FIELDS = {"t", "seq", "kind", "value", "extra"}
# Extra values a measurement may carry, with their plausible range (see RANGES).
EXTRA_FIELDS = ("impedance_ohm",)

_SPORT = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PERSON = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


def parse_fithub(profile: str, topic: str, payload: bytes, received_at: datetime, options: ProfileOptions) -> list[Reading]:
    parts = topic.split("/")
    if len(parts) < 3:
        raise IgnoredPayload(topic, "not a fithub topic (<prefix>/<device>/samples|measurement|activity)")
    device = device_id(topic, parts[-2], "device id from the topic")
    what = parts[-1]
    if what == "samples":
        return _samples(profile, topic, device, load_object(topic, payload), received_at, options)
    if what == "measurement":
        return _measurements(profile, topic, device, load_object(topic, payload), received_at, options)
    if what == "activity":
        return [_activity(topic, device, payload)]
    raise IgnoredPayload(topic, f"unknown fithub message type {what!r} (samples, measurement or activity)")


def _header(topic: str, data: dict[str, Any], allowed: set[str]) -> tuple[str | None, str | None]:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PayloadError(topic, f"unknown field(s) {', '.join(repr(u) for u in unknown[:5])}")
    if "v" not in data:
        raise PayloadError(topic, 'missing schema version "v" (expected 1)')
    if type(data["v"]) is not int or data["v"] != VERSION:
        raise PayloadError(topic, f'unsupported schema version "v": {data["v"]!r} (this hub reads 1)'[:200])
    sport = data.get("sport")
    if sport is not None and (not isinstance(sport, str) or not _SPORT.match(sport)):
        raise PayloadError(topic, f"sport must be a lower-case name like 'cycling', got {sport!r}"[:200])
    person = data.get("person")
    if person is not None and (not isinstance(person, str) or not _PERSON.match(person) or person != person.strip()):
        raise PayloadError(topic, f"person must be a non-empty name without control characters, got {person!r}"[:200])
    return sport, person


def _seq(topic: str, where: str, item: dict[str, Any]) -> int | None:
    seq = item.get("seq")
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise PayloadError(topic, f"{where}seq must be a non-negative integer, got {json_type(seq)}")
    return seq


def _samples(
    profile: str, topic: str, device: str, data: dict[str, Any], received_at: datetime, options: ProfileOptions
) -> list[Reading]:
    fast = _samples_fast(profile, topic, device, data, received_at, options)
    if fast is not None:
        return fast
    return _samples_strict(profile, topic, device, data, received_at, options)


# The fast path's table: wire name -> (model channel, lowest, highest plausible value).
_FAST_FIELDS: dict[str, tuple[str, float, float]] = {
    wire: (channel, *RANGES[channel]) for wire, channel in SAMPLE_FIELDS.items()
}
_EARLIEST_S = EARLIEST.timestamp()
_SEQ_END = 2**63


def _samples_fast(
    profile: str, topic: str, device: str, data: dict[str, Any], received_at: datetime, options: ProfileOptions
) -> list[Reading] | None:
    """The readings of a well-formed samples message, or None as soon as anything
    is unusual, and :func:`_samples_strict` then reads the message again and names
    the problem. Every sample crosses this path at full ingest rate, so it checks
    with exact-type tests and plain comparisons in one pass, and turns epoch-number
    times into datetimes without the general :func:`timestamp` (ISO strings still
    go through it). It accepts exactly what the strict path accepts and builds the
    same readings; ``tests/test_mqtt_profiles.py`` holds the two against each other.
    """
    batch = "samples" in data
    allowed = _BATCH_TOP if batch else _SINGLE_TOP
    if not data.keys() <= allowed:
        return None
    sport, person = _header(topic, data, allowed)  # the strict path starts with the same call
    if batch:
        items = data["samples"]
        if type(items) is not list or not items or len(items) > MAX_BATCH:
            return None
    else:
        items = [{k: v for k, v in data.items() if k not in _SHARED}]
    latest = received_at + MAX_AHEAD
    # Numbers outside these bounds can still be valid (or fail with a reason):
    # the strict path decides. Inside, fromtimestamp cannot fail and the result
    # lies between EARLIEST and ``latest`` (checked again on the datetime).
    low_s, high_s = _EARLIEST_S, latest.timestamp()
    fields = _FAST_FIELDS
    prefix = f"{profile}|{device}|"
    readings: list[Reading] = []
    keys: set[str] = set()
    for item in items:
        if type(item) is not dict:
            return None
        t = item.get("t")
        kind = type(t)
        if kind is int or kind is float:
            # As timestamp(): number() makes it a float, above 1e11 it is milliseconds.
            seconds = float(t) if kind is int and -1e300 < t < 1e300 else t
            if type(seconds) is not float:
                return None
            if abs(seconds) > _EPOCH_MS_ABOVE:
                seconds /= 1000.0
            if not low_s <= seconds <= high_s + 1.0:
                return None
            when = datetime.fromtimestamp(seconds, UTC)
            if when < EARLIEST or when > latest:
                return None
        elif kind is str:
            try:
                when = timestamp(topic, "t", t, received_at, options.zone)
            except PayloadError:
                return None
        else:
            return None
        seq = None
        channels: dict[str, float] = {}
        for name, value in item.items():
            spec = fields.get(name)
            if spec is None:
                if name == "t":
                    continue
                if name == "seq":
                    seq = value
                    if type(seq) is not int or not 0 <= seq < _SEQ_END:
                        return None
                    continue
                return None  # an unknown field
            kind = type(value)
            if kind is float or kind is int:
                channel, low, high = spec
                if not low <= value <= high:  # also NaN and infinities
                    return None
                channels[channel] = float(value)
            else:
                return None
        if not channels or ("lat_deg" in channels) != ("lon_deg" in channels):
            return None
        # time_key(profile, device, when, seq); ``when`` is already UTC here.
        key = prefix + naive_utc_text(when) + ("+00:00" if seq is None else f"+00:00|{seq}")
        if key in keys:
            return None
        keys.add(key)
        readings.append(SampleReading.checked(device, when, channels, key, sport, person))
    return readings


def _samples_strict(
    profile: str, topic: str, device: str, data: dict[str, Any], received_at: datetime, options: ProfileOptions
) -> list[Reading]:
    batch = "samples" in data
    allowed = _SHARED | {"samples"} if batch else _SHARED | _SAMPLE_META | set(SAMPLE_FIELDS)
    sport, person = _header(topic, data, allowed)
    if batch:
        items = data["samples"]
        if not isinstance(items, list) or not items:
            raise PayloadError(topic, "samples must be a non-empty array")
        if len(items) > MAX_BATCH:
            raise PayloadError(topic, f"batch of {len(items)} samples is larger than {MAX_BATCH}")
    else:
        items = [{k: v for k, v in data.items() if k not in _SHARED}]
    readings: list[Reading] = []
    keys: set[str] = set()
    for index, item in enumerate(items):
        where = f"samples[{index}]: " if batch else ""
        if not isinstance(item, dict):
            raise PayloadError(topic, f"{where}expected an object, got {json_type(item)}")
        unknown = sorted(set(item) - _SAMPLE_META - set(SAMPLE_FIELDS))
        if unknown:
            raise PayloadError(topic, f"{where}unknown field(s) {', '.join(repr(u) for u in unknown[:5])}")
        if "t" not in item:
            raise PayloadError(topic, f"{where}missing time t")
        when = timestamp(topic, f"{where}t", item["t"], received_at, options.zone)
        seq = _seq(topic, where, item)
        channels = {
            SAMPLE_FIELDS[name]: in_range(topic, f"{where}{name}", SAMPLE_FIELDS[name], number(topic, f"{where}{name}", value))
            for name, value in item.items()
            if name in SAMPLE_FIELDS
        }
        if not channels:
            raise PayloadError(topic, f"{where}a sample needs at least one of {', '.join(SAMPLE_FIELDS)}")
        if ("lat_deg" in channels) != ("lon_deg" in channels):
            raise PayloadError(topic, f"{where}lat and lon must come together")
        key = time_key(profile, device, when, seq)
        if key in keys:
            # Same device, time and seq twice: one would silently replace the other.
            raise PayloadError(topic, f"{where}a second sample at {when.isoformat()}{f' seq {seq}' if seq is not None else ''}")
        keys.add(key)
        readings.append(SampleReading(device=device, time=when, channels=channels, key=key, sport=sport, person=person))
    return readings


def _measurements(
    profile: str, topic: str, device: str, data: dict[str, Any], received_at: datetime, options: ProfileOptions
) -> list[Reading]:
    batch = "measurements" in data
    allowed = _SHARED | {"measurements"} if batch else _SHARED | _MEASUREMENT_FIELDS
    _, person = _header(topic, data, allowed)
    if "sport" in data:
        raise PayloadError(topic, "sport belongs to samples, not measurements")
    if batch:
        items = data["measurements"]
        if not isinstance(items, list) or not items:
            raise PayloadError(topic, "measurements must be a non-empty array")
        if len(items) > MAX_BATCH:
            raise PayloadError(topic, f"batch of {len(items)} measurements is larger than {MAX_BATCH}")
    else:
        items = [{k: v for k, v in data.items() if k not in _SHARED}]
    readings: list[Reading] = []
    keys: set[str] = set()
    for index, item in enumerate(items):
        where = f"measurements[{index}]: " if batch else ""
        if not isinstance(item, dict):
            raise PayloadError(topic, f"{where}expected an object, got {json_type(item)}")
        unknown = sorted(set(item) - _MEASUREMENT_FIELDS)
        if unknown:
            raise PayloadError(topic, f"{where}unknown field(s) {', '.join(repr(u) for u in unknown[:5])}")
        for required in ("t", "kind", "value"):
            if required not in item:
                raise PayloadError(topic, f"{where}missing {required}")
        kind = item["kind"]
        if not isinstance(kind, str) or kind not in MEASUREMENT_KINDS:
            raise PayloadError(topic, f"{where}unknown measurement kind {kind!r}"[:200])
        when = timestamp(topic, f"{where}t", item["t"], received_at, options.zone)
        value = in_range(topic, f"{where}value", kind, number(topic, f"{where}value", item["value"]))
        extra = _extra(topic, where, item.get("extra", {}))
        seq = _seq(topic, where, item)
        key = f"{time_key(profile, device, when, seq)}|{kind}"
        if key in keys:
            raise PayloadError(topic, f"{where}a second {kind} at {when.isoformat()}")
        keys.add(key)
        readings.append(MeasurementReading(device=device, time=when, kind=kind, value=value, key=key, person=person, extra=extra))
    return readings


def _extra(topic: str, where: str, extra: Any) -> dict[str, float]:
    if not isinstance(extra, dict):
        raise PayloadError(topic, f"{where}extra must be an object, got {json_type(extra)}")
    unknown = sorted(set(extra) - set(EXTRA_FIELDS))
    if unknown:
        raise PayloadError(topic, f"{where}unknown extra value(s) {', '.join(repr(u) for u in unknown[:5])}")
    return {name: in_range(topic, f"{where}extra.{name}", name, number(topic, f"{where}extra.{name}", value)) for name, value in extra.items()}


def _activity(topic: str, device: str, payload: bytes) -> ActivityReading:
    if not payload:
        raise PayloadError(topic, "empty activity payload")
    fmt = sniff("", payload)
    if fmt is None:
        raise PayloadError(topic, f"activity payload of {len(payload)} bytes is not a FIT, GPX or TCX file")
    # The name only needs to be stable and say where it came from; the pipeline
    # deduplicates by the bytes' SHA-256 anyway.
    digest = hashlib.sha256(payload).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device)
    return ActivityReading(device=device, name=f"mqtt-{safe}-{digest}.{fmt}", data=payload)

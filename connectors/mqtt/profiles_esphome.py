"""ESPHome sensor state topics: ``<node>/sensor/<name>/state`` with a bare number.

ESPHome publishes each sensor's state as text (``"72.35"``, ``"nan"`` while the
sensor has no value) under its topic prefix (the node name unless configured), and
the sensor's *object id*: its name lower-cased with spaces as underscores. The
payload carries no unit and no time, so which quantity a sensor is comes from
config (``ProfileOptions.esphome_sensors``), with defaults for the obvious names.

A target is a measurement kind (``weight_kg``), optionally with the unit the sensor
reports in (``weight_kg:lb``), or ``sample.<channel>`` for a live sample channel
(``sample.hr_bpm``, ``sample.power_w``). The key ``<node>/<sensor>`` beats
``<sensor>`` so one node can be told apart.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from connectors.mqtt.profiles_common import (
    IgnoredPayload,
    ProfileOptions,
    device_id,
    in_range,
    received_key,
    second,
    utf8,
)
from connectors.mqtt.readings import MeasurementReading, PayloadError, Reading, SampleReading
from hub.model import CHANNELS, MEASUREMENT_KINDS

# Unit suffix of a target -> factor to the kind's SI unit.
UNIT_FACTORS: dict[str, float] = {
    "kg": 1.0, "g": 0.001, "lb": 0.45359237, "lbs": 0.45359237, "jin": 0.5,
    "km/h": 1 / 3.6, "kcal": 4184.0, "kj": 1000.0, "min": 60.0, "h": 3600.0,
}  # fmt: skip

# Sensors fithub recognises without config, by object id. Impedance is absent on
# purpose: it arrives as its own message and means nothing without the weight.
_DEFAULTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(^|_)weight(_kg)?$"), "weight_kg"),
    (re.compile(r"(^|_)(heart_rate|hr|bpm)$"), "hr_bpm"),
    (re.compile(r"(^|_)steps$"), "steps_day_cumulative"),
)

# ESPHome formats states with "%.*f"; anything else (hex, "1e5", "inf") is not its output.
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def check_target(target: str) -> str | None:
    """Why ``target`` is not a valid ESPHome sensor target, or None if it is."""
    base, _, unit = target.partition(":")
    if base.startswith("sample."):
        if base[len("sample."):] not in CHANNELS:
            return f"{base!r}: unknown sample channel (one of {', '.join(CHANNELS)})"
    elif base not in MEASUREMENT_KINDS:
        return f"{base!r}: unknown measurement kind"
    if unit and unit.lower() not in UNIT_FACTORS:
        return f"unit {unit!r} is not one of {', '.join(UNIT_FACTORS)}"
    return None


def parse_esphome(
    profile: str, topic: str, payload: bytes, received_at: datetime, options: ProfileOptions, retained: bool
) -> list[Reading]:
    parts = topic.split("/")
    if len(parts) < 4 or parts[-3] != "sensor" or parts[-1] != "state":
        if parts[-1] == "status":
            raise IgnoredPayload(topic, "ESPHome availability message")
        raise IgnoredPayload(topic, "not an ESPHome sensor state topic (<node>/sensor/<name>/state)")
    node = device_id(topic, "/".join(parts[:-3]), "ESPHome node (topic prefix)")
    sensor = parts[-2]
    target = options.esphome_sensors.get(f"{node}/{sensor}") or options.esphome_sensors.get(sensor) or _default(sensor)
    if target is None:
        raise IgnoredPayload(topic, f"ESPHome sensor {sensor!r} of {node} is not mapped to a fithub quantity")
    if retained:
        # ESPHome retains states by default: a retained value is from whenever the
        # sensor last changed, and the payload has no time to tell when that was.
        raise IgnoredPayload(topic, "retained state of unknown age")
    problem = check_target(target)
    if problem:
        raise PayloadError(topic, f"configured target for sensor {sensor!r} is invalid: {problem}")
    text = utf8(topic, payload).strip()
    if text.lower() in ("nan", "-nan"):
        raise IgnoredPayload(topic, f"sensor {sensor!r} has no value yet (nan)")
    if not _NUMBER.match(text):
        raise PayloadError(topic, f"state {text[:40]!r} is not a number")
    base, _, unit = target.partition(":")
    value = float(text) * (UNIT_FACTORS[unit.lower()] if unit else 1.0)
    if not math.isfinite(value):
        raise PayloadError(topic, f"state {text[:40]!r} is not finite")
    when = second(received_at)
    key = received_key(profile, node, received_at, {"sensor": sensor, "state": text})
    if base.startswith("sample."):
        channel = base[len("sample."):]
        return [SampleReading(device=node, time=when, channels={channel: _checked(topic, sensor, channel, value)}, key=f"{key}|{channel}")]
    return [MeasurementReading(device=node, time=when, kind=base, value=_checked(topic, sensor, base, value), key=f"{key}|{base}")]


def _default(sensor: str) -> str | None:
    for pattern, target in _DEFAULTS:
        if pattern.search(sensor):
            return target
    return None


def _checked(topic: str, sensor: str, quantity: str, value: float) -> float:
    return in_range(topic, f"sensor {sensor!r}", quantity, value)

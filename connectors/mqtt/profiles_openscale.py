"""openScale-sync: ``openScaleSync/[<userId>/]measurements/<event>``.

openScale-sync publishes one JSON object per measurement on ``insert`` and
``update`` (``delete`` and ``clear`` carry only a date or ``true``). The object has
``date`` (``"2024-06-01T07:30+0200"``: minutes and an offset, as its Gson
``yyyy-MM-dd'T'HH:mmZ`` format writes it; epoch milliseconds are accepted too),
``weight`` (kg), ``fat`` (older versions) or ``body_fat``, ``water``, ``muscle``,
``lbm`` and ``bone``, all in percent of the weight, and ``userId``/``username``.
A field of 0 means "not measured" (the app's default), so it is skipped.

The device is ``openscale:<userId>``; map it to a person in the ``devices`` table.
Deletions are not applied: fithub keeps what it stored (an ``update`` of a stored
time is the same key and is absorbed as a duplicate).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.mqtt.profiles_common import (
    IgnoredPayload,
    ProfileOptions,
    device_id,
    in_range,
    load_object,
    number,
    time_key,
    timestamp,
)
from connectors.mqtt.readings import MeasurementReading, PayloadError, Reading

# openScale field -> (fithub kind, True when the value is percent of weight that
# fithub stores as a mass).
_FIELDS: dict[str, tuple[str, bool]] = {
    "fat": ("body_fat_pct", False),
    "body_fat": ("body_fat_pct", False),
    "water": ("body_water_pct", False),
    "muscle": ("muscle_mass_kg", True),
    "lbm": ("lean_mass_kg", True),
    "bone": ("bone_mass_kg", True),
}


def parse_openscale(profile: str, topic: str, payload: bytes, received_at: datetime, options: ProfileOptions) -> list[Reading]:
    parts = topic.split("/")
    if len(parts) < 2 or parts[-2] != "measurements":
        raise IgnoredPayload(topic, "not an openScale-sync measurements topic")
    event = parts[-1]
    if event in ("delete", "clear"):
        raise IgnoredPayload(topic, f"openScale {event}: fithub does not delete stored measurements")
    if event not in ("insert", "update"):
        raise IgnoredPayload(topic, f"unknown openScale-sync event {event!r}")
    data = load_object(topic, payload)
    if "fat" in data and "body_fat" in data:
        raise PayloadError(topic, "both fat and body_fat given")
    user = _user(topic, parts, data)
    device = device_id(topic, f"openscale:{user}")
    if "date" not in data:
        raise PayloadError(topic, "measurement without a date")
    when = timestamp(topic, "date", data["date"], received_at, options.zone)
    if "weight" not in data:
        raise PayloadError(topic, "measurement without a weight")
    weight = in_range(topic, "weight", "weight_kg", number(topic, "weight", data["weight"]))

    def reading(kind: str, value: float) -> MeasurementReading:
        return MeasurementReading(device=device, time=when, kind=kind, value=value, key=f"{time_key(profile, device, when)}|{kind}")

    readings = [reading("weight_kg", weight)]
    for name, (kind, of_weight) in _FIELDS.items():
        if name not in data or data[name] is None:
            continue
        pct = in_range(topic, name, "body_fat_pct", number(topic, name, data[name]))  # any percentage: 0..100
        if pct == 0:
            continue
        value = pct * weight / 100.0 if of_weight else pct
        readings.append(reading(kind, in_range(topic, name, kind, value)))
    return readings


def _user(topic: str, parts: list[str], data: dict[str, Any]) -> str:
    """The openScale user id: from the payload, else the topic; both must agree."""
    # Older versions publish without the user segment; a prefix segment is not an id.
    from_topic = parts[-3] if len(parts) >= 4 and parts[-3].isdigit() and parts[-3].isascii() else None
    from_payload = data.get("userId")
    if from_payload is not None:
        if isinstance(from_payload, bool) or not isinstance(from_payload, int) or from_payload < 0:
            raise PayloadError(topic, f"userId must be a non-negative integer, got {from_payload!r}"[:160])
        if from_topic is not None and from_topic != str(from_payload):
            raise PayloadError(topic, f"userId {from_payload} in the payload differs from {from_topic!r} in the topic")
        return str(from_payload)
    return from_topic if from_topic is not None else "0"

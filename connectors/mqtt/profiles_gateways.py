"""BLE-to-MQTT gateways: Theengs Gateway and OpenMQTTGateway (``.../BTtoMQTT/<MAC>``).

Both run the Theengs decoder and publish one JSON object per advertisement with
the decoded properties next to ``id`` (the MAC), ``rssi``, ``brand``, ``model``,
``model_id``. What fithub takes from them:

* Xiaomi scales (XMTZC01HM/02HM/04HM/05HM and alike): ``weight`` in ``unit``
  ("kg", "lbs", "jin"), ``impedance`` (ohm, body composition scales only), and
  ``weighing_mode`` ("person" or "object": an object on the scale is not a body
  weight and is skipped).
* Mi Band / Amazfit trackers: ``steps`` (the band's count for the day so far) and
  ``act_bpm`` (the heart rate it is broadcasting).

Gateways publish at QoS 0 and advertisements carry no time, so a reading's time is
when it was received and its key includes a hash of the decoded values.
Everything else on the same topics (thermometers, phones, beacons, raw undecoded
advertisements, the gateway's LWT) is a well-formed message without fitness data:
:class:`IgnoredPayload`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.mqtt.profiles_common import (
    IgnoredPayload,
    device_id,
    in_range,
    load_object,
    mass_kg,
    number,
    received_key,
    second,
)
from connectors.mqtt.readings import MeasurementReading, PayloadError, Reading


# Fields that vary between advertisements of one reading and say nothing about the
# person: left out of the content hash so repeats within a second collapse.
# rssi/txpower: radio conditions; name, brand, model, model_id, type, mac_type,
# adv_type, manufacturerdata, servicedata, servicedatauuid, uuid: identify the device
# or repeat the raw bytes the decoded values came from.
_DECODED_FIELDS = ("weight", "unit", "impedance", "weighing_mode", "steps", "act_bpm")


def parse_gateway(profile: str, topic: str, payload: bytes, received_at: datetime) -> list[Reading]:
    if topic.endswith("/LWT") or topic.endswith("/status"):
        raise IgnoredPayload(topic, "gateway availability message")
    data = load_object(topic, payload)
    device = _device(topic, data)
    has_scale = "weight" in data
    has_band = "steps" in data or "act_bpm" in data
    if not has_scale and not has_band:
        model = data.get("model_id") or data.get("model")
        if "servicedata" in data or "manufacturerdata" in data:
            raise IgnoredPayload(topic, f"undecoded advertisement from {device}: no weight, steps or heart rate (is the gateway's BLE decoder on?)")
        raise IgnoredPayload(topic, f"{device} ({model if isinstance(model, str) else 'unknown model'}) publishes no fitness data")
    content = {"device": device, **{k: data[k] for k in _DECODED_FIELDS if k in data}}
    key = received_key(profile, device, received_at, content)
    when = second(received_at)
    readings: list[Reading] = []
    if has_scale:
        readings.extend(_scale(topic, data, device, when, key))
    if has_band:
        readings.extend(_band(topic, data, device, when, key))
    return readings


def _device(topic: str, data: dict[str, Any]) -> str:
    if "id" in data:
        return device_id(topic, data["id"])
    # Theengs names the topic after the MAC without colons; use it when "id" is absent.
    return device_id(topic, topic.rsplit("/", 1)[-1], "device id from the topic")


def _scale(topic: str, data: dict[str, Any], device: str, when: datetime, key: str) -> list[MeasurementReading]:
    mode = data.get("weighing_mode", "person")
    if mode == "object":
        raise IgnoredPayload(topic, f"scale {device} weighed an object, not a person")
    if mode != "person":
        raise PayloadError(topic, f"weighing_mode {mode!r} is neither 'person' nor 'object'")
    if "unit" not in data:
        raise PayloadError(topic, f"scale {device} sent a weight without its unit")
    weight = mass_kg(topic, "weight", data["weight"], data["unit"])
    extra: dict[str, float] = {}
    if "impedance" in data:
        impedance = number(topic, "impedance", data["impedance"])
        # 0 is what body composition scales send before the feet electrodes read anything.
        if impedance != 0:
            extra["impedance_ohm"] = in_range(topic, "impedance", "impedance_ohm", impedance)
    return [MeasurementReading(device=device, time=when, kind="weight_kg", value=weight, key=f"{key}|weight_kg", extra=extra)]


def _band(topic: str, data: dict[str, Any], device: str, when: datetime, key: str) -> list[MeasurementReading]:
    readings = []
    if "steps" in data:
        steps = number(topic, "steps", data["steps"])
        if steps != int(steps):
            raise PayloadError(topic, f"steps = {steps:g} is not a whole number")
        readings.append(MeasurementReading(
            device=device, time=when, kind="steps_day_cumulative",
            value=in_range(topic, "steps", "steps_day_cumulative", steps), key=f"{key}|steps_day_cumulative",
        ))  # fmt: skip
    if "act_bpm" in data:
        bpm = in_range(topic, "act_bpm", "hr_bpm", number(topic, "act_bpm", data["act_bpm"]))
        readings.append(MeasurementReading(device=device, time=when, kind="hr_bpm", value=bpm, key=f"{key}|hr_bpm"))
    return readings

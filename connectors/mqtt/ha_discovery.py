"""Home Assistant MQTT discovery for fithub's per-person state (pure, no I/O).

One *device* per person, announced with device-based discovery
(``<prefix>/device/fithub_<person>/config``: ``dev``, ``o``, ``cmps``). Every
component reads the same retained JSON state document (``<base>/<person>/state``,
:meth:`hub.stats.PersonState.as_json`) through its own ``value_template``, so one
publish updates all of a person's sensors at once. Availability is the notifier's
``<base>/status`` (``online``/``offline``, the latter as the MQTT last will).

With live values on, four more components (heart rate, power, cadence, speed)
read the person's live topic (``<base>/<person>/live``, not retained, about 1 Hz
while a sensor session runs) with ``expire_after``: when the stream stops, Home
Assistant shows them as unavailable instead of a stale heart rate.

Identifiers Home Assistant uses (node ids, unique ids) and the person's topic level
allow only ``[a-zA-Z0-9_-]``; :func:`sanitise` maps any name into that set and adds
a short hash when it had to change something, so "anna.b" and "anna_b" stay apart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def sanitise(text: str) -> str:
    cleaned = _UNSAFE.sub("_", text)
    if cleaned != text or not cleaned:
        cleaned = f"{cleaned}_{hashlib.sha256(text.encode('utf-8')).hexdigest()[:6]}"
    return cleaned


def check_topic_prefix(value: str, what: str) -> str | None:
    """Why ``value`` cannot prefix published topics, or None when it can."""
    if not value or value.startswith("/") or value.endswith("/"):
        return f"{what} must be non-empty without a leading or trailing '/', got {value!r}"
    if any(c in value for c in "+#\0"):
        return f"{what} must not contain the wildcards + or # (or NUL), got {value!r}"
    return None


# -- topics -------------------------------------------------------------------------------------


def status_topic(base: str) -> str:
    return f"{base}/status"


def state_topic(base: str, person: str) -> str:
    return f"{base}/{sanitise(person)}/state"


def live_topic(base: str, person: str) -> str:
    return f"{base}/{sanitise(person)}/live"


def event_topic(base: str, kind: str) -> str:
    # Event kinds are fithub's own constants ("activity.stored"): '.' is legal in a topic.
    return f"{base}/events/{kind}"


def node_id(person: str) -> str:
    return f"fithub_{sanitise(person)}"


def discovery_topic(prefix: str, person: str) -> str:
    return f"{prefix}/device/{node_id(person)}/config"


def birth_topic(prefix: str) -> str:
    """Home Assistant publishes ``online`` here when it (re)starts."""
    return f"{prefix}/status"


# -- the components -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sensor:
    key: str  # object id suffix, stable: part of the unique id
    name: str
    field: str  # key in the state JSON
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None
    attributes: tuple[str, ...] = ()  # further state JSON keys shown as attributes
    live: bool = False  # reads the live topic (hub.events.LiveValues.as_json), not the state


# The weekly figures fall back to 0 each Monday: "total_increasing" is exactly a
# counter that resets. Home Assistant has no heart-rate device class; bpm with a
# measurement state class is its documented recommendation.
SENSORS: tuple[Sensor, ...] = (
    Sensor("last_activity", "Last activity", "last_activity_sport", icon="mdi:run",
           attributes=("last_activity_id", "last_activity_start", "last_activity_sub_sport", "last_activity_name",
                       "last_activity_distance_m", "last_activity_elapsed_s", "last_activity_moving_s")),
    Sensor("weekly_distance", "Weekly distance", "week_distance_m", "m", "distance", "total_increasing"),
    Sensor("weekly_time", "Weekly time", "week_moving_s", "s", "duration", "total_increasing"),
    Sensor("streak", "Streak", "streak_days", "d", None, "measurement", icon="mdi:fire"),
    Sensor("weight", "Weight", "weight_kg", "kg", "weight", "measurement"),
    Sensor("resting_hr", "Resting heart rate", "resting_hr_bpm", "bpm", None, "measurement", icon="mdi:heart-pulse"),
)  # fmt: skip


# Live values: every key is always in the payload (null when not measured), so the
# templates never meet a missing key. Speed stays in m/s (SI, like every state).
LIVE_SENSORS: tuple[Sensor, ...] = (
    Sensor("live_hr", "Live heart rate", "hr_bpm", "bpm", None, "measurement", icon="mdi:heart-pulse", live=True),
    Sensor("live_power", "Live power", "power_w", "W", "power", "measurement", live=True),
    Sensor("live_cadence", "Live cadence", "cadence_rpm", "rpm", None, "measurement", icon="mdi:rotate-right", live=True),
    Sensor("live_speed", "Live speed", "speed_mps", "m/s", "speed", "measurement", live=True),
)  # fmt: skip


def _component(sensor: Sensor, person: str, base: str, *, expire_after_s: int | None = None) -> dict[str, Any]:
    node = node_id(person)
    topic = live_topic(base, person) if sensor.live else state_topic(base, person)
    # A null in the state renders as "None", which Home Assistant shows as unknown.
    comp: dict[str, Any] = {
        "platform": "sensor",
        "name": sensor.name,
        "unique_id": f"{node}_{sensor.key}",
        "state_topic": topic,
        "value_template": f"{{{{ value_json.{sensor.field} }}}}",
        "availability_topic": status_topic(base),
    }
    if sensor.live and expire_after_s:
        comp["expire_after"] = expire_after_s
    if sensor.unit:
        comp["unit_of_measurement"] = sensor.unit
    if sensor.device_class:
        comp["device_class"] = sensor.device_class
    if sensor.state_class:
        comp["state_class"] = sensor.state_class
    if sensor.icon:
        comp["icon"] = sensor.icon
    if sensor.attributes:
        pairs = ", ".join(f"'{a}': value_json.{a}" for a in sensor.attributes)
        comp["json_attributes_topic"] = state_topic(base, person)
        comp["json_attributes_template"] = f"{{{{ {{{pairs}}} | tojson }}}}"
    return comp


def device_config(person: str, *, base: str, version: str, live_expire_s: int | None = None) -> dict[str, Any]:
    """The device-based discovery payload for one person; with ``live_expire_s``
    also the live sensors, unavailable that many seconds after the last value."""
    node = node_id(person)
    components = {f"{node}_{s.key}": _component(s, person, base) for s in SENSORS}
    if live_expire_s:
        components.update({f"{node}_{s.key}": _component(s, person, base, expire_after_s=live_expire_s) for s in LIVE_SENSORS})
    return {
        "dev": {
            "identifiers": [node],
            "name": f"fithub {person}",
            "manufacturer": "fithub",
            "model": "person",
            "sw_version": version,
        },
        "o": {"name": "fithub", "sw_version": version},
        "cmps": components,
        "qos": 1,
    }

"""Typed events: what happened in the hub, for sinks and notifiers.

An event is a plain value with an idempotency ``key`` that stays the same however
often it is delivered, so a receiver can drop repeats. Events describing stored
data are written to the outbox in the same transaction as the data (see
:mod:`hub.outbox`); a crash can therefore never keep the data and lose its event.

:class:`LiveValues` is not an event: a sensor's current readings, worthless a
minute later, handed to consumers best-effort and never stored (see
``Hub.publish_live`` in :mod:`hub.plugins`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .model import require_utc

ACTIVITY_STORED = "activity.stored"
ACTIVITY_MERGED = "activity.merged"
MEASUREMENT_STORED = "measurement.stored"
SOURCE_FAILED = "source.failed"
SOURCE_RECOVERED = "source.recovered"

EVENT_KINDS: dict[str, str] = {
    ACTIVITY_STORED: "a new workout was stored",
    ACTIVITY_MERGED: "a further recording joined an existing workout",
    MEASUREMENT_STORED: "measurements (weight, steps, ...) were stored",
    SOURCE_FAILED: "a source started failing",
    SOURCE_RECOVERED: "a failing source works again",
}


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: str
    key: str
    person: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    id: int | None = None  # the outbox's sequence number, once stored

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        require_utc(self.created_at, "event created_at")

    def as_json(self) -> dict[str, Any]:
        """The wire form used by webhooks, files and MQTT."""
        return {
            "id": self.id,
            "kind": self.kind,
            "key": self.key,
            "person": self.person,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "payload": self.payload,
        }


def activity_event(kind: str, *, workout_id: int, person: str, file_sha256: str, summary: dict[str, Any]) -> Event:
    """Stored or merged workout. Keyed by the file that caused it: re-delivery of
    the same file never produces a second event, a later file merging into the
    same workout does."""
    return Event(
        kind=kind,
        key=f"{kind}:{workout_id}:{file_sha256}",
        person=person,
        payload={"activity_id": workout_id, "file_sha256": file_sha256, **summary},
    )


def measurement_event(*, person: str, file_sha256: str, count: int, kinds: list[str]) -> Event:
    return Event(
        kind=MEASUREMENT_STORED,
        key=f"{MEASUREMENT_STORED}:{person}:{file_sha256}",
        person=person,
        payload={"file_sha256": file_sha256, "count": count, "kinds": sorted(set(kinds))},
    )


def source_event(kind: str, *, source: str, since: datetime, error: str | None = None) -> Event:
    """A failure or recovery of ``source``; ``since`` (when the failure started)
    makes the key unique per outage."""
    stamp = require_utc(since, "since").isoformat()
    payload: dict[str, Any] = {"source": source, "since": stamp}
    if error:
        payload["error"] = error
    return Event(kind=kind, key=f"{kind}:{source}:{stamp}", person=None, payload=payload)


# The channels Home Assistant and other live displays show, in SI units (the model's names).
LIVE_CHANNELS: tuple[str, ...] = ("hr_bpm", "power_w", "cadence_rpm", "speed_mps")


@dataclass(frozen=True, kw_only=True)
class LiveValues:
    """One second of a live stream: what a person's sensors show right now.

    ``channels`` holds SI values by model name (``hr_bpm``, ``power_w``,
    ``cadence_rpm``, ``speed_mps``, ...); a channel nothing measured is absent.
    ``sensors`` names, per channel, the sensor that supplied it (provenance, as in
    a stored recording). ``source`` is the hub source that produced the values
    (its config name), ``time`` the start of the second they describe (UTC).
    """

    person: str
    source: str
    time: datetime
    channels: dict[str, float]
    sensors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", require_utc(self.time, "live values time"))
        clean: dict[str, float] = {}
        for name, value in dict(self.channels).items():
            # bool is an int: a True heart rate would be a bug upstream, not a value
            if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"live values from {self.source}: channel {name!r} has no finite number ({value!r})")
            clean[name] = float(value)
        object.__setattr__(self, "channels", clean)
        object.__setattr__(self, "sensors", {k: v for k, v in dict(self.sensors).items() if k in clean})

    def as_json(self) -> dict[str, Any]:
        """The wire form: every :data:`LIVE_CHANNELS` key is present (``null`` when
        not measured) so a display template never meets a missing key."""
        body: dict[str, Any] = {"person": self.person, "source": self.source,
                                "time": self.time.isoformat().replace("+00:00", "Z")}  # fmt: skip
        body.update({name: None for name in LIVE_CHANNELS})
        body.update(self.channels)
        body["sensors"] = dict(self.sensors)
        return body

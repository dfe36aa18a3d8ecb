"""What an MQTT payload turns into, before anything is stored.

The payload profiles (:mod:`connectors.mqtt.profiles`) are pure functions from
(topic, payload bytes, receive time) to a list of these readings, or a
:class:`PayloadError` naming the topic and what was wrong. The MQTT source then
stores them: samples into live sessions, measurements directly, whole activities
through the import pipeline.

Every reading carries an idempotency ``key`` derived from the message itself
(device, time, sequence number when the device sends one), so a message the broker
delivers again after a crash is recognised and absorbed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hub.errors import FithubError


class PayloadError(FithubError):
    """A payload that cannot be read; counted, logged with its topic, dropped."""

    def __init__(self, topic: str, why: str) -> None:
        self.topic = topic
        self.why = why
        super().__init__(f"{topic}: {why}")


@dataclass(frozen=True, kw_only=True)
class SampleReading:
    """One live sample from a device: any subset of the model's sample channels
    (``hub.model`` names: hr_bpm, power_w, cadence_rpm, speed_mps, lat_deg, lon_deg,
    altitude_m, distance_m, temperature_c), in SI units."""

    device: str  # stable device id (MAC, node name, client-given id)
    time: datetime  # UTC
    channels: dict[str, float]
    key: str  # idempotency key: device + time (+ seq)
    sport: str | None = None  # when the device says what it is doing
    person: str | None = None  # when the payload names its person

    @classmethod
    def checked(
        cls, device: str, time: datetime, channels: dict[str, float], key: str, sport: str | None, person: str | None
    ) -> SampleReading:
        """The same reading as the constructor builds, for a profile's fast path
        whose values are already checked: a frozen dataclass's ``__init__`` sets
        each field through ``object.__setattr__``, a third of the cost of reading
        a sample. Equality, hashing and immutability are the dataclass's own."""
        reading = _new(cls)
        reading.__dict__.update(device=device, time=time, channels=channels, key=key, sport=sport, person=person)
        return reading


_new = object.__new__


@dataclass(frozen=True, kw_only=True)
class MeasurementReading:
    """A body or daily value (``hub.model.MEASUREMENT_KINDS``) in SI units."""

    device: str
    time: datetime
    kind: str
    value: float
    key: str
    person: str | None = None  # None: decided by the device map or attribution
    extra: dict[str, float] = field(default_factory=dict)  # e.g. impedance_ohm


@dataclass(frozen=True, kw_only=True)
class ActivityReading:
    """A whole activity published as a file (FIT/GPX/TCX bytes, or fithub's JSON
    activity document) to go through the normal import pipeline."""

    device: str
    name: str
    data: bytes
    person: str | None = None


Reading = SampleReading | MeasurementReading | ActivityReading

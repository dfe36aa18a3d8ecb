"""What a sensor's notification becomes once decoded: values in the model's units.

A :class:`Reading` is one notification of a workout sensor with the sample
channels it carried (``hub.model`` names: ``hr_bpm``, ``power_w``,
``cadence_rpm``, ``speed_mps``, ``distance_m``); a :class:`ScaleReading` is one
complete weighing. Both say which sensor (address) and which profile produced
them, so every channel of a combined recording can name its origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Profiles: what a connected sensor is, by the characteristic it notifies.
HEART_RATE = "heart_rate"
CYCLING_POWER = "cycling_power"
CYCLING_SPEED_CADENCE = "cycling_speed_cadence"
RUNNING_SPEED_CADENCE = "running_speed_cadence"
INDOOR_BIKE = "indoor_bike"  # FTMS trainer
TREADMILL = "treadmill"  # FTMS treadmill
WEIGHT_SCALE = "weight_scale"
BODY_COMPOSITION = "body_composition"

WORKOUT_PROFILES = (HEART_RATE, CYCLING_POWER, CYCLING_SPEED_CADENCE, RUNNING_SPEED_CADENCE, INDOOR_BIKE, TREADMILL)
SCALE_PROFILES = (WEIGHT_SCALE, BODY_COMPOSITION)


@dataclass(frozen=True)
class Reading:
    time_s: float  # POSIX time the notification arrived
    sensor: str  # the sensor's address
    profile: str  # one of WORKOUT_PROFILES
    channels: dict[str, float] = field(default_factory=dict)
    rr_s: tuple[float, ...] = ()  # beat-to-beat intervals (heart-rate straps)

    @property
    def active(self) -> bool:
        """Does this reading show someone working out? A trainer or treadmill keeps
        notifying zeros while nobody uses it; that must not start or prolong a session."""
        return any(value for value in self.channels.values())


@dataclass(frozen=True)
class ScaleReading:
    time: datetime  # UTC: the scale's own time stamp when it sent one, else arrival
    sensor: str
    values: dict[str, float]  # hub.model.MEASUREMENT_KINDS -> value (weight_kg, body_fat_pct, ...)
    user_index: int | None = None  # the scale's user slot, None when unknown
    # The weight of this weighing when the packet itself has none (body
    # composition sent apart from the weight): for attributing it to a person.
    weight_hint_kg: float | None = None

    @property
    def weight_kg(self) -> float | None:
        return self.values.get("weight_kg", self.weight_hint_kg)

"""Which characteristics fithub reads, and what their values become (pure).

:data:`PROFILES` declares, as data, every measurement characteristic the manager
subscribes to: its service and the profile name it gives the sensor. A
:class:`SensorDecoder` (one per connected sensor, because revolution counters
and multi-packet scale indications need the previous packets) turns a
notification into a :class:`~drivers.ble.readings.Reading` in the model's units
or a :class:`~drivers.ble.readings.ScaleReading`, using the GATT parsers.
A malformed packet raises :class:`drivers.ble.errors.GattError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from . import uuids
from .gatt_cycling import CscCalculator, CyclingPowerCalculator, parse_csc, parse_cycling_power
from .gatt_ftms import parse_indoor_bike, parse_treadmill
from .gatt_heart import parse_heart_rate
from .gatt_running import parse_rsc
from .gatt_scale import BodyComposition, BodyCompositionAssembler, parse_weight
from .readings import (
    BODY_COMPOSITION,
    CYCLING_POWER,
    CYCLING_SPEED_CADENCE,
    HEART_RATE,
    INDOOR_BIKE,
    RUNNING_SPEED_CADENCE,
    TREADMILL,
    WEIGHT_SCALE,
    Reading,
    ScaleReading,
)
from .transport import full_uuid

DEFAULT_CIRCUMFERENCE_M = 2.105  # 700x25c, the usual road and trainer wheel


@dataclass(frozen=True)
class Profile:
    name: str
    service: str  # full UUID
    characteristic: str  # full UUID of the measurement it notifies or indicates


PROFILES: tuple[Profile, ...] = (
    Profile(HEART_RATE, uuids.HEART_RATE_SERVICE, uuids.HEART_RATE_MEASUREMENT),
    Profile(CYCLING_POWER, uuids.CYCLING_POWER_SERVICE, uuids.CYCLING_POWER_MEASUREMENT),
    Profile(CYCLING_SPEED_CADENCE, uuids.CSC_SERVICE, uuids.CSC_MEASUREMENT),
    Profile(RUNNING_SPEED_CADENCE, uuids.RSC_SERVICE, uuids.RSC_MEASUREMENT),
    Profile(INDOOR_BIKE, uuids.FITNESS_MACHINE_SERVICE, uuids.INDOOR_BIKE_DATA),
    Profile(TREADMILL, uuids.FITNESS_MACHINE_SERVICE, uuids.TREADMILL_DATA),
    Profile(WEIGHT_SCALE, uuids.WEIGHT_SCALE_SERVICE, uuids.WEIGHT_MEASUREMENT),
    Profile(BODY_COMPOSITION, uuids.BODY_COMPOSITION_SERVICE, uuids.BODY_COMPOSITION_MEASUREMENT),
)
BY_CHARACTERISTIC: dict[str, Profile] = {full_uuid(p.characteristic): p for p in PROFILES}

# Short names accepted in the config's sensor list (`"service:heart_rate"`), and
# the service each stands for. FTMS serves trainers and treadmills alike.
SERVICE_ALIASES: dict[str, str] = {
    **{name: full_uuid(uuid) for name, uuid in uuids.FITNESS_SERVICES.items()},
    HEART_RATE: full_uuid(uuids.HEART_RATE_SERVICE),
    "csc": full_uuid(uuids.CSC_SERVICE),
    "rsc": full_uuid(uuids.RSC_SERVICE),
    "ftms": full_uuid(uuids.FITNESS_MACHINE_SERVICE),
    INDOOR_BIKE: full_uuid(uuids.FITNESS_MACHINE_SERVICE),
    TREADMILL: full_uuid(uuids.FITNESS_MACHINE_SERVICE),
    "power": full_uuid(uuids.CYCLING_POWER_SERVICE),
    "scale": full_uuid(uuids.WEIGHT_SCALE_SERVICE),
}


def service_name(uuid: str) -> str | None:
    return uuids.SERVICE_NAMES.get(full_uuid(uuid))


def local_to_utc(naive: datetime) -> datetime:
    """A scale's clock is set to local time (by its app); read it in the hub's zone."""
    return naive.astimezone().astimezone(timezone.utc) if naive.tzinfo is None else naive.astimezone(timezone.utc)


class SensorDecoder:
    """Decodes one sensor's notifications. ``reset()`` after a reconnect: the
    counters moved on while disconnected, and a delta across the gap would be wrong."""

    def __init__(self, address: str, *, circumference_m: float = DEFAULT_CIRCUMFERENCE_M) -> None:
        self.address = address
        self.circumference_m = circumference_m
        self._csc = CscCalculator(circumference_m)
        self._power = CyclingPowerCalculator(circumference_m)
        self._composition = None  # created when a body-composition packet arrives
        self._last_weight: tuple[float, float] | None = None  # (kg, arrival time)

    def reset(self) -> None:
        self._csc.reset()
        self._power.reset()
        self._composition = None

    def decode(self, characteristic: str, data: bytes, now_s: float, mono_s: float) -> list[Reading | ScaleReading]:
        """``now_s`` is POSIX time (stamps the reading), ``mono_s`` a monotonic
        clock (drives the revolution maths). Usually one result; none for the
        first half of a multi-packet indication, two when a stale half is flushed."""
        profile = BY_CHARACTERISTIC.get(full_uuid(characteristic))
        if profile is None:
            return []
        if profile.name == BODY_COMPOSITION:
            return self._body_composition(data, now_s, mono_s)
        result = self._one(profile.name, data, now_s, mono_s)
        return [] if result is None else [result]

    def flush(self, now_s: float) -> list[ScaleReading]:
        """A half body-composition measurement left when the connection ends."""
        if self._composition is None:
            return []
        return [self._composition_reading(bc, now_s) for bc in self._composition.flush()]

    def _one(self, name: str, data: bytes, now_s: float, mono_s: float) -> Reading | ScaleReading | None:
        if name == HEART_RATE:
            hr = parse_heart_rate(data)
            # A strap without skin contact sends a guess or 0: not a measurement.
            channels = {} if hr.contact is False else {"hr_bpm": float(hr.bpm)}
            return Reading(now_s, self.address, name, channels, rr_s=hr.rr_s if hr.contact is not False else ())
        if name == CYCLING_POWER:
            cp = parse_cycling_power(data)
            rates = self._power.update(cp, mono_s)
            channels = {"power_w": float(cp.power_w)}
            _put(channels, "cadence_rpm", rates.cadence_rpm)
            return Reading(now_s, self.address, name, channels)
        if name == CYCLING_SPEED_CADENCE:
            rates = self._csc.update(parse_csc(data), mono_s)
            channels = {}
            _put(channels, "speed_mps", rates.speed_mps)
            _put(channels, "cadence_rpm", rates.cadence_rpm)
            # Not rates.distance_m: it restarts at 0 with every reconnect; the
            # combiner integrates the speed instead.
            return Reading(now_s, self.address, name, channels)
        if name == RUNNING_SPEED_CADENCE:
            rsc = parse_rsc(data)
            channels = {"speed_mps": rsc.speed_mps, "cadence_rpm": rsc.cadence_spm / 2}
            _put(channels, "distance_m", rsc.distance_m)
            return Reading(now_s, self.address, name, channels)
        if name == INDOOR_BIKE:
            bike = parse_indoor_bike(data)
            channels = {}
            for channel in ("speed_mps", "cadence_rpm", "power_w", "hr_bpm", "distance_m"):
                _put(channels, channel, getattr(bike, channel))
            return Reading(now_s, self.address, name, channels)
        if name == TREADMILL:
            tread = parse_treadmill(data)
            channels = {}
            for channel in ("speed_mps", "power_w", "hr_bpm", "distance_m"):
                _put(channels, channel, getattr(tread, channel))
            return Reading(now_s, self.address, name, channels)
        if name == WEIGHT_SCALE:
            return self._weight(data, now_s)
        return None

    def _weight(self, data: bytes, now_s: float) -> ScaleReading:
        w = parse_weight(data)
        values = {"weight_kg": w.weight_kg}
        if w.bmi is not None:
            values["bmi_kg_m2"] = w.bmi
        self._last_weight = (w.weight_kg, now_s)
        return ScaleReading(
            time=local_to_utc(w.time) if w.time else datetime.fromtimestamp(now_s, timezone.utc),
            sensor=self.address,
            values=values,
            user_index=_user(w.user_id),
        )

    def _body_composition(self, data: bytes, now_s: float, mono_s: float) -> list[ScaleReading]:
        if self._composition is None:
            self._composition = BodyCompositionAssembler()
        return [self._composition_reading(bc, now_s) for bc in self._composition.feed(data, mono_s)]

    def _composition_reading(self, bc: BodyComposition, now_s: float) -> ScaleReading:
        values: dict[str, float] = {}
        weight = bc.weight_kg
        for field, kind in (
            ("body_fat_pct", "body_fat_pct"),
            ("muscle_mass_kg", "muscle_mass_kg"),
            ("bmr_j", "basal_metabolic_rate_j"),
            ("weight_kg", "weight_kg"),
        ):
            value = getattr(bc, field, None)
            if value is not None:
                values[kind] = float(value)
        water = bc.body_water_mass_kg
        if water is not None and weight:
            values["body_water_pct"] = 100.0 * water / weight
        when = bc.time
        hint = weight
        if hint is None and self._last_weight and now_s - self._last_weight[1] < 60:
            hint = self._last_weight[0]  # the same weighing's weight packet, for attribution
        return ScaleReading(
            time=local_to_utc(when) if when else datetime.fromtimestamp(now_s, timezone.utc),
            sensor=self.address,
            values=values,
            user_index=_user(bc.user_id),
            weight_hint_kg=hint,
        )


def _put(channels: dict[str, float], name: str, value: float | None) -> None:
    if value is not None:
        channels[name] = float(value)


def _user(user_id: int | None) -> int | None:
    return None if user_id is None or user_id == 0xFF else int(user_id)

"""The canonical data model every source is turned into.

Plain frozen dataclasses. Units are SI (or named in the field when a non-SI unit is
the convention, e.g. ``temperature_c``); every timestamp is an aware UTC datetime,
checked on construction so a naive or local time can never slip into storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

DEFAULT_PERSON = "default"

# The standard sample channels, in storage order. Anything else in a stream
# (FIT developer fields, vendor extensions) is kept under its own name.
CHANNELS: tuple[str, ...] = (
    "lat_deg",
    "lon_deg",
    "altitude_m",
    "distance_m",
    "hr_bpm",
    "cadence_rpm",
    "power_w",
    "speed_mps",
    "temperature_c",
)
CHANNEL_UNITS: dict[str, str] = {
    "lat_deg": "deg",
    "lon_deg": "deg",
    "altitude_m": "m",
    "distance_m": "m",
    "hr_bpm": "bpm",
    "cadence_rpm": "rpm",
    "power_w": "W",
    "speed_mps": "m/s",
    "temperature_c": "degC",
}


def require_utc(value: datetime, what: str) -> datetime:
    """Return ``value`` normalised to UTC; refuse naive datetimes."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(timezone.utc)


def _utc_field(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if value is not None:
        object.__setattr__(obj, name, require_utc(value, f"{type(obj).__name__}.{name}"))


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where a record came from: the source plugin, the original bytes, and when."""

    source: str  # e.g. "file:fit", "file:gpx", "mqtt:<topic>"
    sha256: str | None  # SHA-256 of the original file, None for streamed data
    received_at: datetime
    name: str | None = None  # original file name or topic, for messages

    def __post_init__(self) -> None:
        _utc_field(self, "received_at")


@dataclass(frozen=True, kw_only=True)
class Device:
    manufacturer: str | None = None
    product: str | None = None  # product name when the profile knows it, else the id
    serial_number: int | None = None
    software_version: str | None = None


@dataclass(frozen=True, kw_only=True)
class Lap:
    start: datetime
    elapsed_s: float | None = None
    moving_s: float | None = None  # FIT total_timer_time; TCX TotalTimeSeconds
    distance_m: float | None = None
    ascent_m: float | None = None
    descent_m: float | None = None
    energy_j: float | None = None
    avg_hr_bpm: float | None = None
    max_hr_bpm: float | None = None
    avg_power_w: float | None = None
    max_power_w: float | None = None
    avg_cadence_rpm: float | None = None
    max_cadence_rpm: float | None = None
    avg_speed_mps: float | None = None
    max_speed_mps: float | None = None
    trigger: str | None = None  # manual, distance, time, session_end, ...

    def __post_init__(self) -> None:
        _utc_field(self, "start")


@dataclass(frozen=True, kw_only=True)
class SwimLength:
    start: datetime
    elapsed_s: float | None = None
    length_type: str = "active"  # "active" or "idle" (rest at the wall)
    strokes: int | None = None
    stroke: str | None = None  # freestyle, breaststroke, ...

    def __post_init__(self) -> None:
        _utc_field(self, "start")


@dataclass(frozen=True, kw_only=True)
class StrengthSet:
    start: datetime | None = None
    duration_s: float | None = None
    set_type: str = "active"  # "active" or "rest"
    category: str | None = None  # exercise category (bench_press, squat, ...)
    reps: int | None = None
    weight_kg: float | None = None

    def __post_init__(self) -> None:
        _utc_field(self, "start")


@dataclass(frozen=True, kw_only=True)
class SampleStream:
    """Columnar samples: ``offsets_s`` from the activity start plus equal-length columns.

    A gap is explicit: ``None`` in a column means "not measured at this instant",
    never zero. Column names are the standard :data:`CHANNELS` or, for anything else
    (developer fields, vendor extensions), their own name; ``units`` maps every
    non-standard column to its unit string when known.
    """

    offsets_s: list[float] = field(default_factory=list)
    columns: dict[str, list[float | None]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.offsets_s)
        for name, column in self.columns.items():
            if len(column) != n:
                raise ValueError(
                    f"sample column {name!r} has {len(column)} values for {n} offsets"
                )

    def __len__(self) -> int:
        return len(self.offsets_s)

    def column(self, name: str) -> list[float | None] | None:
        return self.columns.get(name)

    def values(self, name: str) -> list[float]:
        """The measured (non-gap, finite) values of one column."""
        column = self.columns.get(name)
        if column is None:
            return []
        return [v for v in column if v is not None and math.isfinite(v)]

    def unit(self, name: str) -> str | None:
        return CHANNEL_UNITS.get(name) or self.units.get(name)


@dataclass(frozen=True, kw_only=True)
class Activity:
    person: str = DEFAULT_PERSON
    sport: str = "generic"
    sub_sport: str | None = None
    start: datetime
    utc_offset_s: int | None = None  # local time = start + utc_offset_s, when the device knew it
    elapsed_s: float | None = None
    moving_s: float | None = None
    distance_m: float | None = None
    ascent_m: float | None = None
    descent_m: float | None = None
    energy_j: float | None = None
    avg_hr_bpm: float | None = None
    max_hr_bpm: float | None = None
    avg_power_w: float | None = None
    max_power_w: float | None = None
    avg_cadence_rpm: float | None = None
    max_cadence_rpm: float | None = None
    avg_speed_mps: float | None = None
    max_speed_mps: float | None = None
    name: str | None = None
    device: Device | None = None
    laps: tuple[Lap, ...] = ()
    lengths: tuple[SwimLength, ...] = ()
    sets: tuple[StrengthSet, ...] = ()
    samples: SampleStream = field(default_factory=SampleStream)
    hrv_rr_s: tuple[float, ...] = ()  # beat-to-beat intervals, seconds
    # The source's own identity for this recording (e.g. the FIT file_id tuple
    # plus the session index); used to recognise the same workout again.
    source_id: str | None = None
    # Multisport: every session of one file shares a group id, ordered by index.
    multisport_group: str | None = None
    multisport_index: int | None = None
    provenance: Provenance | None = None
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _utc_field(self, "start")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed_s or 0.0)


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """A non-activity value: weight, body composition, HRV, resting HR, steps, sleep.

    ``kind`` names the quantity and its unit (see :data:`MEASUREMENT_KINDS`).
    """

    person: str = DEFAULT_PERSON
    kind: str
    time: datetime
    value: float
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        _utc_field(self, "time")
        if self.kind not in MEASUREMENT_KINDS:
            raise ValueError(f"unknown measurement kind {self.kind!r}")


MEASUREMENT_KINDS: dict[str, str] = {
    "weight_kg": "body weight",
    "body_fat_pct": "body fat, percent of weight",
    "body_water_pct": "body water, percent of weight",
    "muscle_mass_kg": "muscle mass",
    "bone_mass_kg": "bone mass",
    "visceral_fat_rating": "visceral fat rating (device scale)",
    "bmi_kg_m2": "body mass index",
    "basal_metabolic_rate_j": "basal metabolic rate per day",
    "resting_hr_bpm": "resting heart rate",
    "hrv_rmssd_ms": "heart-rate variability, RMSSD",
    "hrv_sdnn_ms": "heart-rate variability, SDNN",
    "steps": "step count over the period ending at time",
    "sleep_s": "sleep duration",
    # Garmin all-day monitoring and sleep FIT files (connectors/garmin).
    "hr_bpm": "heart rate at time (all-day monitoring, not during a workout)",
    "stress_score": "Garmin stress level at time, 0 (rest) to 100",
    "steps_day_cumulative": "steps since local midnight up to time, as the device counts them (take the latest per day; never sum)",
    "sleep_light_s": "light sleep in the sleep period ending at time",
    "sleep_deep_s": "deep sleep in the sleep period ending at time",
    "sleep_rem_s": "REM sleep in the sleep period ending at time",
    "sleep_awake_s": "time awake in the sleep period ending at time",
    # Apple Health (connectors/apple_health); the additive ones are deduplicated across sources.
    "lean_mass_kg": "lean body mass",
    "vo2max_ml_kg_min": "VO2max, mL/(kg*min)",
    "spo2_pct": "blood oxygen saturation, percent",
    "respiratory_rate_bpm": "respiratory rate, breaths per minute",
    "distance_walking_running_m": "walking and running distance over the period ending at time",
    "distance_cycling_m": "cycling distance over the period ending at time",
    "active_energy_j": "active energy over the period ending at time",
    "basal_energy_j": "basal (resting) energy over the period ending at time",
    "flights_climbed": "flights of stairs climbed over the period ending at time",
}


@dataclass(frozen=True, kw_only=True)
class Decoded:
    """What a decoder found in one file.

    ``not_activity`` is set (and both lists are empty) when the file is valid but
    holds nothing fithub stores, e.g. a FIT settings file or a GPX route: an
    expected outcome reported as a rejection, not an error.
    """

    activities: list[Activity] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_activity: str | None = None

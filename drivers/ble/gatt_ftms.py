"""Fitness Machine Service data: Indoor Bike Data (0x2AD2) and Treadmill Data (0x2ACD).

Quirks every FTMS parser must get right:

- Flag bit 0 is "More Data" and works *inverted*: the instantaneous speed field
  is present when the bit is 0. A machine splits a long record over several
  notifications, the earlier ones with bit 0 set and no speed.
- Total distance is a u24.
- Energy comes as a triplet (total kcal u16, kcal per hour u16, kcal per minute
  u8); all-ones means "not available".
- Treadmill average pace: the SIG's FTMS 1.0 field table gives u8 (0.1 km/min)
  but treadmills exist that send two bytes; the width is decided by which one
  makes the payload length add up.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.ble.gatt_reader import Reader

INDOOR_BIKE_DATA = "Indoor Bike Data (0x2AD2)"
TREADMILL_DATA = "Treadmill Data (0x2ACD)"

_KMH = 1 / 3.6  # km/h -> m/s
_KCAL_J = 4184
_KM_PER_MIN = 1000 / 60  # km/min -> m/s
_RESERVED = 0xE000  # bits 13-15 in both characteristics


def _kmh_01(raw: int) -> float:
    return raw / 100 * _KMH


def _energy(r: Reader) -> tuple[int | None, int | None, int | None]:
    total = r.u16("total energy")
    per_hour = r.u16("energy per hour")
    per_minute = r.u8("energy per minute")
    return (
        None if total == 0xFFFF else total * _KCAL_J,
        None if per_hour == 0xFFFF else per_hour * _KCAL_J,
        None if per_minute == 0xFF else per_minute * _KCAL_J,
    )


@dataclass(frozen=True)
class IndoorBike:
    more_data: bool  # True: the record continues in the next notification; no speed in this one
    speed_mps: float | None = None
    avg_speed_mps: float | None = None
    cadence_rpm: float | None = None
    avg_cadence_rpm: float | None = None
    distance_m: int | None = None
    resistance_level: int | None = None  # unitless, the machine's own scale
    power_w: int | None = None
    avg_power_w: int | None = None
    energy_j: int | None = None
    energy_per_hour_j: int | None = None
    energy_per_minute_j: int | None = None
    hr_bpm: int | None = None
    met: float | None = None
    elapsed_s: int | None = None
    remaining_s: int | None = None


def parse_indoor_bike(data: bytes) -> IndoorBike:
    r = Reader(INDOOR_BIKE_DATA, data)
    flags = r.u16("flags")
    f: dict[str, object] = {"more_data": bool(flags & 0x0001)}
    if not flags & 0x0001:
        f["speed_mps"] = _kmh_01(r.u16("instantaneous speed"))
    if flags & 0x0002:
        f["avg_speed_mps"] = _kmh_01(r.u16("average speed"))
    if flags & 0x0004:
        f["cadence_rpm"] = r.u16("instantaneous cadence") / 2
    if flags & 0x0008:
        f["avg_cadence_rpm"] = r.u16("average cadence") / 2
    if flags & 0x0010:
        f["distance_m"] = r.u24("total distance")
    if flags & 0x0020:
        f["resistance_level"] = r.s16("resistance level")
    if flags & 0x0040:
        f["power_w"] = r.s16("instantaneous power")
    if flags & 0x0080:
        f["avg_power_w"] = r.s16("average power")
    if flags & 0x0100:
        f["energy_j"], f["energy_per_hour_j"], f["energy_per_minute_j"] = _energy(r)
    if flags & 0x0200:
        f["hr_bpm"] = r.u8("heart rate")
    if flags & 0x0400:
        f["met"] = r.u8("metabolic equivalent") / 10
    if flags & 0x0800:
        f["elapsed_s"] = r.u16("elapsed time")
    if flags & 0x1000:
        f["remaining_s"] = r.u16("remaining time")
    r.finish(flags, _RESERVED)
    return IndoorBike(**f)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Treadmill:
    more_data: bool
    speed_mps: float | None = None
    avg_speed_mps: float | None = None
    distance_m: int | None = None
    inclination_pct: float | None = None
    ramp_angle_deg: float | None = None
    elevation_gain_m: float | None = None  # "positive elevation gain"
    elevation_loss_m: float | None = None  # "negative elevation gain", a positive number
    # FTMS "pace" is a speed in km/min (0.1 resolution); given here in m/s.
    pace_mps: float | None = None
    avg_pace_mps: float | None = None
    energy_j: int | None = None
    energy_per_hour_j: int | None = None
    energy_per_minute_j: int | None = None
    hr_bpm: int | None = None
    met: float | None = None
    elapsed_s: int | None = None
    remaining_s: int | None = None
    force_n: int | None = None  # force on belt
    power_w: int | None = None


# Field sizes of Treadmill Data by flag bit, the average pace (bit 6) at its u8 width.
_TREADMILL_SIZES = {1: 2, 2: 3, 3: 4, 4: 4, 5: 1, 6: 1, 7: 5, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4}


def _treadmill_avg_pace_width(flags: int, length: int) -> int:
    expected = 2 + (0 if flags & 1 else 2)
    expected += sum(size for bit, size in _TREADMILL_SIZES.items() if flags & (1 << bit))
    return 2 if flags & 0x0040 and length == expected + 1 else 1


def parse_treadmill(data: bytes) -> Treadmill:
    r = Reader(TREADMILL_DATA, data)
    flags = r.u16("flags")
    f: dict[str, object] = {"more_data": bool(flags & 0x0001)}
    if not flags & 0x0001:
        f["speed_mps"] = _kmh_01(r.u16("instantaneous speed"))
    if flags & 0x0002:
        f["avg_speed_mps"] = _kmh_01(r.u16("average speed"))
    if flags & 0x0004:
        f["distance_m"] = r.u24("total distance")
    if flags & 0x0008:
        f["inclination_pct"] = r.s16("inclination") / 10
        f["ramp_angle_deg"] = r.s16("ramp angle setting") / 10
    if flags & 0x0010:
        f["elevation_gain_m"] = r.u16("positive elevation gain") / 10
        f["elevation_loss_m"] = r.u16("negative elevation gain") / 10
    if flags & 0x0020:
        f["pace_mps"] = r.u8("instantaneous pace") / 10 * _KM_PER_MIN
    if flags & 0x0040:
        width = _treadmill_avg_pace_width(flags, len(r.data))
        f["avg_pace_mps"] = r.uint(width, "average pace") / 10 * _KM_PER_MIN
    if flags & 0x0080:
        f["energy_j"], f["energy_per_hour_j"], f["energy_per_minute_j"] = _energy(r)
    if flags & 0x0100:
        f["hr_bpm"] = r.u8("heart rate")
    if flags & 0x0200:
        f["met"] = r.u8("metabolic equivalent") / 10
    if flags & 0x0400:
        f["elapsed_s"] = r.u16("elapsed time")
    if flags & 0x0800:
        f["remaining_s"] = r.u16("remaining time")
    if flags & 0x1000:
        f["force_n"] = r.s16("force on belt")
        f["power_w"] = r.s16("power output")
    r.finish(flags, _RESERVED)
    return Treadmill(**f)  # type: ignore[arg-type]

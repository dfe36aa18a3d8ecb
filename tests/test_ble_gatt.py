"""The BLE GATT parsers against packets built from the specifications.

The encoder here is written independently of ``drivers.ble`` from the field
tables of the Bluetooth SIG (GATT Specification Supplement / the SIG's
characteristic XML, FTMS 1.0): a table per characteristic lists each field's
presence flag, wire format and scale to SI. The tests enumerate every flag
combination, encode random raw values with ``struct``, parse, and compare; the
property tests do the same with Hypothesis and feed random bytes to every parser.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble import (
    PARSERS,
    BodyCompositionAssembler,
    CscCalculator,
    CscMeasurement,
    CyclingPowerCalculator,
    GattError,
    MeasurementFailed,
    parse_battery,
    parse_body_composition,
    parse_csc,
    parse_cycling_power,
    parse_heart_rate,
    parse_indoor_bike,
    parse_rsc,
    parse_treadmill,
    parse_weight,
)
from drivers.ble import uuids
from hub.errors import DeviceError

# ---------------------------------------------------------------------------
# The independent encoder: field tables from the specifications.

LB = 0.45359237  # kg per pound (exact, by definition)
INCH = 0.0254  # m per inch
KCAL = 4184  # J per kcal (thermochemical, the one FTMS uses)

_STRUCT = {"u8": "<B", "s8": "<b", "u16": "<H", "s16": "<h", "u32": "<I"}
_RANGES = {
    "u8": (0, 0xFF),
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u24": (0, 0xFFFFFF),
    "u32": (0, 0xFFFFFFFF),
    "u12x2": (0, 0xFFF),
}


@dataclass(frozen=True)
class Field:
    name: str  # attribute of the parsed value; tuple-valued for the two-angle field
    fmt: str  # u8 u16 s16 u24 u32, "u12x2" (two 12-bit values in 3 bytes), "datetime"
    scale: Callable[[int, int], float] | float = 1  # raw -> SI, or f(raw, flags)
    when: int | None = None  # flag bit(s) making the field present; None: always
    inverted: bool = False  # present when the bit is *clear* (FTMS "More Data")
    avoid: tuple[int, ...] = ()  # raw values with a special meaning, tested separately

    def present(self, flags: int) -> bool:
        if self.when is None:
            return True
        return not flags & self.when if self.inverted else bool(flags & self.when)

    def pack(self, raw: object) -> bytes:
        if self.fmt == "u24":
            return struct.pack("<I", raw)[:3]
        if self.fmt == "u12x2":
            hi_lo = raw  # (max, min): max in the low 12 bits, e.g. max 0xABC min 0x123 -> 0x123ABC
            return struct.pack("<I", hi_lo[0] | hi_lo[1] << 12)[:3]  # type: ignore[index]
        if self.fmt == "datetime":
            t: datetime = raw  # type: ignore[assignment]
            return struct.pack("<HBBBBB", t.year, t.month, t.day, t.hour, t.minute, t.second)
        return struct.pack(_STRUCT[self.fmt], raw)

    def si(self, raw: object, flags: int) -> object:
        if self.fmt in ("datetime", "u12x2"):
            return raw
        if callable(self.scale):
            return self.scale(raw, flags)  # type: ignore[arg-type]
        return raw * self.scale  # type: ignore[operator]

    def random_raw(self, rng: random.Random) -> object:
        if self.fmt == "datetime":
            return datetime(rng.randint(1582, 9999), rng.randint(1, 12), rng.randint(1, 28),
                            rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
        lo, hi = _RANGES[self.fmt]
        if self.fmt == "u12x2":
            return (rng.randint(lo, hi), rng.randint(lo, hi))
        while True:
            v = rng.randint(lo, hi)
            if v not in self.avoid:
                return v


@dataclass(frozen=True)
class Spec:
    parse: Callable[[bytes], object]
    flag_fmt: str  # "<B" or "<H"
    known_bits: int  # flag bits the spec defines
    fields: tuple[Field, ...]
    flag_values: Callable[[int], dict[str, object]]  # attributes that come from flag bits alone

    def encode(self, flags: int, raw: dict[str, object]) -> bytes:
        out = struct.pack(self.flag_fmt, flags)
        for f in self.fields:
            if f.present(flags):
                out += f.pack(raw[f.name])
        return out

    def expected(self, flags: int, raw: dict[str, object]) -> dict[str, object]:
        exp: dict[str, object] = {}
        for f in self.fields:
            if f.fmt == "u12x2":
                names = f.name.split("+")
                vals = raw[f.name] if f.present(flags) else (None, None)
                exp.update(zip(names, vals))  # type: ignore[arg-type]
            else:
                exp[f.name] = f.si(raw[f.name], flags) if f.present(flags) else None
        exp.update(self.flag_values(flags))
        return exp

    def random_raw(self, rng: random.Random) -> dict[str, object]:
        return {f.name: f.random_raw(rng) for f in self.fields}


def kmh(raw: int) -> float:
    return raw / 100 / 3.6


def mass(raw: int, flags: int) -> float:
    return raw * 0.01 * LB if flags & 1 else raw * 0.005


def height(raw: int, flags: int) -> float:
    return raw * 0.1 * INCH if flags & 1 else raw * 0.001


def user(raw: int) -> int | None:
    return None if raw == 0xFF else raw


CSC = Spec(
    parse_csc, "<B", 0x03,
    (
        Field("wheel_revs", "u32", when=0x01),
        Field("wheel_time_ticks", "u16", when=0x01),
        Field("crank_revs", "u16", when=0x02),
        Field("crank_time_ticks", "u16", when=0x02),
    ),
    lambda flags: {},
)

CYCLING_POWER = Spec(
    parse_cycling_power, "<H", 0x1FFF,
    (
        Field("power_w", "s16"),
        Field("balance_pct", "u8", 0.5, when=0x0001, avoid=tuple(range(201, 256))),
        Field("torque_nm", "u16", 1 / 32, when=0x0004),
        Field("wheel_revs", "u32", when=0x0010),
        Field("wheel_time_ticks", "u16", when=0x0010),
        Field("crank_revs", "u16", when=0x0020),
        Field("crank_time_ticks", "u16", when=0x0020),
        Field("max_force_n", "s16", when=0x0040),
        Field("min_force_n", "s16", when=0x0040),
        Field("max_torque_nm", "s16", 1 / 32, when=0x0080),
        Field("min_torque_nm", "s16", 1 / 32, when=0x0080),
        Field("max_angle_deg+min_angle_deg", "u12x2", when=0x0100),
        Field("top_dead_spot_deg", "u16", when=0x0200),
        Field("bottom_dead_spot_deg", "u16", when=0x0400),
        Field("energy_j", "u16", 1000, when=0x0800),
    ),
    lambda flags: {
        "balance_left_ref": bool(flags & 0x0002) if flags & 0x0001 else None,
        "torque_from_crank": bool(flags & 0x0008) if flags & 0x0004 else None,
        "offset_compensation": bool(flags & 0x1000),
    },
)

RSC = Spec(
    parse_rsc, "<B", 0x07,
    (
        Field("speed_mps", "u16", 1 / 256),
        Field("cadence_spm", "u8"),
        Field("stride_m", "u16", 1 / 100, when=0x01),
        Field("distance_m", "u32", 1 / 10, when=0x02),
    ),
    lambda flags: {"running": bool(flags & 0x04)},
)

_ENERGY_NA = {"u16": (0xFFFF,), "u8": (0xFF,)}

INDOOR_BIKE = Spec(
    parse_indoor_bike, "<H", 0x1FFF,
    (
        Field("speed_mps", "u16", lambda r, f: kmh(r), when=0x0001, inverted=True),
        Field("avg_speed_mps", "u16", lambda r, f: kmh(r), when=0x0002),
        Field("cadence_rpm", "u16", 0.5, when=0x0004),
        Field("avg_cadence_rpm", "u16", 0.5, when=0x0008),
        Field("distance_m", "u24", when=0x0010),
        Field("resistance_level", "s16", when=0x0020),
        Field("power_w", "s16", when=0x0040),
        Field("avg_power_w", "s16", when=0x0080),
        Field("energy_j", "u16", KCAL, when=0x0100, avoid=_ENERGY_NA["u16"]),
        Field("energy_per_hour_j", "u16", KCAL, when=0x0100, avoid=_ENERGY_NA["u16"]),
        Field("energy_per_minute_j", "u8", KCAL, when=0x0100, avoid=_ENERGY_NA["u8"]),
        Field("hr_bpm", "u8", when=0x0200),
        Field("met", "u8", 0.1, when=0x0400),
        Field("elapsed_s", "u16", when=0x0800),
        Field("remaining_s", "u16", when=0x1000),
    ),
    lambda flags: {"more_data": bool(flags & 1)},
)

TREADMILL = Spec(
    parse_treadmill, "<H", 0x1FFF,
    (
        Field("speed_mps", "u16", lambda r, f: kmh(r), when=0x0001, inverted=True),
        Field("avg_speed_mps", "u16", lambda r, f: kmh(r), when=0x0002),
        Field("distance_m", "u24", when=0x0004),
        Field("inclination_pct", "s16", 0.1, when=0x0008),
        Field("ramp_angle_deg", "s16", 0.1, when=0x0008),
        Field("elevation_gain_m", "u16", 0.1, when=0x0010),
        Field("elevation_loss_m", "u16", 0.1, when=0x0010),
        Field("pace_mps", "u8", 0.1 * 1000 / 60, when=0x0020),  # km/min, 0.1
        Field("avg_pace_mps", "u8", 0.1 * 1000 / 60, when=0x0040),
        Field("energy_j", "u16", KCAL, when=0x0080, avoid=_ENERGY_NA["u16"]),
        Field("energy_per_hour_j", "u16", KCAL, when=0x0080, avoid=_ENERGY_NA["u16"]),
        Field("energy_per_minute_j", "u8", KCAL, when=0x0080, avoid=_ENERGY_NA["u8"]),
        Field("hr_bpm", "u8", when=0x0100),
        Field("met", "u8", 0.1, when=0x0200),
        Field("elapsed_s", "u16", when=0x0400),
        Field("remaining_s", "u16", when=0x0800),
        Field("force_n", "s16", when=0x1000),
        Field("power_w", "s16", when=0x1000),
    ),
    lambda flags: {"more_data": bool(flags & 1)},
)

WEIGHT = Spec(
    parse_weight, "<B", 0x0F,
    (
        Field("weight_kg", "u16", mass, avoid=(0xFFFF,)),
        Field("time", "datetime", when=0x02),
        Field("user_id", "u8", lambda r, f: user(r), when=0x04),
        Field("bmi", "u16", 0.1, when=0x08),
        Field("height_m", "u16", height, when=0x08),
    ),
    lambda flags: {"imperial": bool(flags & 1)},
)

BODY_COMPOSITION = Spec(
    parse_body_composition, "<H", 0x1FFF,
    (
        Field("body_fat_pct", "u16", 0.1, avoid=(0xFFFF,)),
        Field("time", "datetime", when=0x0002),
        Field("user_id", "u8", lambda r, f: user(r), when=0x0004),
        Field("bmr_j", "u16", 1000, when=0x0008),
        Field("muscle_pct", "u16", 0.1, when=0x0010),
        Field("muscle_mass_kg", "u16", mass, when=0x0020),
        Field("fat_free_mass_kg", "u16", mass, when=0x0040),
        Field("soft_lean_mass_kg", "u16", mass, when=0x0080),
        Field("body_water_mass_kg", "u16", mass, when=0x0100),
        Field("impedance_ohm", "u16", 0.1, when=0x0200),
        Field("weight_kg", "u16", mass, when=0x0400),
        Field("height_m", "u16", height, when=0x0800),
    ),
    lambda flags: {"imperial": bool(flags & 1), "multi_packet": bool(flags & 0x1000)},
)

SPECS = {
    "csc": CSC,
    "cycling_power": CYCLING_POWER,
    "rsc": RSC,
    "indoor_bike": INDOOR_BIKE,
    "treadmill": TREADMILL,
    "weight": WEIGHT,
    "body_composition": BODY_COMPOSITION,
}


def assert_matches(value: object, expected: dict[str, object], packet: bytes) -> None:
    for name, want in expected.items():
        got = getattr(value, name)
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (name, packet.hex())
        else:
            assert got == want, (name, packet.hex())


# ---------------------------------------------------------------------------
# Every flag combination of every characteristic.


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_flag_combination(name: str) -> None:
    spec = SPECS[name]
    rng = random.Random(name)
    for flags in range(spec.known_bits + 1):
        raw = spec.random_raw(rng)
        packet = spec.encode(flags, raw)
        assert_matches(spec.parse(packet), spec.expected(flags, raw), packet)


def _heart_rate_packet(flags: int, bpm: int, energy_kj: int, rr: list[int]) -> bytes:
    out = struct.pack("<B", flags) + struct.pack("<H" if flags & 1 else "<B", bpm)
    if flags & 0x08:
        out += struct.pack("<H", energy_kj)
    if flags & 0x10:
        out += b"".join(struct.pack("<H", t) for t in rr)
    return out


@pytest.mark.parametrize("flags", range(32))
@pytest.mark.parametrize("n_rr", [0, 1, 4, 9])
def test_heart_rate_every_flag_combination(flags: int, n_rr: int) -> None:
    rng = random.Random(flags * 100 + n_rr)
    bpm = rng.randint(0, 0xFFFF if flags & 1 else 0xFF)
    energy = rng.randint(0, 0xFFFF)
    rr = [rng.randint(0, 0xFFFF) for _ in range(n_rr)]
    hr = parse_heart_rate(_heart_rate_packet(flags, bpm, energy, rr))
    assert hr.bpm == bpm
    assert hr.contact == {0: None, 1: None, 2: False, 3: True}[(flags >> 1) & 3]
    assert hr.energy_j == (energy * 1000 if flags & 0x08 else None)
    sent = rr if flags & 0x10 else []
    assert hr.rr_ticks == tuple(sent)
    assert hr.rr_s == pytest.approx(tuple(t / 1024 for t in sent))


def test_heart_rate_known_vectors() -> None:
    # u8 bpm 72, contact detected, 2 RR intervals of 0.8 s and 0.75 s
    hr = parse_heart_rate(bytes([0b10110, 72]) + struct.pack("<HH", 819, 768))
    assert (hr.bpm, hr.contact) == (72, True)
    assert hr.rr_s == pytest.approx((819 / 1024, 0.75))
    # "supported but not detected" is not contact (the pycycling bug)
    assert parse_heart_rate(bytes([0b00100, 0])).contact is False
    # u16 bpm and energy in kJ -> J
    hr = parse_heart_rate(bytes([0x09]) + struct.pack("<HH", 301, 1234))
    assert (hr.bpm, hr.energy_j, hr.rr_s) == (301, 1_234_000, ())


def test_heart_rate_odd_rr_list_is_an_error() -> None:
    with pytest.raises(GattError, match="odd length"):
        parse_heart_rate(bytes([0x10, 60, 0x00, 0x04, 0x01]))


# ---------------------------------------------------------------------------
# FTMS specifics.


def test_ftms_more_data_bit_is_inverted() -> None:
    # bit 0 clear: speed present (10.00 km/h); set: absent, next field follows the flags
    bike = parse_indoor_bike(struct.pack("<HH", 0x0000, 1000))
    assert bike.speed_mps == pytest.approx(10 / 3.6) and not bike.more_data
    bike = parse_indoor_bike(struct.pack("<Hh", 0x0041, 250))
    assert bike.more_data and bike.speed_mps is None and bike.power_w == 250
    with pytest.raises(GattError):  # flags 0x0000 promise a speed the packet lacks
        parse_indoor_bike(struct.pack("<H", 0x0000))
    mill = parse_treadmill(struct.pack("<H", 0x0001))
    assert mill.more_data and mill.speed_mps is None


def test_ftms_u24_distance() -> None:
    bike = parse_indoor_bike(struct.pack("<HH", 0x0010, 0) + (0x123456).to_bytes(3, "little"))
    assert bike.distance_m == 0x123456
    mill = parse_treadmill(struct.pack("<H", 0x0005) + (0xFFFFFE).to_bytes(3, "little"))
    assert mill.distance_m == 0xFFFFFE


@pytest.mark.parametrize("parse, flag", [(parse_indoor_bike, 0x0101), (parse_treadmill, 0x0081)])
def test_ftms_energy_not_available(parse: Callable[[bytes], object], flag: int) -> None:
    value = parse(struct.pack("<HHHB", flag, 0xFFFF, 0xFFFF, 0xFF))
    assert (value.energy_j, value.energy_per_hour_j, value.energy_per_minute_j) == (None, None, None)
    value = parse(struct.pack("<HHHB", flag, 500, 600, 10))
    assert (value.energy_j, value.energy_per_hour_j, value.energy_per_minute_j) == (
        500 * KCAL, 600 * KCAL, 10 * KCAL)


@pytest.mark.parametrize("with_inst_pace", [False, True])
@pytest.mark.parametrize("with_energy", [False, True])
def test_treadmill_two_byte_average_pace(with_inst_pace: bool, with_energy: bool) -> None:
    # Some treadmills send Average Pace as u16; the payload length tells.
    flags = 0x0040 | 0x0100 | (0x0020 if with_inst_pace else 0) | (0x0080 if with_energy else 0)
    body = struct.pack("<HH", flags, 800)  # speed 8 km/h
    body += struct.pack("<B", 7) if with_inst_pace else b""
    body += struct.pack("<H", 300)  # avg pace 30.0 km/min, does not fit a u8
    body += struct.pack("<HHB", 100, 200, 3) if with_energy else b""
    body += struct.pack("<B", 150)  # heart rate
    mill = parse_treadmill(body)
    assert mill.avg_pace_mps == pytest.approx(30.0 * 1000 / 60)
    assert mill.hr_bpm == 150
    assert mill.pace_mps == (pytest.approx(0.7 * 1000 / 60) if with_inst_pace else None)
    # the same record with the spec's u8 width parses too
    narrow = body.replace(struct.pack("<H", 300), struct.pack("<B", 30), 1)
    assert parse_treadmill(narrow).avg_pace_mps == pytest.approx(30 * 100 / 60)


# ---------------------------------------------------------------------------
# Scales.


def test_imperial_weight() -> None:
    # 150.00 lb, BMI 21.5, 70.0 in, user 3, time stamp
    packet = struct.pack("<BH", 0x0F, 15000) + struct.pack("<HBBBBB", 2024, 3, 9, 7, 5, 0)
    packet += struct.pack("<BHH", 3, 215, 700)
    w = parse_weight(packet)
    assert w.imperial
    assert w.weight_kg == pytest.approx(68.0388555)
    assert w.height_m == pytest.approx(1.778)
    assert (w.bmi, w.user_id, w.time) == (21.5, 3, datetime(2024, 3, 9, 7, 5, 0))


def test_si_weight_resolution() -> None:
    w = parse_weight(struct.pack("<BH", 0x00, 14000))  # 14000 x 5 g
    assert not w.imperial and w.weight_kg == pytest.approx(70.0)
    assert (w.time, w.user_id, w.bmi, w.height_m) == (None, None, None, None)


def test_weight_measurement_failed() -> None:
    with pytest.raises(MeasurementFailed, match="failed") as info:
        parse_weight(struct.pack("<BH", 0x00, 0xFFFF))
    assert isinstance(info.value, GattError) and isinstance(info.value, DeviceError)
    assert "Weight Measurement (0x2A9D)" in str(info.value)


def test_unknown_user_and_unknown_date() -> None:
    packet = struct.pack("<BH", 0x06, 14000) + bytes(7) + b"\xff"
    w = parse_weight(packet)
    assert w.user_id is None and w.time is None  # 0xFF "unknown user"; year 0 "unknown"


def test_invalid_date_is_an_error() -> None:
    packet = struct.pack("<BH", 0x02, 14000) + struct.pack("<HBBBBB", 2024, 2, 30, 7, 0, 0)
    with pytest.raises(GattError, match="not a valid date"):
        parse_weight(packet)


def test_body_composition_failed() -> None:
    with pytest.raises(MeasurementFailed):
        parse_body_composition(struct.pack("<HH", 0x0000, 0xFFFF))


def _body(flags: int, fat: int, *fields: bytes) -> bytes:
    return struct.pack("<HH", flags, fat) + b"".join(fields)


STAMP = struct.pack("<HBBBBB", 2025, 1, 2, 6, 30, 0)


def test_body_composition_two_packets_merge() -> None:
    first = _body(0x1000 | 0x0002 | 0x0004 | 0x0400, 215, STAMP, b"\x01", struct.pack("<H", 15000))
    second = _body(0x1000 | 0x0004 | 0x0010 | 0x0100 | 0x0200, 215, b"\x01",
                   struct.pack("<HHH", 402, 8000, 5123))
    asm = BodyCompositionAssembler()
    assert asm.feed(first, now_s=0.0) == ()
    (m,) = asm.feed(second, now_s=0.4)
    assert m.complete and m.multi_packet
    assert m.body_fat_pct == pytest.approx(21.5)
    assert m.time == datetime(2025, 1, 2, 6, 30) and m.user_id == 1
    assert m.weight_kg == pytest.approx(75.0)
    assert m.muscle_pct == pytest.approx(40.2)
    assert m.body_water_mass_kg == pytest.approx(40.0)
    assert m.impedance_ohm == pytest.approx(512.3)
    assert asm.flush() == ()


def test_body_composition_single_packet_passes_through() -> None:
    asm = BodyCompositionAssembler()
    (m,) = asm.feed(_body(0x0001 | 0x0400, 180, struct.pack("<H", 16000)), now_s=0.0)
    assert m.complete and not m.multi_packet and m.imperial
    assert m.weight_kg == pytest.approx(160 * LB)


def test_body_composition_orphan_half_is_kept_not_lost() -> None:
    asm = BodyCompositionAssembler(timeout_s=5)
    half = _body(0x1000 | 0x0400, 200, struct.pack("<H", 14000))
    assert asm.feed(half, now_s=0.0) == ()
    # a lone single-packet measurement arrives: the half comes out first, marked incomplete
    whole = _body(0x0000, 190)
    out = asm.feed(whole, now_s=1.0)
    assert [m.complete for m in out] == [False, True]
    assert out[0].weight_kg == pytest.approx(70.0) and out[1].body_fat_pct == pytest.approx(19.0)
    # a half older than the timeout is not joined with a new first half
    assert asm.feed(half, now_s=10.0) == ()
    out = asm.feed(half, now_s=20.0)
    assert [m.complete for m in out] == [False]
    assert [m.complete for m in asm.flush()] == [False]
    assert asm.flush() == ()


def test_body_composition_halves_of_different_users_do_not_merge() -> None:
    asm = BodyCompositionAssembler()
    a = _body(0x1000 | 0x0004, 200, b"\x01")
    b = _body(0x1000 | 0x0004, 200, b"\x02")
    assert asm.feed(a, 0.0) == ()
    (orphan,) = asm.feed(b, 0.5)
    assert orphan.user_id == 1 and not orphan.complete
    (last,) = asm.flush()
    assert last.user_id == 2


def test_body_composition_bad_packet_keeps_pending_half() -> None:
    asm = BodyCompositionAssembler()
    first = _body(0x1000 | 0x0004, 200, b"\x01")
    assert asm.feed(first, 0.0) == ()
    with pytest.raises(GattError):
        asm.feed(b"\x00\x10\xc8", 0.1)  # cut short inside the body fat field
    (m,) = asm.feed(_body(0x1000 | 0x0400, 200, struct.pack("<H", 14000)), 0.2)
    assert m.complete and m.user_id == 1 and m.weight_kg == pytest.approx(70.0)


# ---------------------------------------------------------------------------
# Battery, errors, reserved bits.


def test_battery() -> None:
    assert parse_battery(b"\x57") == 87
    for bad in (b"", b"\x65", b"\x10\x00"):
        with pytest.raises(GattError, match="Battery Level"):
            parse_battery(bad)


def test_extreme_angles_example_from_the_spec() -> None:
    # "if the Maximum Angle is 0xABC and the Minimum Angle is 0x123, the transmitted value is 0x123ABC"
    cp = parse_cycling_power(struct.pack("<Hh", 0x0100, 0) + (0x123ABC).to_bytes(3, "little"))
    assert (cp.max_angle_deg, cp.min_angle_deg) == (0xABC, 0x123)


def test_trailing_bytes_rejected_unless_a_reserved_bit_is_set() -> None:
    with pytest.raises(GattError, match="unexpected byte"):
        parse_csc(b"\x00\x01")
    with pytest.raises(GattError, match="unexpected byte"):
        parse_indoor_bike(struct.pack("<HHB", 0x0000, 500, 9))
    # a newer revision's field behind a reserved bit: the known fields still decode
    bike = parse_indoor_bike(struct.pack("<HHB", 0x2000, 500, 9))
    assert bike.speed_mps == pytest.approx(5 / 3.6)
    assert parse_rsc(struct.pack("<BHBB", 0x08, 512, 80, 1)).speed_mps == 2.0


def test_error_names_characteristic_field_and_packet() -> None:
    with pytest.raises(GattError) as info:
        parse_cycling_power(struct.pack("<Hh", 0x0020, 100) + b"\x01\x00")
    err = info.value
    assert err.characteristic == "Cycling Power Measurement (0x2A63)"
    assert "last crank event time" in err.why
    assert "20 00 64 00 01 00" in str(err)


@pytest.mark.parametrize("parse", list(PARSERS.values()))
def test_non_bytes_input(parse: Callable[[bytes], object]) -> None:
    for bad in (None, "abc", 12, [1, 2]):
        with pytest.raises(GattError):
            parse(bad)  # type: ignore[arg-type]


def test_parsers_table_and_uuids() -> None:
    assert uuids.HEART_RATE_MEASUREMENT == "00002a37-0000-1000-8000-00805f9b34fb"
    assert uuids.short(uuids.INDOOR_BIKE_DATA) == 0x2AD2
    assert uuids.short("6e400001-b5a3-f393-e0a9-e50e24dcca9e") is None
    assert PARSERS[uuids.CSC_MEASUREMENT] is parse_csc
    assert uuids.SERVICE_NAMES[uuids.CYCLING_POWER_SERVICE] == "cycling_power"


# ---------------------------------------------------------------------------
# Property tests.


@st.composite
def spec_packets(draw: st.DrawFn, spec: Spec) -> tuple[int, dict[str, object], bytes]:
    flags = draw(st.integers(0, spec.known_bits))
    seed = draw(st.integers(0, 2**32 - 1))
    raw = spec.random_raw(random.Random(seed))
    return flags, raw, spec.encode(flags, raw)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_property_roundtrip(name: str) -> None:
    spec = SPECS[name]

    @settings(max_examples=150, deadline=None)
    @given(spec_packets(spec))
    def check(case: tuple[int, dict[str, object], bytes]) -> None:
        flags, raw, packet = case
        assert_matches(spec.parse(packet), spec.expected(flags, raw), packet)

    check()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_property_truncated_packets_only_raise_gatt_error(name: str) -> None:
    spec = SPECS[name]

    @settings(max_examples=100, deadline=None)
    @given(spec_packets(spec), st.data())
    def check(case: tuple[int, dict[str, object], bytes], data: st.DataObject) -> None:
        _, _, packet = case
        cut = data.draw(st.integers(0, len(packet) - 1))
        with pytest.raises(GattError):
            spec.parse(packet[:cut])

    check()


@pytest.mark.parametrize("uuid", sorted(PARSERS))
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=48))
def test_property_random_bytes_only_raise_gatt_error(uuid: str, data: bytes) -> None:
    try:
        PARSERS[uuid](data)
    except GattError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=8), st.floats(0, 100))
def test_property_assembler_random_packets(packets: list[bytes], step: float) -> None:
    asm = BodyCompositionAssembler()
    for i, p in enumerate(packets):
        try:
            asm.feed(p, i * step)
        except GattError:
            pass
    asm.flush()


@settings(max_examples=200, deadline=None)
@given(
    flags=st.integers(0, 31),
    bpm=st.integers(0, 0xFFFF),
    energy=st.integers(0, 0xFFFF),
    rr=st.lists(st.integers(0, 0xFFFF), max_size=12),
)
def test_property_heart_rate_roundtrip(flags: int, bpm: int, energy: int, rr: list[int]) -> None:
    if not flags & 1:
        bpm &= 0xFF
    hr = parse_heart_rate(_heart_rate_packet(flags, bpm, energy, rr))
    assert hr.bpm == bpm
    assert hr.rr_ticks == (tuple(rr) if flags & 0x10 else ())


# ---------------------------------------------------------------------------
# Speed and cadence from revolution counters.


def _csc(wheel_revs: int | None, wheel_t: int | None, crank_revs: int | None = None,
         crank_t: int | None = None) -> CscMeasurement:
    flags = (1 if wheel_revs is not None else 0) | (2 if crank_revs is not None else 0)
    packet = struct.pack("<B", flags)
    if wheel_revs is not None:
        packet += struct.pack("<IH", wheel_revs % 2**32, wheel_t % 2**16)
    if crank_revs is not None:
        packet += struct.pack("<HH", crank_revs % 2**16, crank_t % 2**16)
    return parse_csc(packet)


def _simulate(rate_hz: float, t_s: float, rev0: int, tick0: int, ticks_per_s: int) -> tuple[int, int]:
    """Cumulative revolutions and last event time after t_s at a constant rate."""
    revs = int(t_s * rate_hz)
    last_event_s = revs / rate_hz
    return rev0 + revs, tick0 + round(last_event_s * ticks_per_s)


@pytest.mark.parametrize("rev0, tick0", [(0, 0), (2**32 - 5, 65_000), (123_456, 30_000)])
def test_csc_speed_and_cadence_across_rollovers(rev0: int, tick0: int) -> None:
    calc = CscCalculator(circumference_m=2.096)
    wheel_hz = 8.0 / 2.096  # 8 m/s
    crank_hz = 90 / 60
    crank0 = (rev0 + 65_530) % 2**16  # the u16 crank counter wraps during the test
    results = []
    for second in range(0, 200):  # 200 s: the u16 event time wraps three times
        wr, wt = _simulate(wheel_hz, second, rev0, tick0, 1024)
        cr, ct = _simulate(crank_hz, second, crank0, tick0, 1024)
        results.append(calc.update(_csc(wr, wt, cr, ct), now_s=float(second)))
    assert results[0].speed_mps is None and results[0].cadence_rpm is None
    for r in results[2:]:
        assert r.speed_mps == pytest.approx(8.0, rel=0.02)
        assert r.cadence_rpm == pytest.approx(90, rel=0.02)
    assert results[-1].distance_m == pytest.approx(8.0 * 199, rel=0.01)


def test_csc_no_new_event_holds_then_decays_to_zero() -> None:
    calc = CscCalculator(circumference_m=2.0, hold_s=2.0, stop_s=4.0)
    calc.update(_csc(100, 0), 0.0)
    assert calc.update(_csc(102, 1024), 1.0).speed_mps == pytest.approx(4.0)  # 2 revs in 1 s
    same = _csc(102, 1024)  # the wheel stopped: the sensor repeats its last event
    assert calc.update(same, 2.0).speed_mps == pytest.approx(4.0)  # held
    # after the hold: at most one revolution since the last event, 2 m / 2.5 s
    assert calc.update(same, 3.5).speed_mps == pytest.approx(2.0 / 2.5)
    assert calc.update(same, 5.0).speed_mps == 0.0
    assert calc.update(same, 9.0).speed_mps == 0.0
    # moving again: a real rate, not the stale one
    assert calc.update(_csc(103, 1024 + 512), 10.0).speed_mps is not None


def test_standing_still_from_the_start_reads_zero_not_unknown() -> None:
    calc = CscCalculator(circumference_m=2.0, stop_s=4.0)
    parked = _csc(500, 7000, 20, 9000)
    assert calc.update(parked, 0.0).speed_mps is None
    assert calc.update(parked, 1.0).cadence_rpm is None  # too early to tell
    rates = calc.update(parked, 4.5)
    assert (rates.speed_mps, rates.cadence_rpm) == (0.0, 0.0)


def test_crank_gap_longer_than_event_time_wrap() -> None:
    # Coasting 100 s (the u16 event time wraps after 64 s) and pedalling again:
    # the wall clock picks the right number of wraps instead of a 36 s gap.
    calc = CscCalculator(circumference_m=2.1)
    calc.update(_csc(None, None, 10, 0), 0.0)
    calc.update(_csc(None, None, 11, 1024), 1.0)
    r = calc.update(_csc(None, None, 12, 1024 + 100 * 1024), 101.0)
    assert r.cadence_rpm == pytest.approx(60 / 100, rel=0.01)


def test_counter_reset_is_not_a_speed_spike() -> None:
    calc = CscCalculator(circumference_m=2.1)
    calc.update(_csc(5000, 0, 300, 0), 0.0)
    before = calc.update(_csc(5004, 1024, 301, 1024), 1.0)
    after = calc.update(_csc(3, 2048, 1, 2048), 2.0)  # the sensor rebooted
    assert after.speed_mps == pytest.approx(before.speed_mps)
    assert after.cadence_rpm == pytest.approx(before.cadence_rpm)
    resumed = calc.update(_csc(7, 3072, 2, 3072), 3.0)  # counts on from the new base
    assert resumed.speed_mps == pytest.approx(4 * 2.1)
    assert resumed.cadence_rpm == pytest.approx(60)


def test_power_meter_cadence_and_wheel_speed() -> None:
    calc = CyclingPowerCalculator(circumference_m=2.1)
    crank_hz, wheel_hz = 85 / 60, 9.0 / 2.1
    tick0 = 60_000
    for second in range(0, 80):  # the 1/2048 s wheel time wraps every 32 s
        cr, ct = _simulate(crank_hz, second, 65_500, tick0, 1024)
        wr, wt = _simulate(wheel_hz, second, 2**32 - 100, tick0, 2048)
        packet = struct.pack("<Hh", 0x0030, 200) + struct.pack("<IH", wr % 2**32, wt % 2**16)
        packet += struct.pack("<HH", cr % 2**16, ct % 2**16)
        r = calc.update(parse_cycling_power(packet), float(second))
        if second >= 2:
            assert r.cadence_rpm == pytest.approx(85, rel=0.02)
            assert r.speed_mps == pytest.approx(9.0, rel=0.02)
    # without a circumference only cadence comes out
    only = CyclingPowerCalculator()
    packet = struct.pack("<Hh", 0x0030, 200) + struct.pack("<IHHH", 10, 2048, 5, 1024)
    assert only.update(parse_cycling_power(packet), 0.0).speed_mps is None


@settings(max_examples=200, deadline=None)
@given(
    rate_hz=st.floats(0.5, 20.0),  # at least one event per hold time
    rev0=st.integers(0, 2**32 - 1),
    tick0=st.integers(0, 2**16 - 1),
    start_s=st.floats(0, 1e5),
)
def test_property_wheel_speed_from_random_start(
    rate_hz: float, rev0: int, tick0: int, start_s: float
) -> None:
    calc = CscCalculator(circumference_m=1.0)
    speeds = []
    for second in range(12):
        wr, wt = _simulate(rate_hz, second, rev0, tick0, 1024)
        speeds.append(calc.update(_csc(wr, wt), start_s + second).speed_mps)
    # once two events have passed, the speed is the true rate within quantisation
    settled = [s for s in speeds[6:] if s is not None]
    assert settled
    for s in settled:
        assert s == pytest.approx(rate_hz, rel=0.05, abs=1 / 5)

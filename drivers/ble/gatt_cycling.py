"""Cycling Speed and Cadence (0x2A5B) and Cycling Power Measurement (0x2A63).

Both carry cumulative revolution counters, not rates; ``CscCalculator`` and
``CyclingPowerCalculator`` turn successive measurements into speed and cadence
with the shared counter maths of ``gatt_rates``.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.ble.gatt_rates import RevolutionRate
from drivers.ble.gatt_reader import Reader

CSC_MEASUREMENT = "CSC Measurement (0x2A5B)"
CYCLING_POWER_MEASUREMENT = "Cycling Power Measurement (0x2A63)"

_TICKS_1024 = 1024
_TICKS_2048 = 2048  # a power meter's wheel event time is twice as fine as CSC's
_TORQUE_PER_NM = 32  # torque fields are in 1/32 N·m

# Rates no wheel or crank reaches; a delta implying more is a counter reset.
_MAX_WHEEL_HZ = 40.0  # 84 m/s on a 2.1 m wheel
_MAX_CRANK_HZ = 5.0  # 300 rpm


@dataclass(frozen=True)
class CscMeasurement:
    wheel_revs: int | None  # cumulative, u32, wraps
    wheel_time_ticks: int | None  # last wheel event, 1/1024 s, u16, wraps every 64 s
    crank_revs: int | None  # cumulative, u16, wraps
    crank_time_ticks: int | None  # last crank event, 1/1024 s, u16

    @property
    def wheel_time_s(self) -> float | None:
        return None if self.wheel_time_ticks is None else self.wheel_time_ticks / _TICKS_1024

    @property
    def crank_time_s(self) -> float | None:
        return None if self.crank_time_ticks is None else self.crank_time_ticks / _TICKS_1024


def parse_csc(data: bytes) -> CscMeasurement:
    r = Reader(CSC_MEASUREMENT, data)
    flags = r.u8("flags")
    wheel_revs = wheel_ticks = crank_revs = crank_ticks = None
    if flags & 0x01:
        wheel_revs = r.u32("cumulative wheel revolutions")
        wheel_ticks = r.u16("last wheel event time")
    if flags & 0x02:
        crank_revs = r.u16("cumulative crank revolutions")
        crank_ticks = r.u16("last crank event time")
    r.finish(flags, 0xFC)
    return CscMeasurement(wheel_revs, wheel_ticks, crank_revs, crank_ticks)


@dataclass(frozen=True)
class CyclingPower:
    power_w: int
    balance_pct: float | None = None  # share of power from one pedal, 0.5 % steps
    balance_left_ref: bool | None = None  # True: balance_pct is the left pedal's; False: unknown side
    torque_nm: float | None = None  # accumulated torque, wraps at 2048 N·m
    torque_from_crank: bool | None = None  # False: wheel-based torque
    wheel_revs: int | None = None  # u32
    wheel_time_ticks: int | None = None  # 1/2048 s, u16, wraps every 32 s
    crank_revs: int | None = None  # u16
    crank_time_ticks: int | None = None  # 1/1024 s, u16
    max_force_n: int | None = None
    min_force_n: int | None = None
    max_torque_nm: float | None = None
    min_torque_nm: float | None = None
    max_angle_deg: int | None = None
    min_angle_deg: int | None = None
    top_dead_spot_deg: int | None = None
    bottom_dead_spot_deg: int | None = None
    energy_j: int | None = None  # accumulated, kJ resolution
    offset_compensation: bool = False  # the meter is running its zero-offset calibration

    @property
    def wheel_time_s(self) -> float | None:
        return None if self.wheel_time_ticks is None else self.wheel_time_ticks / _TICKS_2048

    @property
    def crank_time_s(self) -> float | None:
        return None if self.crank_time_ticks is None else self.crank_time_ticks / _TICKS_1024


def parse_cycling_power(data: bytes) -> CyclingPower:
    r = Reader(CYCLING_POWER_MEASUREMENT, data)
    flags = r.u16("flags")
    f: dict[str, object] = {"power_w": r.s16("instantaneous power")}
    if flags & 0x0001:
        f["balance_pct"] = r.u8("pedal power balance") / 2
        f["balance_left_ref"] = bool(flags & 0x0002)
    if flags & 0x0004:
        f["torque_nm"] = r.u16("accumulated torque") / _TORQUE_PER_NM
        f["torque_from_crank"] = bool(flags & 0x0008)
    if flags & 0x0010:
        f["wheel_revs"] = r.u32("cumulative wheel revolutions")
        f["wheel_time_ticks"] = r.u16("last wheel event time")
    if flags & 0x0020:
        f["crank_revs"] = r.u16("cumulative crank revolutions")
        f["crank_time_ticks"] = r.u16("last crank event time")
    if flags & 0x0040:
        f["max_force_n"] = r.s16("maximum force magnitude")
        f["min_force_n"] = r.s16("minimum force magnitude")
    if flags & 0x0080:
        f["max_torque_nm"] = r.s16("maximum torque magnitude") / _TORQUE_PER_NM
        f["min_torque_nm"] = r.s16("minimum torque magnitude") / _TORQUE_PER_NM
    if flags & 0x0100:
        # Two 12-bit angles in 3 bytes: maximum in the low 12 bits, minimum in the high.
        angles = r.u24("extreme angles")
        f["max_angle_deg"] = angles & 0xFFF
        f["min_angle_deg"] = angles >> 12
    if flags & 0x0200:
        f["top_dead_spot_deg"] = r.u16("top dead spot angle")
    if flags & 0x0400:
        f["bottom_dead_spot_deg"] = r.u16("bottom dead spot angle")
    if flags & 0x0800:
        f["energy_j"] = r.u16("accumulated energy") * 1000
    f["offset_compensation"] = bool(flags & 0x1000)
    r.finish(flags, 0xE000)
    if "balance_pct" in f and f["balance_pct"] > 100:  # type: ignore[operator]
        raise r.error(f"pedal power balance {f['balance_pct']} % is above 100 %")
    return CyclingPower(**f)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CyclingRates:
    """Speed and cadence derived from revolution counters; None where not known (yet)."""

    speed_mps: float | None
    cadence_rpm: float | None
    distance_m: float | None  # wheel distance accumulated since the calculator started


class _WheelAndCrank:
    def __init__(self, circumference_m: float | None, wheel_ticks_per_s: int, **timing: float) -> None:
        if circumference_m is not None and not circumference_m > 0:
            raise ValueError(f"wheel circumference must be positive, got {circumference_m}")
        self.circumference_m = circumference_m
        self._wheel = RevolutionRate(32, wheel_ticks_per_s, max_rate_hz=_MAX_WHEEL_HZ, **timing)
        self._crank = RevolutionRate(16, _TICKS_1024, max_rate_hz=_MAX_CRANK_HZ, **timing)

    def reset(self) -> None:
        self._wheel.reset()
        self._crank.reset()

    def _update(
        self,
        wheel: tuple[int | None, int | None],
        crank: tuple[int | None, int | None],
        now_s: float,
    ) -> CyclingRates:
        speed = distance = cadence = None
        if wheel[0] is not None and wheel[1] is not None and self.circumference_m is not None:
            rate = self._wheel.update(wheel[0], wheel[1], now_s)
            speed = None if rate is None else rate * self.circumference_m
            distance = self._wheel.revolutions * self.circumference_m
        if crank[0] is not None and crank[1] is not None:
            rate = self._crank.update(crank[0], crank[1], now_s)
            cadence = None if rate is None else rate * 60.0
        return CyclingRates(speed_mps=speed, cadence_rpm=cadence, distance_m=distance)


class CscCalculator(_WheelAndCrank):
    """Speed and cadence from successive CSC measurements of one sensor.

    ``update(measurement, now_s)`` with ``now_s`` the monotonic arrival time.
    """

    def __init__(self, circumference_m: float, *, hold_s: float = 2.0, stop_s: float = 4.0) -> None:
        super().__init__(circumference_m, _TICKS_1024, hold_s=hold_s, stop_s=stop_s)

    def update(self, m: CscMeasurement, now_s: float) -> CyclingRates:
        return self._update((m.wheel_revs, m.wheel_time_ticks), (m.crank_revs, m.crank_time_ticks), now_s)


class CyclingPowerCalculator(_WheelAndCrank):
    """Cadence (and speed, for hub meters sending wheel data) from power measurements.

    Without a circumference only cadence is derived.
    """

    def __init__(
        self, circumference_m: float | None = None, *, hold_s: float = 2.0, stop_s: float = 4.0
    ) -> None:
        super().__init__(circumference_m, _TICKS_2048, hold_s=hold_s, stop_s=stop_s)

    def update(self, m: CyclingPower, now_s: float) -> CyclingRates:
        return self._update((m.wheel_revs, m.wheel_time_ticks), (m.crank_revs, m.crank_time_ticks), now_s)

"""RSC Measurement (0x2A53): footpods."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.ble.gatt_reader import Reader

RSC_MEASUREMENT = "RSC Measurement (0x2A53)"


@dataclass(frozen=True)
class Rsc:
    speed_mps: float
    # Foot falls per minute, both feet counted (the RSC definition); FIT and
    # fithub's model store running cadence as strides (one foot): half this.
    cadence_spm: int
    stride_m: float | None
    distance_m: float | None  # total since the pod's reset
    running: bool  # False: walking


def parse_rsc(data: bytes) -> Rsc:
    r = Reader(RSC_MEASUREMENT, data)
    flags = r.u8("flags")
    speed = r.u16("instantaneous speed") / 256
    cadence = r.u8("instantaneous cadence")
    stride = r.u16("instantaneous stride length") / 100 if flags & 0x01 else None
    distance = r.u32("total distance") / 10 if flags & 0x02 else None
    r.finish(flags, 0xF8)
    return Rsc(
        speed_mps=speed,
        cadence_spm=cadence,
        stride_m=stride,
        distance_m=distance,
        running=bool(flags & 0x04),
    )

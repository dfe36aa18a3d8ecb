"""Heart Rate Measurement (0x2A37) and Battery Level (0x2A19)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.ble.gatt_reader import Reader

HEART_RATE_MEASUREMENT = "Heart Rate Measurement (0x2A37)"
BATTERY_LEVEL = "Battery Level (0x2A19)"

_RR_TICKS_PER_S = 1024


@dataclass(frozen=True)
class HeartRate:
    bpm: int
    # None: the strap does not report skin contact. False: it can, and has none
    # (the bpm is then a guess or 0). Only True means the value is measured.
    contact: bool | None
    energy_j: int | None  # cumulative since the strap's last reset
    rr_s: tuple[float, ...] = ()  # beat-to-beat intervals in arrival order
    rr_ticks: tuple[int, ...] = ()  # the same, raw (1/1024 s), for exact sums


def parse_heart_rate(data: bytes) -> HeartRate:
    r = Reader(HEART_RATE_MEASUREMENT, data)
    flags = r.u8("flags")
    bpm = r.u16("heart rate (u16)") if flags & 0x01 else r.u8("heart rate (u8)")
    # Bits 1-2: 0 and 1 both mean "contact detection not supported"; 2 is
    # "supported, no contact", 3 "contact". Testing the two bits for non-zero, as
    # some libraries do, calls a strap lying on the table "in contact".
    contact_bits = (flags >> 1) & 0x03
    contact = None if contact_bits < 2 else contact_bits == 3
    energy_j = r.u16("energy expended") * 1000 if flags & 0x08 else None
    rr: tuple[int, ...] = ()
    if flags & 0x10:
        # The interval list runs to the end of the packet; a strap buffers
        # several beats when notifications are slower than the heart.
        if r.remaining % 2:
            raise r.error(f"RR-interval list has an odd length ({r.remaining} bytes)")
        rr = tuple(r.u16("RR interval") for _ in range(r.remaining // 2))
    # Bits 5-7 are reserved; a field added for them would follow the RR list,
    # which already consumes everything, so only a packet without RR data can
    # have leftovers.
    r.finish(flags, 0xE0)
    return HeartRate(
        bpm=bpm,
        contact=contact,
        energy_j=energy_j,
        rr_s=tuple(t / _RR_TICKS_PER_S for t in rr),
        rr_ticks=rr,
    )


def parse_battery(data: bytes) -> int:
    """Battery level in percent (0-100)."""
    r = Reader(BATTERY_LEVEL, data)
    level = r.u8("battery level")
    r.finish(0, 0)
    if level > 100:
        raise r.error(f"battery level {level} % is above 100 %")
    return level

"""A bounds-checked little-endian cursor over one characteristic value.

Every GATT parser reads through this so that a short packet becomes a
``GattError`` saying which field was cut off, and nothing else can escape.
"""

from __future__ import annotations

from datetime import datetime

from drivers.ble.errors import GattError


class Reader:
    def __init__(self, characteristic: str, data: object) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise GattError(characteristic, f"expected bytes, got {type(data).__name__}")
        self.characteristic = characteristic
        self.data = bytes(data)
        self.pos = 0

    def error(self, why: str) -> GattError:
        return GattError(self.characteristic, why, self.data)

    def _take(self, size: int, field: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise self.error(
                f"packet is {len(self.data)} bytes, too short for {field} "
                f"({size} bytes at offset {self.pos})"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self._take(size, field), "little")

    def sint(self, size: int, field: str) -> int:
        return int.from_bytes(self._take(size, field), "little", signed=True)

    def u8(self, field: str) -> int:
        return self.uint(1, field)

    def u16(self, field: str) -> int:
        return self.uint(2, field)

    def s16(self, field: str) -> int:
        return self.sint(2, field)

    def u24(self, field: str) -> int:
        return self.uint(3, field)

    def u32(self, field: str) -> int:
        return self.uint(4, field)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def date_time(self, field: str = "time stamp") -> datetime | None:
        """A Date Time (0x2A08) value: year u16, month, day, hours, minutes, seconds.

        Returned naive, as the device's clock had it (scales know no time zone).
        The spec lets year, month or day be 0 for "not known": then None, since a
        half-known date cannot place a measurement.
        """
        year = self.u16(field)
        month, day, hours, minutes, seconds = (self.u8(field) for _ in range(5))
        if year == 0 or month == 0 or day == 0:
            return None
        try:
            return datetime(year, month, day, hours, minutes, seconds)
        except ValueError as exc:
            raise self.error(
                f"{field} {year:04d}-{month:02d}-{day:02d} {hours:02d}:{minutes:02d}:{seconds:02d} "
                f"is not a valid date and time ({exc})"
            ) from exc

    def finish(self, flags: int, reserved_mask: int) -> None:
        """Refuse bytes left over after the fields the flags announced.

        Leftovers mean the flags and the payload disagree, so some field was read
        from the wrong offset. The exception: a flag bit the spec reserves is set,
        i.e. the device speaks a newer revision that appends a field we cannot
        know; the known fields before it are still right, so they are kept.
        """
        if self.remaining and not flags & reserved_mask:
            raise self.error(
                f"{self.remaining} unexpected byte(s) after the fields announced by flags "
                f"{flags:#06x} (packet {len(self.data)} bytes, fields end at {self.pos})"
            )

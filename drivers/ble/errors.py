"""Errors of the BLE driver.

    hub.errors.DeviceError
     +-- GattError            a characteristic value could not be decoded
          +-- MeasurementFailed   the sensor itself says the measurement failed
                                  (a scale's 0xFFFF weight); the packet is well formed

Parsers raise only these: a short packet, a field out of range or trailing
garbage all become a ``GattError`` naming the characteristic, never an
``IndexError`` or ``struct.error`` leaking out of the byte handling.
"""

from __future__ import annotations

from hub.errors import DeviceError


class GattError(DeviceError):
    """A characteristic value that does not decode.

    ``characteristic`` names it (e.g. ``"Heart Rate Measurement (0x2A37)"``), ``why``
    says what was wrong; ``data`` is the packet, shown in hex so a user's bug report
    carries the bytes needed to reproduce it.
    """

    def __init__(self, characteristic: str, why: str, data: bytes | None = None) -> None:
        self.characteristic = characteristic
        self.why = why
        self.data = data
        super().__init__(str(self))

    def __str__(self) -> str:
        packet = f" [packet {self.data.hex(' ')}]" if self.data is not None else ""
        return f"{self.characteristic}: {self.why}{packet}"


class MeasurementFailed(GattError):
    """The device reported that it could not measure (a valid packet, no value)."""

"""What the sensor manager needs from a Bluetooth stack, as a small protocol.

Two implementations: :mod:`drivers.ble.bleak_transport` (the real one: bleak on
BlueZ, the only module that imports bleak) and :mod:`drivers.ble.bumble_transport`
(google bumble's virtual controllers in-process, for tests and benchmarks). The
manager, sessions and scan logic only ever see these types, so the same code runs
against a real adapter and against virtual peripherals.

UUIDs cross this boundary in one form: the full 128-bit lowercase string
(``"0000180d-0000-1000-8000-00805f9b34fb"``), whatever the stack hands out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def full_uuid(value: int | str) -> str:
    """A Bluetooth UUID in its 128-bit lowercase form.

    Accepts 16/32-bit numbers (``0x180D``), short strings (``"180D"``, ``"0x180d"``)
    and full strings; bleak and bumble spell them differently, the manager compares
    them, so they must meet in one spelling.
    """
    if isinstance(value, int):
        return f"{value:08x}{_BASE_SUFFIX}"
    text = str(value).strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) in (4, 8) and all(c in "0123456789abcdef" for c in text):
        return f"{int(text, 16):08x}{_BASE_SUFFIX}"
    if len(text) == 36 and text.count("-") == 4:
        return text
    raise ValueError(f"not a Bluetooth UUID: {value!r}")


def short_uuid(value: str) -> str:
    """``"0x180D"`` for a SIG-assigned UUID (for messages), else the full string."""
    text = full_uuid(value)
    if text.endswith(_BASE_SUFFIX) and text.startswith("0000"):
        return "0x" + text[4:8].upper()
    return text


def normal_address(address: str) -> str:
    """Upper-case ``AA:BB:...``; BlueZ reports upper case, users type either."""
    return address.strip().upper().replace("-", ":")


@dataclass(frozen=True)
class Advert:
    """One advertisement (or scan response) as the scanner saw it."""

    address: str
    name: str | None
    rssi: int | None
    services: frozenset[str] = field(default_factory=frozenset)  # full UUIDs
    connectable: bool = True


class Link(Protocol):
    """One open connection to a peripheral, its GATT table already discovered."""

    address: str

    @property
    def characteristics(self) -> frozenset[str]:
        """Every characteristic UUID the peripheral offers (full form)."""
        ...

    async def read(self, characteristic: str) -> bytes: ...

    async def subscribe(self, characteristic: str, callback: Callable[[bytes], None]) -> None:
        """Notifications and indications alike; ``callback`` runs on the event loop."""
        ...

    async def disconnect(self) -> None: ...


class Transport(Protocol):
    """A Bluetooth stack: one shared scanner, and connections.

    Failures are raised as :class:`hub.errors.SourceUnavailable` (adapter missing,
    powered off) or :class:`hub.errors.DeviceError` (a peripheral would not
    connect), never as a stack's own exception types.
    """

    async def start_scan(self, on_advert: Callable[[Advert], None]) -> None: ...

    async def stop_scan(self) -> None: ...

    async def connect(self, address: str, *, on_disconnect: Callable[[], None], timeout_s: float) -> Link: ...

    async def close(self) -> None: ...

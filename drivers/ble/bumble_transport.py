"""A :class:`~drivers.ble.transport.Transport` on a google bumble device.

bleak needs BlueZ, which needs a kernel with Bluetooth; bumble is a whole
Bluetooth host in Python that can run on virtual controllers linked in-process
(``bumble.link.LocalLink``). This transport lets the sensor manager talk to
bumble's virtual peripherals (:mod:`drivers.ble.virtual`) without any kernel
support: the fast tests and the benchmark use it. The real end-to-end test
(``tests/ble_vm``) runs the bleak transport against the same peripherals through
BlueZ instead.
"""

from __future__ import annotations

import asyncio
import uuid as uuid_module
from collections.abc import Callable

from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Device, Peer
from bumble.hci import Address

from hub.errors import DeviceError

from .transport import Advert, full_uuid, normal_address

_SERVICE_LISTS = (
    AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
)


def _uuid_text(uuid: UUID) -> str:
    raw = bytes(uuid.uuid_bytes)  # bumble keeps them little-endian, as on the air
    if len(raw) in (2, 4):
        return full_uuid(int.from_bytes(raw, "little"))
    return str(uuid_module.UUID(bytes=raw[::-1]))


class BumbleLink:
    def __init__(self, peer: Peer, address: str) -> None:
        self._peer = peer
        self.address = address
        self.gone = False  # the connection ended: disconnecting again would wait forever
        peer.connection.on("disconnection", lambda *_: setattr(self, "gone", True))
        self._chars = {
            _uuid_text(char.uuid): char for service in peer.services for char in service.characteristics
        }

    @property
    def characteristics(self) -> frozenset[str]:
        return frozenset(self._chars)

    async def read(self, characteristic: str) -> bytes:
        try:
            return bytes(await self._peer.read_value(self._chars[full_uuid(characteristic)]))
        except Exception as exc:  # the boundary: bumble raises many kinds
            raise DeviceError(f"{self.address}: cannot read {characteristic}: {exc or type(exc).__name__}") from exc

    async def subscribe(self, characteristic: str, callback: Callable[[bytes], None]) -> None:
        try:
            await self._peer.subscribe(self._chars[full_uuid(characteristic)], lambda value: callback(bytes(value)))
        except Exception as exc:
            raise DeviceError(f"{self.address}: cannot subscribe to {characteristic}: {exc or type(exc).__name__}") from exc

    async def disconnect(self) -> None:
        if self.gone:
            return
        try:
            await self._peer.connection.disconnect()
        except Exception:
            pass  # already gone


class BumbleTransport:
    """``device``: a powered-on bumble Device acting as the central."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._addresses: dict[str, Address] = {}
        self._on_advert: Callable[[Advert], None] | None = None
        # bumble allows one pending LE connection at a time.
        self._connecting = asyncio.Lock()
        device.on("advertisement", self._advertisement)

    def _advertisement(self, adv: Advertisement) -> None:
        address = normal_address(str(adv.address).split("/")[0])
        self._addresses[address] = adv.address
        if self._on_advert is None:
            return
        name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or adv.data.get(AdvertisingData.SHORTENED_LOCAL_NAME)
        services: set[str] = set()
        for kind in _SERVICE_LISTS:
            for group in adv.data.get_all(kind):
                services.update(_uuid_text(u) for u in group)
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        self._on_advert(Advert(address=address, name=name, rssi=adv.rssi, services=frozenset(services), connectable=adv.is_connectable))

    async def start_scan(self, on_advert: Callable[[Advert], None]) -> None:
        self._on_advert = on_advert
        await self.device.start_scanning(filter_duplicates=False)

    async def stop_scan(self) -> None:
        self._on_advert = None
        if self.device.is_scanning:
            await self.device.stop_scanning()

    async def connect(self, address: str, *, on_disconnect: Callable[[], None], timeout_s: float) -> BumbleLink:
        target = self._addresses.get(address, address)
        try:
            async with self._connecting:
                connection = await self.device.connect(target, timeout=timeout_s)
            connection.on("disconnection", lambda *_: on_disconnect())
            peer = Peer(connection)
            await peer.discover_services()
            for service in peer.services:
                await peer.discover_characteristics(service=service)
        except Exception as exc:  # the boundary: timeouts, HCI errors, ATT errors
            raise DeviceError(f"{address}: cannot connect: {exc or type(exc).__name__}") from exc
        return BumbleLink(peer, address)

    async def close(self) -> None:
        await self.stop_scan()

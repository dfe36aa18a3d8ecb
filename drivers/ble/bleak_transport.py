"""The real Bluetooth stack: bleak (BlueZ over D-Bus on Linux). The only module
that imports bleak.

Connections go through ``bleak-retry-connector``, which retries the transient
BlueZ failures (``le-connection-abort-by-local``, "Operation already in
progress", out of connection slots) with backoff and clears a stale BlueZ cache.
Every bleak exception is mapped here to :class:`~hub.errors.SourceUnavailable`
(no adapter, BlueZ not running) or :class:`~hub.errors.DeviceError` (this
peripheral failed), chained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakBluetoothNotAvailableError, BleakError
from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

from hub.errors import DeviceError, SourceUnavailable

from .transport import Advert, full_uuid, normal_address

MAX_CONNECT_ATTEMPTS = 3  # per connect(); the manager's own backoff takes over after


class BleakLink:
    def __init__(self, client: BleakClientWithServiceCache, address: str) -> None:
        self._client = client
        self.address = address
        self._characteristics = frozenset(
            full_uuid(char.uuid) for service in client.services for char in service.characteristics
        )

    @property
    def characteristics(self) -> frozenset[str]:
        return self._characteristics

    async def read(self, characteristic: str) -> bytes:
        try:
            return bytes(await self._client.read_gatt_char(characteristic))
        except (BleakError, asyncio.TimeoutError, EOFError) as exc:
            raise DeviceError(f"{self.address}: cannot read {characteristic}: {exc or type(exc).__name__}") from exc

    async def subscribe(self, characteristic: str, callback: Callable[[bytes], None]) -> None:
        try:
            await self._client.start_notify(characteristic, lambda _char, data: callback(bytes(data)))
        except (BleakError, asyncio.TimeoutError, EOFError) as exc:
            raise DeviceError(f"{self.address}: cannot subscribe to {characteristic}: {exc or type(exc).__name__}") from exc

    async def disconnect(self) -> None:
        try:
            await self._client.disconnect()
        except (BleakError, asyncio.TimeoutError, EOFError):
            pass  # already gone: the goal is reached


class BleakTransport:
    """``adapter``: the BlueZ adapter name (``hci0``), None for the default."""

    def __init__(self, adapter: str | None = None) -> None:
        self.adapter = adapter
        self._bluez = {"adapter": adapter} if adapter else {}
        self._scanner: BleakScanner | None = None
        self._devices: dict[str, BLEDevice] = {}

    async def start_scan(self, on_advert: Callable[[Advert], None]) -> None:
        def detected(device: BLEDevice, adv: AdvertisementData) -> None:
            address = normal_address(device.address)
            self._devices[address] = device
            on_advert(
                Advert(
                    address=address,
                    name=adv.local_name or device.name,
                    rssi=adv.rssi,
                    services=frozenset(full_uuid(u) for u in adv.service_uuids),
                )
            )

        try:
            self._scanner = BleakScanner(detection_callback=detected, bluez=self._bluez)
            await self._scanner.start()
        except BleakBluetoothNotAvailableError as exc:
            raise SourceUnavailable(f"Bluetooth adapter {self.adapter or '(default)'} not available: {exc}") from exc
        except OSError as exc:  # the system D-Bus socket is missing or refuses us
            raise SourceUnavailable(
                f"cannot scan on Bluetooth adapter {self.adapter or '(default)'}: no system D-Bus / BlueZ "
                f"(is bluetoothd running?): {exc}"
            ) from exc
        except BleakError as exc:
            raise SourceUnavailable(f"cannot scan on Bluetooth adapter {self.adapter or '(default)'}: {exc}") from exc

    async def stop_scan(self) -> None:
        if self._scanner is not None:
            try:
                await self._scanner.stop()
            except (BleakError, OSError):
                pass
            self._scanner = None

    async def connect(self, address: str, *, on_disconnect: Callable[[], None], timeout_s: float) -> BleakLink:
        device = self._devices.get(address)
        try:
            if device is None:
                device = await BleakScanner.find_device_by_address(address, timeout=timeout_s, bluez=self._bluez)
            if device is None:
                raise DeviceError(f"{address}: not found (out of range, switched off, or connected to another host)")
            client = await establish_connection(
                BleakClientWithServiceCache,
                device,
                address,
                disconnected_callback=lambda _client: on_disconnect(),
                max_attempts=MAX_CONNECT_ATTEMPTS,
                ble_device_callback=lambda: self._devices.get(address, device),
                timeout=timeout_s,
            )
        except BleakBluetoothNotAvailableError as exc:
            raise SourceUnavailable(f"Bluetooth adapter {self.adapter or '(default)'} not available: {exc}") from exc
        except (BleakError, asyncio.TimeoutError, EOFError, OSError) as exc:
            raise DeviceError(f"{address}: cannot connect: {exc or type(exc).__name__}") from exc
        return BleakLink(client, address)

    async def close(self) -> None:
        await self.stop_scan()

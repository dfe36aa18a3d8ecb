"""Virtual fitness sensors on google bumble: a strap, a power meter, a speed/cadence
sensor, an FTMS trainer and a weight scale, each a bumble device on its own virtual
controller, advertising its service and notifying (or, for the scale, indicating)
packets built from a simple physical state (watts, rpm, m/s, kg).

Used by the tests, the benchmark and the VM end-to-end test, where the same
peripherals are reached through BlueZ. The packet encoders here are written from
the Bluetooth specifications independently of fithub's parsers, so a test that
sends through them checks the parsers too. The heart-rate strap uses bumble's own
``HeartRateService``.
"""

from __future__ import annotations

import asyncio
import struct
from datetime import datetime

from bumble import gatt
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.profiles.heart_rate_service import HeartRateService
from bumble.transport.common import AsyncPipeSink

NOTIFY = gatt.Characteristic.Properties.NOTIFY
INDICATE = gatt.Characteristic.Properties.INDICATE
READ = gatt.Characteristic.Properties.READ


def add_device(link: LocalLink, address: str, name: str) -> Device:
    """A bumble device with its own controller on ``link``."""
    controller = Controller(name, link=link, public_address=address)
    device = Device(address=Address(address), host=Host(controller, AsyncPipeSink(controller)))
    device.name = name
    return device


class _Counter:
    """A cumulative revolution counter and its last event time, advanced by a rate."""

    def __init__(self, ticks_per_s: int) -> None:
        self.ticks_per_s = ticks_per_s
        self.revs = 0
        self.fraction = 0.0
        self.event_s: float | None = None

    def advance(self, rate_hz: float, now_s: float, last_s: float) -> None:
        if self.event_s is None:
            self.event_s = now_s  # the sensor's clock starts with its first packet
        if rate_hz <= 0 or now_s <= last_s:
            return
        self.fraction += rate_hz * (now_s - last_s)
        whole = int(self.fraction)
        if whole:
            self.revs += whole
            self.fraction -= whole
            self.event_s = now_s - self.fraction / rate_hz  # when the last whole revolution completed

    def ticks(self) -> int:
        return round((self.event_s or 0.0) * self.ticks_per_s) % 65536


class VirtualSensor:
    """Base: one peripheral. ``start()`` powers on and advertises; ``send(now_s)``
    notifies one measurement; ``drop()`` disconnects every central (a forced drop)
    and advertises again."""

    service_uuid: str = ""

    def __init__(self, link: LocalLink, address: str, name: str) -> None:
        self.address = address
        self.name = name
        self.device = add_device(link, address, name)
        self.battery = gatt.Characteristic("2A19", READ, gatt.Characteristic.READABLE, bytes([87]))
        self.sent = 0
        self._last_s: float | None = None
        self._keeper: asyncio.Task | None = None
        self.advertise_errors: list[str] = []

    def services(self) -> list[gatt.Service]:
        raise NotImplementedError

    async def start(self) -> None:
        self.device.add_services([*self.services(), gatt.Service("180F", [self.battery])])
        await self.device.power_on()
        await self._advertise()
        self._keeper = asyncio.get_running_loop().create_task(self._keep_advertising())

    async def _keep_advertising(self) -> None:
        """A real sensor advertises whenever nobody is connected. Re-checked
        periodically rather than on the disconnection event: restarting at that
        very moment was seen to fail with BlueZ as the central."""
        while True:
            await asyncio.sleep(0.25)
            if not self.device.connections and not self.device.is_advertising:
                await self._advertise()

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()

    async def _advertise(self) -> None:
        data = AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes([0x06])),
                (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
                (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, bytes(UUID(self.service_uuid))),
            ]
        )
        try:
            await self.device.start_advertising(advertising_data=bytes(data), advertising_interval_min=20, advertising_interval_max=20)
        except Exception as exc:  # the controller is busy (a connection just ended): the keeper retries
            self.advertise_errors.append(f"{type(exc).__name__}: {exc}")

    @property
    def connected(self) -> bool:
        return bool(self.device.connections)

    async def drop(self) -> None:
        for connection in list(self.device.connections.values()):
            await connection.disconnect()

    async def send(self, now_s: float) -> None:
        last = self._last_s if self._last_s is not None else now_s
        self._last_s = now_s
        characteristic, value = self.packet(now_s, last)
        await self.device.notify_subscribers(characteristic, value)
        self.sent += 1

    def packet(self, now_s: float, last_s: float) -> tuple[gatt.Characteristic, bytes]:
        raise NotImplementedError


class HeartRateStrap(VirtualSensor):
    service_uuid = "180D"

    def __init__(self, link: LocalLink, address: str, name: str = "Virtual HRM", bpm: int = 140) -> None:
        super().__init__(link, address, name)
        self.bpm = bpm
        self.service = HeartRateService(
            read_heart_rate_measurement=lambda _conn: HeartRateService.HeartRateMeasurement(self.bpm),
            body_sensor_location=HeartRateService.BodySensorLocation.CHEST,
        )

    def services(self) -> list[gatt.Service]:
        return [self.service]

    async def send(self, now_s: float) -> None:
        self._last_s = now_s
        value = HeartRateService.HeartRateMeasurement(
            heart_rate=self.bpm, sensor_contact_detected=True, rr_intervals=[60.0 / self.bpm] if self.bpm else None
        )
        await self.device.notify_subscribers(self.service.heart_rate_measurement_characteristic, value)
        self.sent += 1


class PowerMeter(VirtualSensor):
    """Cycling Power Measurement with crank revolution data (flags b5)."""

    service_uuid = "1818"

    def __init__(self, link: LocalLink, address: str, name: str = "Virtual Power", power_w: int = 200, cadence_rpm: float = 90) -> None:
        super().__init__(link, address, name)
        self.power_w, self.cadence_rpm = power_w, cadence_rpm
        self.crank = _Counter(1024)
        self.char = gatt.Characteristic("2A63", NOTIFY, gatt.Characteristic.Permissions(0), b"")

    def services(self) -> list[gatt.Service]:
        feature = gatt.Characteristic("2A65", READ, gatt.Characteristic.READABLE, struct.pack("<I", 0x08))
        return [gatt.Service("1818", [self.char, feature])]

    def packet(self, now_s: float, last_s: float) -> tuple[gatt.Characteristic, bytes]:
        self.crank.advance(self.cadence_rpm / 60, now_s, last_s)
        return self.char, struct.pack("<HhHH", 0x0020, self.power_w, self.crank.revs & 0xFFFF, self.crank.ticks())


class SpeedCadenceSensor(VirtualSensor):
    """CSC Measurement with wheel and crank data (flags b0, b1)."""

    service_uuid = "1816"

    def __init__(
        self, link: LocalLink, address: str, name: str = "Virtual CSC", speed_mps: float = 8.0, cadence_rpm: float = 85, circumference_m: float = 2.105
    ) -> None:
        super().__init__(link, address, name)
        self.speed_mps, self.cadence_rpm, self.circumference_m = speed_mps, cadence_rpm, circumference_m
        self.wheel, self.crank = _Counter(1024), _Counter(1024)
        self.char = gatt.Characteristic("2A5B", NOTIFY, gatt.Characteristic.Permissions(0), b"")

    def services(self) -> list[gatt.Service]:
        feature = gatt.Characteristic("2A5C", READ, gatt.Characteristic.READABLE, struct.pack("<H", 0x03))
        return [gatt.Service("1816", [self.char, feature])]

    def packet(self, now_s: float, last_s: float) -> tuple[gatt.Characteristic, bytes]:
        self.wheel.advance(self.speed_mps / self.circumference_m, now_s, last_s)
        self.crank.advance(self.cadence_rpm / 60, now_s, last_s)
        body = struct.pack(
            "<BIHHH", 0x03, self.wheel.revs & 0xFFFFFFFF, self.wheel.ticks(), self.crank.revs & 0xFFFF, self.crank.ticks()
        )
        return self.char, body


class Trainer(VirtualSensor):
    """FTMS Indoor Bike Data: speed (b0 = 0, the inverted More Data bit), cadence (b2),
    total distance (b4, u24) and power (b6)."""

    service_uuid = "1826"

    def __init__(
        self, link: LocalLink, address: str, name: str = "Virtual Trainer", power_w: int = 180, cadence_rpm: float = 88, speed_mps: float = 9.0
    ) -> None:
        super().__init__(link, address, name)
        self.power_w, self.cadence_rpm, self.speed_mps = power_w, cadence_rpm, speed_mps
        self.distance_m = 0.0
        self.char = gatt.Characteristic("2AD2", NOTIFY, gatt.Characteristic.Permissions(0), b"")

    def services(self) -> list[gatt.Service]:
        feature = gatt.Characteristic("2ACC", READ, gatt.Characteristic.READABLE, struct.pack("<II", 0x4006, 0))
        return [gatt.Service("1826", [self.char, feature])]

    def packet(self, now_s: float, last_s: float) -> tuple[gatt.Characteristic, bytes]:
        self.distance_m += self.speed_mps * (now_s - last_s)
        distance = int(self.distance_m)
        body = struct.pack("<HHH", 0x0054, round(self.speed_mps * 3.6 * 100), round(self.cadence_rpm * 2))
        body += distance.to_bytes(3, "little") + struct.pack("<h", self.power_w)
        return self.char, body


class WeightScale(VirtualSensor):
    """Weight Measurement (indicate) in kg with a time stamp (b1) and user index (b2)."""

    service_uuid = "181D"

    def __init__(self, link: LocalLink, address: str, name: str = "Virtual Scale") -> None:
        super().__init__(link, address, name)
        self.char = gatt.Characteristic("2A9D", INDICATE, gatt.Characteristic.Permissions(0), b"")

    def services(self) -> list[gatt.Service]:
        feature = gatt.Characteristic("2A9E", READ, gatt.Characteristic.READABLE, struct.pack("<I", 0x06))
        return [gatt.Service("181D", [self.char, feature])]

    @staticmethod
    def weight_packet(weight_kg: float, when: datetime, user: int | None) -> bytes:
        flags = 0x02 | (0x04 if user is not None else 0)
        body = struct.pack("<BH", flags, round(weight_kg / 0.005))
        body += struct.pack("<HBBBBB", when.year, when.month, when.day, when.hour, when.minute, when.second)
        if user is not None:
            body += bytes([user])
        return body

    async def weigh(self, weight_kg: float, when: datetime, user: int | None = None) -> None:
        """Indicate one weighing (``when`` as the scale's clock shows it: naive local)."""
        await self.device.indicate_subscribers(self.char, self.weight_packet(weight_kg, when, user))
        self.sent += 1

    @property
    def subscribed(self) -> bool:
        return any(self.device.gatt_server.subscribers.values()) if hasattr(self.device.gatt_server, "subscribers") else self.connected

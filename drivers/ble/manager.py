"""The sensor manager: finds the configured sensors, keeps them connected, and turns
their notifications into readings.

One shared scanner runs for the manager's whole life: it finds configured sensors
the first time and tells a sensor waiting to reconnect that it is back in range.
Each sensor has its own task: connect (one connection attempt at a time: BlueZ
and bumble both handle parallel LE connects badly), subscribe to every
measurement characteristic it offers (:data:`drivers.ble.profiles.PROFILES`),
read its battery, then wait for a disconnect and reconnect with exponential
backoff. A malformed packet is counted and logged once per sensor; it never ends
the connection or the manager.

A sensor is configured by address (``"C0:11:22:33:44:55"``) or by service
(``"heart_rate"``, ``"cycling_power"``, ``"fitness_machine"``, ``"0x1818"`` ...):
a service entry claims the first device advertising that service and keeps it,
so a second strap walking past does not take over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hub.errors import ConfigError, DeviceError, FithubError

from . import uuids
from .errors import GattError
from .gatt_heart import parse_battery
from .profiles import DEFAULT_CIRCUMFERENCE_M, PROFILES, SERVICE_ALIASES, SensorDecoder
from .readings import Reading, ScaleReading
from .transport import Advert, Link, Transport, full_uuid, normal_address, short_uuid

log = logging.getLogger("fithub.ble")

_HEX = set("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class SensorSpec:
    """One configured sensor: an address, or a service any device may offer."""

    text: str  # as configured, for messages
    address: str | None = None
    service: str | None = None  # full UUID

    def matches(self, advert: Advert) -> bool:
        if self.address is not None:
            return advert.address == self.address
        return self.service in advert.services


def parse_sensor(text: str) -> SensorSpec:
    """``"AA:BB:CC:DD:EE:FF"``, a service name (``"heart_rate"``, optionally
    ``"service:heart_rate"``) or a service UUID (``"0x180D"``, full form)."""
    value = text.strip()
    name = value.removeprefix("service:").strip()
    if len(value) == 17 and value.count(":") == 5 and all(c in _HEX for c in value.replace(":", "")):
        return SensorSpec(text, address=normal_address(value))
    if name.lower() in SERVICE_ALIASES:
        return SensorSpec(text, service=SERVICE_ALIASES[name.lower()])
    try:
        return SensorSpec(text, service=full_uuid(name))
    except ValueError:
        known = ", ".join(sorted(SERVICE_ALIASES))
        raise ConfigError(f"sensor {text!r} is neither an address (AA:BB:CC:DD:EE:FF), a service name ({known}) nor a UUID") from None


def parse_sensors(values: Iterable[str]) -> list[SensorSpec]:
    specs, problems = [], []
    for value in values:
        try:
            specs.append(parse_sensor(str(value)))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return specs


@dataclass
class SensorState:
    """What the manager knows about one sensor, for status lines and tests."""

    address: str
    name: str | None = None
    rssi: int | None = None
    profiles: tuple[str, ...] = ()
    connected: bool = False
    battery_pct: int | None = None
    connects: int = 0
    drops: int = 0
    bad_packets: int = 0
    stale_packets: int = 0  # from a previous connection, ignored
    readings: int = 0
    last_error: str | None = None


@dataclass
class ManagerSettings:
    circumference_m: float = DEFAULT_CIRCUMFERENCE_M
    connect_timeout_s: float = 20.0
    retry_min_s: float = 1.0
    retry_max_s: float = 30.0


class SensorManager:
    """``on_reading`` gets every workout reading, ``on_scale`` every weighing, both on
    the event loop (keep them quick; hand storage to a thread). An exception in a
    callback is logged and swallowed: a consumer bug must not cut the sensors off."""

    def __init__(
        self,
        transport: Transport,
        specs: list[SensorSpec],
        *,
        on_reading: Callable[[Reading], None],
        on_scale: Callable[[ScaleReading], None] | None = None,
        settings: ManagerSettings | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not specs:
            raise ConfigError("no BLE sensors configured (give addresses or service names)")
        self.transport = transport
        self.specs = specs
        self.on_reading = on_reading
        self.on_scale = on_scale
        self.settings = settings or ManagerSettings()
        self.clock, self.monotonic = clock, monotonic
        self.sensors: dict[str, SensorState] = {}
        self._claims: dict[int, str] = {}  # spec index -> address
        self._tasks: dict[str, asyncio.Task] = {}
        self._seen: dict[str, asyncio.Event] = {}
        self._links: dict[str, Link] = {}
        # Connection generation per sensor: a stack may keep delivering a previous
        # connection's notifications after a reconnect (seen with BlueZ: every
        # packet twice); only the current generation's subscriptions count.
        self._generation: dict[str, int] = {}
        self._connect_lock: asyncio.Lock | None = None
        self._stop: asyncio.Event | None = None
        self.connected_event: asyncio.Event | None = None  # set whenever a sensor (re)connects

    # -- lifecycle -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Scan, connect and receive until ``stop`` is set; then disconnect everything."""
        self._stop = stop
        self._connect_lock = asyncio.Lock()
        self.connected_event = asyncio.Event()
        await self.transport.start_scan(self._advert)
        try:
            await stop.wait()
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            for link in list(self._links.values()):
                await link.disconnect()
            await self.transport.stop_scan()

    def _advert(self, advert: Advert) -> None:
        state = self.sensors.get(advert.address)
        if state is not None:
            state.rssi = advert.rssi
            state.name = state.name or advert.name
            self._seen[advert.address].set()  # wakes a sensor waiting to reconnect
            return
        for index, spec in enumerate(self.specs):
            if index in self._claims or not spec.matches(advert):
                continue
            self._claims[index] = advert.address
            self.sensors[advert.address] = SensorState(advert.address, advert.name, advert.rssi)
            self._seen[advert.address] = asyncio.Event()
            log.info("BLE sensor %s (%s) found for %r", advert.address, advert.name or "no name", spec.text)
            self._tasks[advert.address] = asyncio.get_running_loop().create_task(self._sensor(advert.address))
            return

    # -- one sensor ------------------------------------------------------------

    async def _sensor(self, address: str) -> None:
        state = self.sensors[address]
        decoder = SensorDecoder(address, circumference_m=self.settings.circumference_m)
        delay = self.settings.retry_min_s
        failing = False
        while not self._stop.is_set():
            dropped = asyncio.Event()
            try:
                async with self._connect_lock:
                    link = await self.transport.connect(address, on_disconnect=dropped.set, timeout_s=self.settings.connect_timeout_s)
                    try:
                        profiles = await self._subscribe(link, decoder, state)
                    except FithubError:
                        await link.disconnect()  # half set up is no use; start over
                        raise
            except FithubError as exc:
                state.last_error = str(exc)
                if not failing:  # log the change of state, not every retry
                    log.warning("BLE sensor %s: %s; retrying with backoff", address, exc)
                    failing = True
                await self._backoff(address, delay)
                delay = min(delay * 2, self.settings.retry_max_s)
                continue
            if not profiles:
                log.warning("BLE sensor %s offers no measurement fithub reads; leaving it", address)
                await link.disconnect()
                return
            self._links[address] = link
            state.connected, state.profiles, state.last_error = True, profiles, None
            state.connects += 1
            failing, delay = False, self.settings.retry_min_s
            log.info("BLE sensor %s connected: %s%s", address, ", ".join(profiles),
                     f", battery {state.battery_pct} %" if state.battery_pct is not None else "")
            self.connected_event.set()
            try:
                await dropped.wait()
            finally:
                self._links.pop(address, None)
                state.connected = False
                self._generation[address] += 1  # late packets of this connection are stale now
            # The counters moved on while away; a half scale packet will not be completed.
            for result in decoder.flush(self.clock()):
                self._deliver(result, state)
            decoder.reset()
            state.drops += 1
            log.warning("BLE sensor %s disconnected; reconnecting", address)
            try:  # release the stack's state for the dead connection (bleak: its notify handlers)
                await asyncio.wait_for(link.disconnect(), timeout=5)
            except (asyncio.TimeoutError, FithubError):
                pass
            self._seen[address].clear()
            await self._backoff(address, self.settings.retry_min_s)

    async def _subscribe(self, link: Link, decoder: SensorDecoder, state: SensorState) -> tuple[str, ...]:
        generation = self._generation[state.address] = self._generation.get(state.address, 0) + 1
        offered = link.characteristics
        battery = full_uuid(uuids.BATTERY_LEVEL)
        if battery in offered:
            try:
                state.battery_pct = parse_battery(await link.read(battery))
            except (DeviceError, GattError) as exc:
                log.info("BLE sensor %s: battery level unreadable: %s", link.address, exc)
        subscribed = []
        for profile in PROFILES:
            characteristic = full_uuid(profile.characteristic)
            if characteristic in offered:
                await link.subscribe(characteristic, self._receiver(characteristic, decoder, state, generation))
                subscribed.append(profile.name)
        return tuple(subscribed)

    def _receiver(self, characteristic: str, decoder: SensorDecoder, state: SensorState, generation: int) -> Callable[[bytes], None]:
        def receive(data: bytes) -> None:
            if self._generation.get(state.address) != generation:
                state.stale_packets += 1
                return
            try:
                results = decoder.decode(characteristic, data, self.clock(), self.monotonic())
            except GattError as exc:
                state.bad_packets += 1
                if state.bad_packets == 1 or state.bad_packets % 1000 == 0:
                    log.warning("BLE sensor %s sent a bad %s packet (%d so far): %s",
                                state.address, short_uuid(characteristic), state.bad_packets, exc)
                return
            for result in results:
                self._deliver(result, state)

        return receive

    def _deliver(self, result: Reading | ScaleReading, state: SensorState) -> None:
        state.readings += 1
        try:
            if isinstance(result, ScaleReading):
                if self.on_scale is not None:
                    self.on_scale(result)
            else:
                self.on_reading(result)
        except Exception:  # a consumer bug must not disconnect the sensor
            log.exception("BLE reading consumer failed on a reading from %s", state.address)

    async def _backoff(self, address: str, delay: float) -> None:
        """Wait ``delay``, or less when the sensor advertises again (it is back)."""
        try:
            await asyncio.wait_for(self._seen[address].wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass
        if self._seen[address].is_set():
            await asyncio.sleep(min(0.2, delay))  # let a just-rebooted sensor finish starting
        self._seen[address].clear()

    # -- control -----------------------------------------------------------------

    async def drop(self, address: str) -> None:
        """Disconnect one sensor from this side (tests, and a stuck connection);
        the manager reconnects it as after any drop."""
        link = self._links.get(address)
        if link is not None:
            await link.disconnect()

"""``fithub ble scan``: what is around, which fitness services each device offers.

Listens for ``seconds``; then, for each device advertising a fitness service,
connects briefly to read its battery level and the measurements it really offers
(adverts often list only the main service). A device that will not connect is
still listed, with the reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hub.errors import FithubError

from . import uuids
from .gatt_heart import parse_battery
from .errors import GattError
from .profiles import BY_CHARACTERISTIC, service_name
from .transport import Advert, Transport, full_uuid

FITNESS = frozenset(full_uuid(u) for u in uuids.FITNESS_SERVICES.values())


@dataclass
class Found:
    address: str
    name: str | None
    rssi: int | None
    services: list[str] = field(default_factory=list)  # advertised, by name where known
    measurements: list[str] = field(default_factory=list)  # profiles readable over GATT
    battery_pct: int | None = None
    error: str | None = None

    @property
    def fitness(self) -> bool:
        return any(s in uuids.FITNESS_SERVICES for s in self.services) or bool(self.measurements)


async def scan(transport: Transport, seconds: float = 8.0, *, connect: bool = True, connect_timeout_s: float = 10.0) -> list[Found]:
    seen: dict[str, Advert] = {}
    services: dict[str, set[str]] = {}

    def advert(adv: Advert) -> None:
        previous = seen.get(adv.address)
        if previous is None or (adv.rssi is not None):
            seen[adv.address] = Advert(adv.address, adv.name or (previous.name if previous else None), adv.rssi, adv.services)
        services.setdefault(adv.address, set()).update(adv.services)

    await transport.start_scan(advert)
    try:
        await asyncio.sleep(seconds)
    finally:
        await transport.stop_scan()
    found = []
    for address, adv in sorted(seen.items(), key=lambda item: -(item[1].rssi if item[1].rssi is not None else -999)):
        names = sorted(service_name(s) or s for s in services[address])
        item = Found(address, adv.name, adv.rssi, names)
        if connect and services[address] & FITNESS:
            await _probe(transport, item, connect_timeout_s)
        found.append(item)
    return found


async def _probe(transport: Transport, item: Found, timeout_s: float) -> None:
    try:
        link = await transport.connect(item.address, on_disconnect=lambda: None, timeout_s=timeout_s)
    except FithubError as exc:
        item.error = str(exc)
        return
    try:
        offered = link.characteristics
        item.measurements = [p.name for c, p in BY_CHARACTERISTIC.items() if c in offered]
        battery = full_uuid(uuids.BATTERY_LEVEL)
        if battery in offered:
            try:
                item.battery_pct = parse_battery(await link.read(battery))
            except (FithubError, GattError) as exc:
                item.error = f"battery unreadable: {exc}"
    finally:
        await link.disconnect()

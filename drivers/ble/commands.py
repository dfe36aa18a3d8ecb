"""What ``fithub ble scan`` and ``fithub ble record`` do, apart from printing.

Both take a transport factory so that the same code runs on bleak (the CLI) and
on bumble's virtual peripherals (the tests).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

from .manager import ManagerSettings, SensorManager, parse_sensors
from .recorder import Recorder, Save
from .scan import Found, scan
from .service import run_service
from .transport import Transport

TransportFactory = Callable[[], Awaitable[Transport]]


def bleak_factory(adapter: str | None) -> TransportFactory:
    async def make() -> Transport:
        from .bleak_transport import BleakTransport

        return BleakTransport(adapter)

    return make


async def scan_devices(factory: TransportFactory, seconds: float, *, connect: bool = True) -> list[Found]:
    transport = await factory()
    try:
        return await scan(transport, seconds, connect=connect)
    finally:
        await transport.close()


async def record_session(
    factory: TransportFactory,
    sensors: list[str],
    save: Save,
    *,
    person: str,
    idle_gap_s: float,
    min_duration_s: float = 0.0,
    settings: ManagerSettings | None = None,
    show: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> Recorder:
    """Record until Ctrl-C (SIGINT/SIGTERM) or until the session ends by the idle
    gap, then store it. Returns the recorder (``results`` has what was stored)."""
    specs = parse_sensors(sensors)
    recorder = Recorder(save, person=person, idle_gap_s=idle_gap_s, min_duration_s=min_duration_s)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass

    def tick(manager: SensorManager) -> None:
        if recorder.results:  # the idle gap ended the session: one session per command
            stop.set()
        if show:
            connected = sum(s.connected for s in manager.sensors.values())
            current = recorder.tracker.current
            elapsed = f"{time.time() - current.start_s:5.0f} s" if current else "idle"
            show(f"{elapsed}  {connected} sensor(s)  {recorder.live.line(time.time())}")

    transport = await factory()
    try:
        await run_service(transport, specs, recorder, stop, settings=settings, on_tick=tick)
    finally:
        await transport.close()
        for sig in handled:
            loop.remove_signal_handler(sig)
    return recorder

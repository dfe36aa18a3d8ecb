"""The running BLE service: the sensor manager feeding a recorder, on one event loop.

Readings arrive on the loop and only touch memory there; storing a finished
session or a weighing (database, archive) runs on one worker thread, in order,
so notifications keep flowing while a long ride is written. ``stop`` ends the
current session and stores it before returning. With ``publish_live``, each
second of a session in progress is also published as live values
(:mod:`drivers.ble.live`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from hub.events import LiveValues

from .live import LiveSampler, publish_seconds
from .manager import ManagerSettings, SensorManager, SensorSpec
from .readings import Reading, ScaleReading
from .recorder import Recorder
from .transport import Transport

log = logging.getLogger("fithub.ble")


async def run_service(
    transport: Transport,
    specs: list[SensorSpec],
    recorder: Recorder,
    stop: asyncio.Event,
    *,
    settings: ManagerSettings | None = None,
    tick_s: float = 1.0,
    spool_retry_s: float = 60.0,
    on_tick: Callable[[SensorManager], None] | None = None,
    on_manager: Callable[[SensorManager], None] | None = None,
    clock: Callable[[], float] = time.time,
    publish_live: Callable[[LiveValues], None] | None = None,
    live_source: str = "ble",
) -> SensorManager:
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ble-store")
    pending: set[asyncio.Future] = set()

    def offload(fn, *args) -> None:
        future = loop.run_in_executor(writer, fn, *args)
        pending.add(future)
        future.add_done_callback(_report(pending))

    sampler = LiveSampler(person=recorder.person, source=live_source) if publish_live else None

    def reading(r: Reading) -> None:
        if sampler is not None:
            sampler.add(r)
        finished = recorder.reading(r)
        if finished is not None:
            offload(recorder.store_recording, finished)

    def scale(s: ScaleReading) -> None:
        offload(recorder.store_weighing, s)

    manager = SensorManager(transport, specs, on_reading=reading, on_scale=scale, settings=settings, clock=clock)
    if on_manager:
        on_manager(manager)
    runner = loop.create_task(manager.run(stop))
    live = None
    if sampler is not None:
        live = loop.create_task(
            publish_seconds(sampler, publish_live, stop, active=lambda: recorder.tracker.current is not None, clock=clock)
        )
    offload(recorder.retry_spool)
    last_retry = clock()
    try:
        while not stop.is_set() and not runner.done():
            try:
                await asyncio.wait_for(stop.wait(), timeout=tick_s)
            except asyncio.TimeoutError:
                pass
            finished = recorder.tick(clock())
            if finished is not None:
                offload(recorder.store_recording, finished)
            if clock() - last_retry >= spool_retry_s:
                last_retry = clock()
                offload(recorder.retry_spool)
            if on_tick:
                on_tick(manager)
    finally:
        stop.set()
        await asyncio.gather(runner, *([live] if live else []), return_exceptions=True)
        finished = recorder.tracker.finish()
        if finished is not None:
            offload(recorder.store_recording, finished)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        writer.shutdown(wait=True)
    if runner.done() and not runner.cancelled() and runner.exception() is not None:
        raise runner.exception()
    return manager


def _report(pending: set) -> Callable[[asyncio.Future], None]:
    def done(future: asyncio.Future) -> None:
        pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            exc = future.exception()
            log.error("BLE storing failed: %s: %s", type(exc).__name__, exc)

    return done

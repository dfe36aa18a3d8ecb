"""``[sources.<name>] type = "ble"``: the BLE sensors as a push source of the daemon.

Runs the sensor manager and recorder (:mod:`drivers.ble.service`) on an event loop
of its own thread. Sessions and weighings are stored through ``hub.import_bytes``
(the normal pipeline: archive, dedupe, events in the same transaction). When the
adapter is missing or BlueZ is down it logs once, retries with backoff, and logs
once when it works again. ``stop()`` ends the current session and stores it.
While a session is being recorded, each second's combined values go to
``hub.publish_live`` (the MQTT notifier shows them as live heart rate, power...).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from hub.errors import ConfigError, SourceUnavailable
from hub.options import Option

from .manager import ManagerSettings, parse_sensors
from .recorder import Recorder
from .scale import parse_persons
from .service import run_service
from .session import DEFAULT_IDLE_GAP_S, DEFAULT_MIN_DURATION_S
from .transport import Transport

TransportFactory = Callable[[], Awaitable[Transport]]


class BleSource:
    """Push source (entry point ``ble``) for BLE fitness sensors: workout sessions become activities, weighings measurements."""

    OPTIONS: dict[str, Option] = {
        "sensors": Option(
            "list",
            "sensors to read: addresses (AA:BB:CC:DD:EE:FF) or advertised services (heart_rate, cycling_power, "
            "cycling_speed_cadence, running_speed_cadence, fitness_machine, weight_scale, body_composition, or a UUID)",
            example=["heart_rate", "cycling_power", "C0:11:22:33:44:55"],
        ),
        "idle_gap_s": Option("duration", "a session ends after this long without activity (no beat, no pedal stroke)", default=DEFAULT_IDLE_GAP_S, minimum=1),
        "min_duration_s": Option("duration", "shorter sessions are not stored (a strap put on for a moment)", default=DEFAULT_MIN_DURATION_S, minimum=0),
        "circumference_m": Option("float", "wheel circumference, for speed from wheel revolutions", default=2.105, minimum=0.5, maximum=4.0),
        "person": Option("str", "household member the sessions belong to; empty: the hub's default person", default=""),
        "persons": Option(
            "table",
            "scale users: person -> { user = <index on the scale>, weight_kg = [low, high] }; weighings without a known "
            "user index are attributed by weight range, else to the default person",
            default={},
            example={"alice": {"user": 1, "weight_kg": [50, 68]}, "bob": {"user": 2, "weight_kg": [68, 110]}},
        ),
        "adapter": Option("str", "BlueZ adapter, e.g. hci1; empty: the default adapter", default=""),
        "connect_timeout_s": Option("duration", "how long one connection attempt may take", default=20, minimum=1),
    }

    def __init__(self, name: str, options: dict, hub, *, transport_factory: TransportFactory | None = None) -> None:
        opts = {key: option.default for key, option in self.OPTIONS.items()}
        opts.update(options or {})
        self.name = name
        self.hub = hub
        self.log = logging.getLogger(f"fithub.ble.{name}")
        problems = []
        try:
            self.specs = parse_sensors(opts["sensors"] or [])
            if not self.specs:
                problems.append("sensors: list at least one sensor")
        except ConfigError as exc:
            problems.append(f"sensors: {exc}")
        try:
            self.persons = parse_persons(opts["persons"] or {})
        except ConfigError as exc:
            problems.append(str(exc))
        if problems:
            raise ConfigError(f"sources.{name}: " + "; ".join(problems))
        if hub.import_bytes is None:
            raise ConfigError(f"sources.{name}: the hub gives this source no import_bytes to store sessions with")
        self.person = opts["person"] or hub.default_person
        self.idle_gap_s = float(opts["idle_gap_s"])
        self.min_duration_s = float(opts["min_duration_s"])
        self.settings = ManagerSettings(circumference_m=float(opts["circumference_m"]), connect_timeout_s=float(opts["connect_timeout_s"]))
        self.adapter = opts["adapter"] or None
        self.transport_factory = transport_factory or self._bleak
        self.recorder: Recorder | None = None
        self.manager = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = threading.Event()

    async def _bleak(self) -> Transport:
        from .bleak_transport import BleakTransport  # bleak is imported only when really used

        return BleakTransport(self.adapter)

    # -- PushSource ----------------------------------------------------------------

    def start(self) -> None:
        self.recorder = Recorder(
            self.hub.import_bytes,
            person=self.person,
            idle_gap_s=self.idle_gap_s,
            min_duration_s=self.min_duration_s,
            persons=self.persons,
            spool=Path(self.hub.home) / "ble-spool" / self.name,
        )
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"ble-{self.name}", daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop(self, timeout_s: float) -> None:
        self._stopping.set()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self.log.error("BLE source %s did not stop within %.0f s", self.name, timeout_s)

    # -- the loop thread -------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready.set()
        delay, failing = 2.0, False
        while not self._stopping.is_set():
            try:
                transport = await self.transport_factory()
                try:
                    await run_service(
                        transport, self.specs, self.recorder, self._stop, settings=self.settings,
                        on_manager=lambda m: setattr(self, "manager", m),
                        publish_live=getattr(self.hub, "publish_live", None), live_source=self.name,
                    )
                finally:
                    await transport.close()
                if failing:
                    self.log.info("BLE source %s works again", self.name)
                return
            except SourceUnavailable as exc:
                if not failing:
                    self.log.error("BLE source %s unavailable: %s; retrying with backoff", self.name, exc)
                    failing = True
                self._stop = asyncio.Event()
                try:
                    await asyncio.wait_for(self._wait_stopping(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 300.0)

    async def _wait_stopping(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(0.2)

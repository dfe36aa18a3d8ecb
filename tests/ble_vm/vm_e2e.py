"""End to end through the real stack, run *inside* the VM by ``run_vm.sh``:

    fithub (BleakTransport) -> bleak -> D-Bus -> bluetoothd -> kernel HCI -> /dev/vhci
      -> bumble Controller -> LocalLink -> bumble Controllers of the virtual peripherals

No mock anywhere: BlueZ scans, connects, discovers the GATT tables, enables
notifications and indications and reports the forced disconnect. Named
``vm_e2e.py`` (not ``test_*``) so the ordinary test run never collects it;
``tests/test_ble_vm.py`` runs it in the VM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.manager import ManagerSettings, SensorManager, parse_sensors
from drivers.ble.recorder import Recorder, pipeline_saver
from drivers.ble.scale import parse_persons
from drivers.ble.scan import scan
from drivers.ble.service import run_service
from drivers.ble.virtual import HeartRateStrap, PowerMeter, SpeedCadenceSensor, Trainer, WeightScale
from hub.pipeline import Imported
from hub.storage.repository import Store

STRAP, POWER, CSC, TRAINER, SCALE = (f"C1:00:00:00:00:0{i}" for i in range(1, 6))
OUT = Path(os.environ.get("FITHUB_VM_OUT", "/tmp"))
log = logging.getLogger("fithub.ble.vm")


async def _adapter_path(bus: MessageBus, timeout_s: float) -> str:
    """Wait for bluetoothd to publish the vhci controller as an adapter."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        reply = await bus.call(Message(destination="org.bluez", path="/", interface="org.freedesktop.DBus.ObjectManager",
                                       member="GetManagedObjects"))
        if reply.message_type == MessageType.METHOD_RETURN:
            for path, interfaces in reply.body[0].items():
                if "org.bluez.Adapter1" in interfaces:
                    return path
        await asyncio.sleep(0.2)
    raise AssertionError("BlueZ published no adapter for the vhci controller")


async def _power_on(bus: MessageBus, path: str, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while True:
        reply = await bus.call(Message(destination="org.bluez", path=path, interface="org.freedesktop.DBus.Properties",
                                       member="Set", signature="ssv", body=["org.bluez.Adapter1", "Powered", Variant("b", True)]))
        if reply.message_type == MessageType.METHOD_RETURN:
            return
        if time.monotonic() > end:
            raise AssertionError(f"cannot power on {path}: {reply.body}")
        await asyncio.sleep(0.2)  # the adapter is still initialising


async def stream(sensors, seconds: float, rate_hz: float = 4.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for sensor in sensors:
            if sensor.connected:
                await sensor.send(time.time())
        await asyncio.sleep(1 / rate_hz)


async def until(predicate, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def scenario(tmp: Path) -> dict:
    timings: dict[str, float] = {}
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    async with await open_transport("vhci") as hci:
        link = LocalLink()
        # The controller BlueZ drives through /dev/vhci, on the same virtual air as the peripherals.
        Controller("fithub-bluez", host_source=hci.source, host_sink=hci.sink, link=link)
        adapter = await _adapter_path(bus, 20)
        await _power_on(bus, adapter)
        bus.disconnect()
        strap, power = HeartRateStrap(link, STRAP, bpm=140), PowerMeter(link, POWER, power_w=200, cadence_rpm=90)
        csc, trainer = SpeedCadenceSensor(link, CSC, speed_mps=8.0), Trainer(link, TRAINER, power_w=180)
        scale = WeightScale(link, SCALE)
        workout = [strap, power, csc, trainer]
        for sensor in [*workout, scale]:
            await sensor.start()

        # fithub ble scan, through BlueZ. Listening only: with BlueZ as the central,
        # a disconnect *it* initiates was seen to leave bumble's virtual peripheral
        # believing it is still connected (it then never advertises again), so the
        # probing connections of `ble scan` would take the sensors out of this test.
        # Battery and GATT discovery through BlueZ are checked by the manager below.
        t = time.monotonic()
        found = {f.address: f for f in await scan(BleakTransport(), 4.0, connect=False)}
        timings["scan_s"] = time.monotonic() - t
        log.info("scan found %s", found)

        store = Store(f"sqlite:///{tmp / 'fithub.db'}", tmp / "home")
        persons = parse_persons({"bob": {"user": 2, "weight_kg": [68, 110]}})
        recorder = Recorder(pipeline_saver(store), person="alice", idle_gap_s=3, min_duration_s=2, persons=persons)
        stop = asyncio.Event()
        managers: list[SensorManager] = []
        settings = ManagerSettings(connect_timeout_s=20, retry_min_s=0.5, retry_max_s=4)
        specs = parse_sensors([STRAP, "cycling_power", "cycling_speed_cadence", "fitness_machine", "weight_scale"])
        service = asyncio.create_task(run_service(BleakTransport(), specs, recorder, stop, settings=settings,
                                                  tick_s=0.25, on_manager=managers.append))
        connected = lambda n: managers and sum(s.connected and bool(s.profiles) for s in managers[0].sensors.values()) >= n  # noqa: E731
        timings["connect_all_s"] = await until(lambda: connected(5), 90, "five sensors connected through BlueZ")
        await stream(workout, 4.0)
        await power.drop()  # the power meter cuts the link
        states = managers[0].sensors
        await until(lambda: states[POWER].drops == 1, 20, "BlueZ to report the drop")
        timings["reconnect_s"] = await until(lambda: states[POWER].connected, 60, "the power meter reconnected")
        await stream(workout, 3.0)
        local = datetime(2026, 11, 30, 7, 15, 0)
        await scale.weigh(82.4, local, user=2)
        await until(lambda: recorder.weighings, 20, "the weighing stored")
        await until(lambda: recorder.results, 20, "the idle gap to end and store the session")
        stop.set()
        await service
        sent = {s.address: s.sent for s in workout}
        received = {a: s.readings for a, s in states.items()}
        return {"found": found, "states": states, "recorder": recorder, "store": store, "timings": timings,
                "sent": sent, "received": received}


def test_real_bluez_stack_end_to_end(tmp_path):
    handler = logging.FileHandler(OUT / "fithub.log")
    handler.setFormatter(logging.Formatter("%(relativeCreated)8.0f %(name)s %(levelname)s %(message)s"))
    for name, level in (("fithub", logging.DEBUG), ("bleak", logging.DEBUG), ("bleak_retry_connector", logging.DEBUG)):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(level)
    result = asyncio.run(asyncio.wait_for(scenario(tmp_path), timeout=200))
    found, states, recorder, store = result["found"], result["states"], result["recorder"], result["store"]
    (OUT / "timings.txt").write_text(f"{result['timings']}\nsent {result['sent']}\nreceived {result['received']}\n")

    # scan: every peripheral with its name and advertised service, through BlueZ
    assert {STRAP, POWER, CSC, TRAINER, SCALE} <= set(found)
    assert found[STRAP].name == "Virtual HRM" and found[STRAP].services == ["heart_rate"]
    assert found[TRAINER].services == ["fitness_machine"] and found[SCALE].services == ["weight_scale"]
    assert all(found[a].rssi is not None for a in (STRAP, POWER, CSC, TRAINER, SCALE))

    # connections (GATT discovered, battery read through BlueZ), the forced drop and the reconnection
    assert {a: s.profiles for a, s in states.items()} == {
        STRAP: ("heart_rate",), POWER: ("cycling_power",), CSC: ("cycling_speed_cadence",),
        TRAINER: ("indoor_bike",), SCALE: ("weight_scale",),
    }
    assert all(s.battery_pct == 87 for s in states.values())
    assert states[POWER].drops == 1 and states[POWER].connects == 2
    assert all(s.bad_packets == 0 for s in states.values())
    # notifications arrived, each once (none lost, none delivered twice after the reconnect)
    assert all(0.8 * n <= states[a].readings <= n for a, n in result["sent"].items()), (result["sent"], result["received"])

    # the session, stored through the pipeline
    [(session, outcome)] = recorder.results
    assert isinstance(outcome, Imported) and outcome.activity_ids
    activity = store.get_activity(outcome.activity_ids[0]).activity
    assert (activity.person, activity.sport, activity.sub_sport) == ("alice", "cycling", "indoor_cycling")
    assert session.combined.sources["power_w"] == POWER and session.combined.sources["hr_bpm"] == STRAP
    assert session.combined.sources["speed_mps"] == CSC
    assert set(activity.samples.values("hr_bpm")) == {140.0}
    assert set(activity.samples.values("power_w")) == {200.0}
    assert activity.elapsed_s >= 6

    # the weighing, attributed by the scale's user index
    [(weighing, person, stored)] = recorder.weighings
    assert person == "bob" and isinstance(stored, Imported)
    [measurement] = store.measurements(person="bob", kind="weight_kg")
    assert round(measurement.value, 3) == 82.4
    assert measurement.time == datetime(2026, 11, 30, 7, 15).astimezone().astimezone(timezone.utc)
    store.close()

"""The BLE sensor manager, sessions and storage, against google bumble's virtual
peripherals on an in-process LocalLink (no kernel Bluetooth needed).

The manager is the real code; only the transport differs from production
(``BumbleTransport`` instead of ``BleakTransport``): bleak needs BlueZ, which this
machine's kernel cannot run. ``tests/test_ble_vm.py`` runs the bleak transport
through BlueZ in a VM against the same peripherals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("bumble", reason="bumble (test extra) is needed for the virtual BLE peripherals")

from bumble.link import LocalLink  # noqa: E402

from connectors.export.fit import write_fit  # noqa: E402
from drivers.ble.bumble_transport import BumbleTransport  # noqa: E402
from drivers.ble.combine import combine  # noqa: E402
from drivers.ble.manager import ManagerSettings, SensorManager, parse_sensor, parse_sensors  # noqa: E402
from drivers.ble.readings import CYCLING_POWER, HEART_RATE, INDOOR_BIKE, TREADMILL, Reading, ScaleReading  # noqa: E402
from drivers.ble.recorder import Recorder, pipeline_saver  # noqa: E402
from drivers.ble.scale import attribute, parse_persons  # noqa: E402
from drivers.ble.service import run_service  # noqa: E402
from drivers.ble.session import SessionTracker, infer_sport, to_activity  # noqa: E402
from drivers.ble.source import BleSource  # noqa: E402
from drivers.ble.transport import full_uuid  # noqa: E402
from drivers.ble.virtual import HeartRateStrap, PowerMeter, SpeedCadenceSensor, Trainer, WeightScale, add_device  # noqa: E402
from hub.errors import ConfigError  # noqa: E402
from hub.model import Activity, SampleStream  # noqa: E402
from hub.pipeline import Duplicate, Imported  # noqa: E402
from hub.plugins import Hub  # noqa: E402
from hub.storage.repository import Store  # noqa: E402

STRAP, POWER, CSC, TRAINER, SCALE = (f"C1:00:00:00:00:0{i}" for i in range(1, 6))
FAST = ManagerSettings(connect_timeout_s=5, retry_min_s=0.2, retry_max_s=1.0)


# -- helpers ---------------------------------------------------------------------------


class Rig:
    """Four workout sensors (+ a scale) and a central on one LocalLink."""

    def __init__(self, with_scale: bool = False) -> None:
        self.link = LocalLink()
        self.strap = HeartRateStrap(self.link, STRAP, bpm=140)
        self.power = PowerMeter(self.link, POWER, power_w=200, cadence_rpm=90)
        self.csc = SpeedCadenceSensor(self.link, CSC, speed_mps=8.0, cadence_rpm=85)
        self.trainer = Trainer(self.link, TRAINER, power_w=180, cadence_rpm=88, speed_mps=9.0)
        self.workout = [self.strap, self.power, self.csc, self.trainer]
        self.scale = WeightScale(self.link, SCALE) if with_scale else None
        self.central = add_device(self.link, "C0:00:00:00:00:00", "fithub")

    async def start(self) -> BumbleTransport:
        for sensor in [*self.workout, *([self.scale] if self.scale else [])]:
            await sensor.start()
        await self.central.power_on()
        return BumbleTransport(self.central)

    async def stream(self, seconds: float, rate_hz: float = 4.0, sensors=None) -> None:
        sensors = sensors or self.workout
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for sensor in sensors:
                if sensor.connected:
                    await sensor.send(time.time())
            await asyncio.sleep(1 / rate_hz)


async def until(predicate, timeout_s: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def all_connected(manager: SensorManager, n: int) -> bool:
    return sum(s.connected and bool(s.profiles) for s in manager.sensors.values()) >= n


def reading(t: float, sensor: str, profile: str, **channels: float) -> Reading:
    return Reading(t, sensor, profile, dict(channels))


# -- pure parts ----------------------------------------------------------------------------


def test_sensor_specs_by_address_service_name_and_uuid():
    assert parse_sensor("c1:00:00:00:00:0a").address == "C1:00:00:00:00:0A"
    assert parse_sensor("heart_rate").service == full_uuid(0x180D)
    assert parse_sensor("service:cycling_power").service == full_uuid(0x1818)
    assert parse_sensor("ftms").service == full_uuid(0x1826)
    assert parse_sensor("0x1816").service == full_uuid(0x1816)
    with pytest.raises(ConfigError) as err:
        parse_sensors(["heart_rate", "my strap", "12:34"])
    assert "'my strap'" in str(err.value) and "'12:34'" in str(err.value)  # every problem at once


def test_combine_picks_one_sensor_per_channel_holds_short_silences_and_marks_gaps():
    t0 = 1_700_000_000.0
    readings = []
    for i in range(10):
        readings.append(reading(t0 + i + 0.1, TRAINER, INDOOR_BIKE, power_w=150, hr_bpm=100, speed_mps=5.0, distance_m=1000 + 5 * i))
        if i not in (4, 6, 7, 8):  # strap silent for 1 s, then for 3 s
            readings.append(reading(t0 + i + 0.5, STRAP, HEART_RATE, hr_bpm=120 + i))
        if i < 9:
            readings.append(reading(t0 + i + 0.2, POWER, CYCLING_POWER, power_w=200, cadence_rpm=90))
            readings.append(reading(t0 + i + 0.7, POWER, CYCLING_POWER, power_w=210, cadence_rpm=92))
    combined = combine(readings, t0, t0 + 10)
    cols = combined.samples.columns
    assert combined.samples.offsets_s == [float(i) for i in range(10)]
    assert combined.sources == {"hr_bpm": STRAP, "power_w": POWER, "cadence_rpm": POWER, "speed_mps": TRAINER, "distance_m": TRAINER}
    assert cols["power_w"][:9] == [205.0] * 9  # the mean of the second, from the power meter, not the trainer
    assert cols["power_w"][9] == 210.0  # held: the last value is 0.8 s + 1 s old (within 2.5 s)
    assert cols["hr_bpm"][4] == 123  # one silent second: held
    # Silent from 5.5 s to 9.5 s: held while the last value is at most 2.5 s old at
    # the end of the second, then a gap.
    assert cols["hr_bpm"][6:10] == [125, 125, None, 129]
    assert cols["distance_m"][0] == 0 and cols["distance_m"][9] == 45  # the trainer's odometer, from 0


def test_distance_is_integrated_from_a_speed_sensor_without_odometer():
    t0 = 1_700_000_000.0
    readings = [reading(t0 + i + 0.5, CSC, "cycling_speed_cadence", speed_mps=8.0) for i in range(5)]
    readings += [reading(t0 + i + 0.5, TRAINER, INDOOR_BIKE, distance_m=500.0 + i) for i in range(5)]
    combined = combine(readings, t0, t0 + 5)
    assert combined.samples.columns["distance_m"] == [8.0, 16.0, 24.0, 32.0, 40.0]
    assert combined.sources["distance_m"] == CSC


def test_session_starts_on_activity_and_ends_after_the_idle_gap():
    tracker = SessionTracker(idle_gap_s=5, min_duration_s=3)
    t0 = 1_700_000_000.3
    assert tracker.add(reading(t0 - 5, TRAINER, INDOOR_BIKE, power_w=0, cadence_rpm=0)) is None
    assert tracker.current is None  # an idle trainer does not start a session
    for i in range(10):
        assert tracker.add(reading(t0 + i, TRAINER, INDOOR_BIKE, power_w=150)) is None
    for i in range(10, 14):  # stopped pedalling: zeros keep coming
        assert tracker.add(reading(t0 + i, TRAINER, INDOOR_BIKE, power_w=0)) is None
    assert tracker.tick(t0 + 9 + 4.9) is None
    finished = tracker.tick(t0 + 9 + 5)
    assert finished is not None and tracker.current is None
    assert finished.start_s == math.floor(t0)
    assert max(r.time_s for r in finished.readings) == t0 + 9  # the idle tail is not recorded
    # A blip shorter than min_duration_s is not a session.
    tracker.add(reading(t0 + 100, STRAP, HEART_RATE, hr_bpm=80))
    tracker.add(reading(t0 + 101, STRAP, HEART_RATE, hr_bpm=80))
    assert tracker.tick(t0 + 200) is None


def test_a_new_activity_after_a_long_gap_ends_the_previous_session():
    tracker = SessionTracker(idle_gap_s=5, min_duration_s=0)
    for i in range(5):
        tracker.add(reading(1000.0 + i, STRAP, HEART_RATE, hr_bpm=100))
    finished = tracker.add(reading(1100.0, STRAP, HEART_RATE, hr_bpm=100))
    assert finished is not None and len(finished.readings) == 5
    assert tracker.current is not None and tracker.current.start_s == 1100


@pytest.mark.parametrize(
    ("profiles", "expected"),
    [
        ({HEART_RATE}, ("generic", None)),
        ({HEART_RATE, CYCLING_POWER}, ("cycling", "indoor_cycling")),
        ({INDOOR_BIKE}, ("cycling", "indoor_cycling")),
        ({HEART_RATE, TREADMILL}, ("running", "treadmill")),
        ({"running_speed_cadence"}, ("running", None)),
        ({"cycling_speed_cadence"}, ("cycling", None)),
    ],
)
def test_sport_is_inferred_from_the_sensors(profiles, expected):
    assert infer_sport(profiles) == expected


def test_scale_attribution_by_user_index_then_weight_range():
    rules = parse_persons({"alice": {"user": 1, "weight_kg": [45, 68]}, "bob": {"user": 2, "weight_kg": [66, 110]}})
    when = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
    scale = lambda kg, user=None: ScaleReading(when, SCALE, {"weight_kg": kg}, user)  # noqa: E731
    assert attribute(scale(90.0, user=1), rules, "default")[0] == "alice"  # the index beats the range
    assert attribute(scale(55.0), rules, "default")[0] == "alice"
    assert attribute(scale(80.0, user=7), rules, "default")[0] == "bob"  # unknown index: by range
    person, why = attribute(scale(67.0), rules, "default")
    assert person == "default" and "alice, bob" in why  # ambiguous: kept, not guessed
    assert attribute(scale(30.0), rules, "default")[0] == "default"
    with pytest.raises(ConfigError) as err:
        parse_persons({"carol": {"user": "x", "weight_kg": [80, 60]}, "dave": 3})
    assert "carol.user" in str(err.value) and "carol.weight_kg" in str(err.value) and "dave" in str(err.value)


# -- against virtual peripherals ----------------------------------------------------------


def test_four_sensors_are_found_connected_and_combined_into_1hz_samples():
    async def main():
        rig = Rig()
        transport = await rig.start()
        readings: list[Reading] = []
        specs = parse_sensors([STRAP, "cycling_power", "cycling_speed_cadence", "fitness_machine"])
        manager = SensorManager(transport, specs, on_reading=readings.append, settings=FAST)
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop))
        await until(lambda: all_connected(manager, 4), what="four sensors connected")
        start = time.time()
        await rig.stream(3.2)
        end = time.time()
        stop.set()
        await task
        return manager, readings, start, end

    manager, readings, start, end = asyncio.run(main())
    states = manager.sensors
    assert set(states) == {STRAP, POWER, CSC, TRAINER}
    assert {a: s.profiles for a, s in states.items()} == {
        STRAP: ("heart_rate",), POWER: ("cycling_power",), CSC: ("cycling_speed_cadence",), TRAINER: ("indoor_bike",)
    }
    assert all(s.battery_pct == 87 for s in states.values())
    assert not any(s.connected for s in states.values())  # stop disconnects everything
    combined = combine([r for r in readings if r.time_s >= start], math.floor(start), end)
    cols = combined.samples.columns
    assert combined.sources == {"hr_bpm": STRAP, "power_w": POWER, "cadence_rpm": POWER, "speed_mps": CSC, "distance_m": CSC}
    assert len(combined.samples) == math.ceil(end - math.floor(start))
    assert set(cols["hr_bpm"]) == {140.0}
    assert set(cols["power_w"]) == {200.0}  # the power meter, not the trainer's 180 W
    assert all(abs(v - 8.0) < 0.3 for v in cols["speed_mps"][1:])  # wheel revolutions -> m/s
    assert all(abs(v - 90) < 3 for v in cols["cadence_rpm"][1:])  # crank revolutions -> rpm
    assert combined.rr_s and all(abs(rr - 60 / 140) < 0.002 for rr in combined.rr_s)


def test_forced_disconnect_is_followed_by_a_reconnect_and_sane_values():
    async def main():
        rig = Rig()
        transport = await rig.start()
        readings: list[Reading] = []
        manager = SensorManager(transport, parse_sensors([STRAP, POWER]), on_reading=readings.append, settings=FAST)
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop))
        sensors = [rig.strap, rig.power]
        await until(lambda: all_connected(manager, 2), what="two sensors connected")
        await rig.stream(1.0, sensors=sensors)
        await rig.power.drop()  # the peripheral cuts the link (out of range, battery swap)
        await until(lambda: manager.sensors[POWER].drops == 1, what="the drop noticed")
        dropped_at = time.time()
        await until(lambda: manager.sensors[POWER].connected, what="reconnection")
        reconnected_after = time.time() - dropped_at
        await rig.stream(1.0, sensors=sensors)
        await manager.drop(STRAP)  # and from our side
        await until(lambda: manager.sensors[STRAP].drops == 1 and manager.sensors[STRAP].connected, what="strap back")
        await rig.stream(1.0, sensors=sensors)
        stop.set()
        await task
        return manager, readings, dropped_at, reconnected_after

    manager, readings, dropped_at, reconnected_after = asyncio.run(main())
    power = manager.sensors[POWER]
    assert (power.connects, power.drops, power.bad_packets) == (2, 1, 0)
    assert manager.sensors[STRAP].connects == 2
    assert reconnected_after < 3.0
    after = [r for r in readings if r.sensor == POWER and r.time_s > dropped_at]
    assert len(after) >= 6
    # Counters moved on during the drop: the decoder restarted instead of computing across the gap.
    cadences = [r.channels["cadence_rpm"] for r in after if "cadence_rpm" in r.channels]
    assert cadences and all(80 < c < 100 for c in cadences)


def test_a_malformed_packet_is_counted_and_the_connection_stays():
    async def main():
        rig = Rig()
        transport = await rig.start()
        readings: list[Reading] = []
        manager = SensorManager(transport, parse_sensors([POWER]), on_reading=readings.append, settings=FAST)
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop))
        await until(lambda: all_connected(manager, 1), what="power meter connected")
        await rig.power.device.notify_subscribers(rig.power.char, b"\x20\x00\xc8")  # crank data cut off
        await rig.stream(0.6, sensors=[rig.power])
        await until(lambda: len(readings) >= 2, what="good readings after the bad one")
        stop.set()
        await task
        return manager, readings

    manager, readings = asyncio.run(main())
    state = manager.sensors[POWER]
    assert state.bad_packets == 1 and state.connects == 1 and state.drops == 0
    assert all(r.channels["power_w"] == 200 for r in readings)


def _watch_file(start: datetime, seconds: int) -> bytes:
    """The same workout as a watch recorded it: wrist heart rate, no power."""
    samples = SampleStream(
        offsets_s=[float(i) for i in range(seconds)],
        columns={"hr_bpm": [150.0] * seconds, "speed_mps": [8.0] * seconds},
    )
    watch = Activity(sport="cycling", sub_sport="indoor_cycling", start=start, elapsed_s=float(seconds), samples=samples)
    return write_fit(watch)


def test_a_session_ends_after_the_idle_gap_is_stored_and_merges_with_the_watch_file(db_url, tmp_path):
    store = Store(db_url, tmp_path / "home")
    stored: list[str] = []
    recorder = Recorder(pipeline_saver(store), person="alice", idle_gap_s=1.5, min_duration_s=2, on_stored=lambda n, o: stored.append(n))

    async def main():
        rig = Rig()
        transport = await rig.start()
        stop = asyncio.Event()
        managers = []
        service = asyncio.create_task(
            run_service(transport, parse_sensors([STRAP, "cycling_power", "csc", "ftms"]), recorder, stop,
                        settings=FAST, tick_s=0.2, on_manager=managers.append)
        )
        await until(lambda: managers and all_connected(managers[0], 4), what="four sensors connected")
        await rig.stream(4.0)
        await until(lambda: stored, timeout_s=5, what="the idle gap to end the session")  # sensors silent now
        stop.set()
        await service

    asyncio.run(main())
    assert len(recorder.results) == 1
    result, outcome = recorder.results[0]
    assert isinstance(outcome, Imported) and len(outcome.activity_ids) == 1
    assert result.source == "ble:power"
    assert result.combined.sources["power_w"] == POWER and result.combined.sources["hr_bpm"] == STRAP

    stored_activity = store.get_activity(outcome.activity_ids[0])
    activity = stored_activity.activity
    assert (activity.person, activity.sport, activity.sub_sport) == ("alice", "cycling", "indoor_cycling")
    assert activity.provenance.source == "ble:power:fit"
    assert 4 <= len(activity.samples) <= 6
    assert set(activity.samples.values("hr_bpm")) == {140.0}
    assert set(activity.samples.values("power_w")) == {200.0}
    assert activity.avg_power_w == pytest.approx(200, abs=1)
    assert activity.hrv_rr_s and abs(activity.hrv_rr_s[0] - 60 / 140) < 0.002
    assert store.raw_bytes(outcome.sha256)[8:12] == b".FIT"  # the archived copy is a FIT file: it exports as FIT

    # The watch's file of the same workout joins it; heart rate stays the strap's, power the meter's.
    watch = _watch_file(activity.start, len(activity.samples))
    joined = pipeline_saver(store)(watch, name="watch.fit", source="file", person="alice")
    assert isinstance(joined, Imported) and joined.merged_ids == outcome.activity_ids
    merged = store.get_activity(outcome.activity_ids[0])
    assert set(merged.activity.samples.values("hr_bpm")) == {140.0}
    assert set(merged.activity.samples.values("power_w")) == {200.0}
    ble_version = store.find_version(outcome.activity_ids[0], outcome.sha256[:8])
    assert merged.channel_sources["hr_bpm"] == ble_version == merged.channel_sources["power_w"]
    # Storing the same session again is recognised as the same bytes.
    again = pipeline_saver(store)(write_fit(result.activity), name="again.fit", source="ble:power", person="alice")
    assert isinstance(again, Duplicate)
    store.close()


def test_scale_weighings_become_measurements_of_the_right_person(db_url, tmp_path):
    store = Store(db_url, tmp_path / "home")
    persons = parse_persons({"alice": {"user": 1, "weight_kg": [45, 68]}, "bob": {"user": 2, "weight_kg": [68, 110]}})
    recorder = Recorder(pipeline_saver(store), person="default", persons=persons)
    local = datetime(2026, 11, 30, 7, 15, 0)  # the scale's clock: local time, no zone

    async def main():
        rig = Rig(with_scale=True)
        transport = await rig.start()
        stop = asyncio.Event()
        managers = []
        service = asyncio.create_task(
            run_service(transport, parse_sensors(["weight_scale"]), recorder, stop, settings=FAST, tick_s=0.2, on_manager=managers.append)
        )
        await until(lambda: managers and all_connected(managers[0], 1), what="scale connected")
        await rig.scale.weigh(82.4, local, user=2)
        await rig.scale.weigh(58.1, local + timedelta(minutes=3))  # no user index: by range
        await rig.scale.weigh(82.4, local, user=2)  # the scale re-sends its memory
        await until(lambda: len(recorder.weighings) == 3, what="three weighings stored")
        stop.set()
        await service

    asyncio.run(main())
    outcomes = [o for _, _, o in recorder.weighings]
    assert [p for _, p, _ in recorder.weighings] == ["bob", "alice", "bob"]
    assert isinstance(outcomes[0], Imported) and isinstance(outcomes[1], Imported)
    assert isinstance(outcomes[2], Duplicate)  # same weighing, same bytes: stored once
    bob = store.measurements(person="bob", kind="weight_kg")
    alice = store.measurements(person="alice", kind="weight_kg")
    assert [round(m.value, 3) for m in bob] == [82.4] and [round(m.value, 3) for m in alice] == [58.1]
    assert bob[0].time == local.astimezone().astimezone(timezone.utc)
    store.close()


def test_the_ble_source_plugin_stores_the_running_session_when_stopped(tmp_path, caplog):
    """The daemon's view: a push source with OPTIONS, started and stopped; the
    session in progress at shutdown is stored, not lost."""
    caplog.set_level(logging.INFO, logger="fithub.ble")
    home = tmp_path / "home"
    store = Store(f"sqlite:///{tmp_path / 'fithub.db'}", home)
    save = pipeline_saver(store)
    hub = Hub(store=store, home=home, import_bytes=lambda data, **kw: save(data, **kw), default_person="carol")
    streaming = {}

    async def transport_factory():  # runs on the source's own event loop
        rig = Rig()
        transport = await rig.start()
        stop = asyncio.Event()
        streaming["stop"] = stop

        async def feed():
            while not stop.is_set():
                await rig.stream(0.25)

        streaming["task"] = asyncio.get_running_loop().create_task(feed())
        return transport

    with pytest.raises(ConfigError) as err:
        BleSource("bike", {"sensors": ["nonsense"], "persons": {"x": 1}}, hub, transport_factory=transport_factory)
    assert "sources.bike" in str(err.value) and "nonsense" in str(err.value) and "persons.x" in str(err.value)

    source = BleSource(
        "bike", {"sensors": ["heart_rate", "cycling_power"], "idle_gap_s": 60, "min_duration_s": 1}, hub,
        transport_factory=transport_factory,
    )
    source.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        manager = source.manager
        if manager is not None and all_connected(manager, 2) and source.recorder.tracker.current and source.recorder.tracker.current.duration_s > 2.5:
            break
        time.sleep(0.05)
    source.stop(10)
    assert len(source.recorder.results) == 1, caplog.text
    result, outcome = source.recorder.results[0]
    assert isinstance(outcome, Imported)
    stored = store.get_activity(outcome.activity_ids[0]).activity
    assert stored.person == "carol" and stored.sport == "cycling"
    assert set(stored.samples.values("power_w")) == {200.0}
    store.close()


def test_an_unreachable_database_spools_the_session_and_imports_it_later(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'fithub.db'}", tmp_path / "home")
    working = pipeline_saver(store)
    down = {"yes": True}

    def save(data, **kw):
        if down["yes"]:
            raise OSError("database unreachable")
        return working(data, **kw)

    recorder = Recorder(save, person="alice", min_duration_s=0, spool=tmp_path / "spool")
    tracker = SessionTracker(idle_gap_s=5, min_duration_s=0)
    t0 = 1_764_500_000.0
    for i in range(30):
        tracker.add(reading(t0 + i, STRAP, HEART_RATE, hr_bpm=120.0))
    recording = tracker.finish()
    recorder.store_recording(recording)
    assert len(list((tmp_path / "spool").glob("*.fit"))) == 1 and store.list_activities() == []
    assert recorder.retry_spool() == 0  # still down: kept
    down["yes"] = False
    assert recorder.retry_spool() == 1
    assert list((tmp_path / "spool").iterdir()) == []
    [stored] = store.list_activities()
    assert stored.activity.sport == "generic" and stored.activity.provenance.source == "ble:hr:fit"
    store.close()


def test_activity_from_a_recording_keeps_the_rr_intervals_of_the_chosen_strap():
    tracker = SessionTracker(idle_gap_s=5, min_duration_s=0)
    for i in range(5):
        tracker.add(replace(reading(2000.0 + i, STRAP, HEART_RATE, hr_bpm=120.0), rr_s=(0.5,)))
        tracker.add(reading(2000.2 + i, TRAINER, INDOOR_BIKE, hr_bpm=119.0, power_w=150.0))
    result = to_activity(tracker.finish(), person="p")
    assert result.activity.hrv_rr_s == (0.5,) * 5
    assert result.combined.sources["hr_bpm"] == STRAP and result.activity.sport == "cycling"


def test_scan_lists_fitness_devices_with_measurements_and_battery():
    from drivers.ble.commands import scan_devices

    async def main():
        rig = Rig(with_scale=True)
        transport = await rig.start()

        async def factory():
            return transport

        return await scan_devices(factory, 0.5)

    found = {f.address: f for f in asyncio.run(main())}
    assert set(found) == {STRAP, POWER, CSC, TRAINER, SCALE}
    assert found[TRAINER].services == ["fitness_machine"] and found[TRAINER].measurements == ["indoor_bike"]
    assert found[STRAP].name == "Virtual HRM" and found[STRAP].rssi is not None
    assert all(f.battery_pct == 87 and f.fitness and f.error is None for f in found.values())


def test_record_command_stores_one_session_when_the_idle_gap_ends(tmp_path):
    from drivers.ble.commands import record_session

    store = Store(f"sqlite:///{tmp_path / 'fithub.db'}", tmp_path / "home")
    lines: list[str] = []

    async def main():
        rig = Rig()
        transport = await rig.start()

        async def factory():
            return transport

        async def ride():
            await asyncio.sleep(0.5)
            await rig.stream(3.0, sensors=[rig.strap, rig.trainer])

        feeder = asyncio.create_task(ride())
        recorder = await asyncio.wait_for(
            record_session(factory, [STRAP, "ftms"], pipeline_saver(store), person="dan", idle_gap_s=1.0,
                           settings=FAST, show=lines.append),
            timeout=30,
        )
        await feeder
        return recorder

    recorder = asyncio.run(main())
    [(result, outcome)] = recorder.results
    assert isinstance(outcome, Imported)
    activity = store.get_activity(outcome.activity_ids[0]).activity
    assert activity.person == "dan" and activity.sport == "cycling"
    assert result.combined.sources == {"hr_bpm": STRAP, "power_w": TRAINER, "cadence_rpm": TRAINER,
                                       "speed_mps": TRAINER, "distance_m": TRAINER}
    assert any("140 bpm" in line and "180 W" in line for line in lines)  # the live line showed values
    store.close()


def test_cli_ble_scan_without_bluez_fails_with_a_clear_message(tmp_path):
    import os

    from typer.testing import CliRunner

    from cli import app

    if os.path.exists("/run/dbus/system_bus_socket") or os.path.exists("/var/run/dbus/system_bus_socket"):
        pytest.skip("a system D-Bus is present here: `ble scan` would really scan")
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "ble", "scan", "--seconds", "0.2"])
    assert result.exit_code == 1
    assert "bluetoothd" in result.output and "Traceback" not in result.output

"""Live values: BLE readings combined per second, handed off the sensor path by the
daemon's bounded fan-out, and published by the MQTT notifier for Home Assistant.

The end-to-end tests run the real daemon (in this process) with the real BLE source
on google bumble's virtual sensors (an in-process LocalLink, as in
``tests/test_ble_manager.py``) and the real MQTT notifier on the real Mosquitto at
127.0.0.1:1883, watched by a real subscriber.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from connectors.mqtt import ha_discovery as ha
from drivers.ble.combine import combine
from drivers.ble.live import LiveSampler
from drivers.ble.readings import CYCLING_POWER, HEART_RATE, INDOOR_BIKE, Reading
from hub.events import LIVE_CHANNELS, LiveValues
from hub.live import LiveFanout, live_consumers

from mqtt_util import SHARED_BROKER, broker_up

STRAP, POWER, TRAINER = "C1:00:00:00:00:01", "C1:00:00:00:00:02", "C1:00:00:00:00:04"
T0 = 1_764_500_000.0


def values(hr: float = 140.0, at: float = T0, person: str = "alice") -> LiveValues:
    return LiveValues(person=person, source="bike", time=datetime.fromtimestamp(at, timezone.utc), channels={"hr_bpm": hr})


# -- the value type ---------------------------------------------------------------------------


def test_live_values_are_checked_and_their_json_always_has_the_display_channels() -> None:
    v = LiveValues(person="alice", source="bike", time=datetime.fromtimestamp(T0, timezone.utc),
                   channels={"hr_bpm": 141, "power_w": 203.5}, sensors={"hr_bpm": STRAP, "power_w": POWER, "speed_mps": "X"})  # fmt: skip
    doc = v.as_json()
    assert doc["time"] == "2025-11-30T10:53:20Z" and doc["person"] == "alice" and doc["source"] == "bike"
    assert doc["hr_bpm"] == 141.0 and doc["power_w"] == 203.5
    assert doc["cadence_rpm"] is None and doc["speed_mps"] is None  # present, null: templates never miss a key
    assert doc["sensors"] == {"hr_bpm": STRAP, "power_w": POWER}  # provenance only for channels that have values
    assert set(LIVE_CHANNELS) <= set(doc)
    json.dumps(doc)  # the wire form serialises as is
    with pytest.raises(ValueError, match="naive"):
        LiveValues(person="a", source="bike", time=datetime(2025, 1, 1), channels={})
    for bad in (math.nan, math.inf, "140", None, True):
        with pytest.raises(ValueError, match="hr_bpm"):
            LiveValues(person="a", source="bike", time=datetime.now(timezone.utc), channels={"hr_bpm": bad})


# -- the BLE side: one combined sample per second -----------------------------------------------


def r(t: float, sensor: str, profile: str, **channels: float) -> Reading:
    return Reading(t, sensor, profile, dict(channels))


def test_live_sample_is_the_second_a_recording_would_store() -> None:
    readings = []
    for i in range(8):
        readings.append(r(T0 + i + 0.1, TRAINER, INDOOR_BIKE, power_w=150, hr_bpm=100, speed_mps=5.0, distance_m=1000 + 5 * i))
        if i not in (4, 6, 7):  # the strap is silent for 1 s, then for 2 s
            readings.append(r(T0 + i + 0.5, STRAP, HEART_RATE, hr_bpm=120 + i))
        readings.append(r(T0 + i + 0.2, POWER, CYCLING_POWER, power_w=200 + i, cadence_rpm=90))
        readings.append(r(T0 + i + 0.7, POWER, CYCLING_POWER, power_w=210 + i, cadence_rpm=92))
    sampler = LiveSampler(person="alice", source="bike")
    for reading in readings:
        sampler.add(reading)
    recorded = combine(readings, T0, T0 + 8)
    for i in range(3, 8):  # the sampler keeps a few seconds: the latest ones are what live shows
        live = sampler.sample(T0 + i)
        assert live is not None and live.time == datetime.fromtimestamp(T0 + i, timezone.utc)
        for channel in ("hr_bpm", "power_w", "cadence_rpm", "speed_mps"):
            assert live.channels.get(channel) == recorded.samples.columns[channel][i], (i, channel)
        assert live.sensors == {"hr_bpm": STRAP, "power_w": POWER, "cadence_rpm": POWER, "speed_mps": TRAINER}
        assert "distance_m" not in live.channels  # over a few seconds' window it would count from zero
    assert sampler.sample(T0 + 5).channels["power_w"] == 210.0  # the mean of 205 and 215, from the power meter
    assert sampler.sample(T0 + 6).channels["hr_bpm"] == 125  # held over a short silence, like the recording
    # Nothing new for longer than the hold: nothing to show (Home Assistant's expire_after takes over).
    assert sampler.sample(T0 + 20) is None
    assert LiveSampler(person="a", source="b").sample(T0) is None


def test_the_sampler_keeps_only_a_few_seconds() -> None:
    sampler = LiveSampler(person="alice", source="bike")
    for i in range(4 * 3600):  # an hour at 4 Hz
        sampler.add(r(T0 + i / 4, STRAP, HEART_RATE, hr_bpm=130))
    assert len(sampler._recent) <= 4 * 7
    assert sampler.sample(T0 + 3599).channels == {"hr_bpm": 130.0}


# -- the daemon's fan-out -------------------------------------------------------------------------


class Blocking:
    """A live consumer stuck until released (a broker that does not answer)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.got: list[LiveValues] = []

    def live(self, v: LiveValues) -> None:
        self.got.append(v)
        self.release.wait(10)


def test_a_stuck_consumer_never_blocks_publish_and_the_oldest_values_are_dropped() -> None:
    stuck = Blocking()
    fanout = LiveFanout({"stuck": stuck.live}, maxlen=8)
    fanout.start()
    try:
        fanout.publish(values(hr=0))
        deadline = time.monotonic() + 5
        while not stuck.got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stuck.got, "the worker did not pick up the first value"
        slowest = 0.0
        for i in range(1, 1001):
            started = time.perf_counter()
            fanout.publish(values(hr=float(i)))
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.05, f"publish took {slowest * 1000:.1f} ms while the consumer was stuck"
        assert fanout.queued == 8 and fanout.dropped == 1000 - 8 and fanout.published == 1001
        stuck.release.set()
        deadline = time.monotonic() + 5
        while len(stuck.got) < 9 and time.monotonic() < deadline:
            time.sleep(0.01)
        # The newest values survived, in order: they are the ones worth showing.
        assert [v.channels["hr_bpm"] for v in stuck.got] == [0.0] + [float(i) for i in range(993, 1001)]
    finally:
        stuck.release.set()
        assert fanout.stop(2)


def test_a_raising_consumer_is_logged_rate_limited_and_the_others_still_get_every_value(caplog) -> None:
    caplog.set_level(logging.INFO, logger="fithub.live")
    now = [0.0]
    got: list[float] = []
    broken = {"yes": True}

    def bad(v: LiveValues) -> None:
        if broken["yes"]:
            raise RuntimeError("display unplugged")

    fanout = LiveFanout({"bad": bad, "good": lambda v: got.append(v.channels["hr_bpm"])}, log_every_s=60, monotonic=lambda: now[0])
    fanout.start()
    try:
        for i in range(50):
            fanout.publish(values(hr=float(i)))
            now[0] += 1.0  # one value a second: 50 s, within one log interval
            time.sleep(0.002)
        deadline = time.monotonic() + 5
        while len(got) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [float(i) for i in range(50)]
        failures = [rec for rec in caplog.records if "bad" in rec.getMessage() and rec.levelno == logging.WARNING]
        assert len(failures) == 1 and "display unplugged" in failures[0].getMessage()
        now[0] += 60
        fanout.publish(values(hr=50.0))
        deadline = time.monotonic() + 5
        while len(got) < 51 and time.monotonic() < deadline:
            time.sleep(0.01)
        broken["yes"] = False
        fanout.publish(values(hr=51.0))
        deadline = time.monotonic() + 5
        while len(got) < 52 and time.monotonic() < deadline:
            time.sleep(0.01)
        messages = [rec.getMessage() for rec in caplog.records if "bad" in rec.getMessage()]
        assert any("still failing: 50 more failures" in m for m in messages), messages
        assert any("works again (after 51 failures)" in m for m in messages), messages
        assert fanout.failures == 51
    finally:
        assert fanout.stop(2)


def test_only_consumers_with_a_live_method_are_fed_and_none_means_no_thread() -> None:
    class EventsOnly:
        def deliver(self, event) -> None: ...

    class Both(EventsOnly):
        def live(self, v) -> None: ...

    assert set(live_consumers({"a": EventsOnly(), "b": Both()})) == {"b"}
    idle = LiveFanout(live_consumers({"a": EventsOnly()}))
    idle.start()
    idle.publish(values())
    assert idle._thread is None and idle.published == 0 and idle.stop(0.1)


# -- Home Assistant discovery (pure) --------------------------------------------------------------


def test_discovery_adds_live_sensors_on_the_live_topic_with_expire_after() -> None:
    config = ha.device_config("anna.b", base="fh", version="1", live_expire_s=30)
    node = ha.node_id("anna.b")
    live = {cid.removeprefix(f"{node}_"): c for cid, c in config["cmps"].items() if c["state_topic"].endswith("/live")}
    assert set(live) == {"live_hr", "live_power", "live_cadence", "live_speed"}
    assert {c["state_topic"] for c in live.values()} == {f"fh/{ha.sanitise('anna.b')}/live"}
    assert all(c["expire_after"] == 30 and c["state_class"] == "measurement" for c in live.values())
    units = {k: c["unit_of_measurement"] for k, c in live.items()}
    assert units == {"live_hr": "bpm", "live_power": "W", "live_cadence": "rpm", "live_speed": "m/s"}
    fields = {k: c["value_template"] for k, c in live.items()}
    assert fields["live_hr"] == "{{ value_json.hr_bpm }}" and fields["live_speed"] == "{{ value_json.speed_mps }}"
    assert all(f"value_json.{channel} " in " ".join(fields.values()) for channel in LIVE_CHANNELS)
    # Live values off: the device has only the state sensors, none expiring.
    plain = ha.device_config("anna.b", base="fh", version="1")
    assert not any("live" in cid or "expire_after" in c for cid, c in plain["cmps"].items())


# -- end to end: virtual sensors -> BLE source -> daemon -> MQTT notifier -> Mosquitto -----------

bumble = pytest.importorskip("bumble", reason="bumble (test extra) is needed for the virtual BLE peripherals")


class Watcher:
    """A real MQTT subscriber recording (topic, payload, retained, received monotonic time)."""

    def __init__(self, *filters: str) -> None:
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-live-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5)

        def on_message(client, userdata, msg) -> None:
            with self.lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))

        self.client.on_message = on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(*SHARED_BROKER, keepalive=30)
        self.client.subscribe([(f, 0) for f in filters])
        self.client.loop_start()
        assert subscribed.wait(10), f"subscription to {filters} not acknowledged"

    def on(self, topic: str) -> list[tuple[bytes, bool, float]]:
        with self.lock:
            return [(p, ret, t) for top, p, ret, t in self.messages if top == topic]

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        with self.lock:
            seen = sorted({t for t, *_ in self.messages})
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; topics seen: {seen}")

    def close(self, *retained_topics: str) -> None:
        for topic in retained_topics:  # leave the shared broker as we found it
            self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


class Sensors:
    """A virtual strap and power meter streaming at 4 Hz on the BLE source's own loop."""

    def __init__(self, bpm: int = 150, power_w: int = 230) -> None:
        self.bpm, self.power_w = bpm, power_w
        self.strap = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sent_bpm: list[tuple[float, int]] = []  # (time, bpm) of every notification sent

    async def transport(self):
        from bumble.link import LocalLink

        from drivers.ble.bumble_transport import BumbleTransport
        from drivers.ble.virtual import HeartRateStrap, PowerMeter, add_device

        link = LocalLink()
        self.strap = HeartRateStrap(link, STRAP, bpm=self.bpm)
        self.power = PowerMeter(link, POWER, power_w=self.power_w, cadence_rpm=90)
        central = add_device(link, "C0:00:00:00:00:00", "fithub")
        for sensor in (self.strap, self.power):
            await sensor.start()
        await central.power_on()
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._feed())
        return BumbleTransport(central)

    async def _feed(self) -> None:
        while True:
            for sensor in (self.strap, self.power):
                if sensor.connected:
                    await sensor.send(time.time())
                    if sensor is self.strap:
                        self.sent_bpm.append((time.time(), sensor.bpm))
            await asyncio.sleep(0.25)


class RaisingDisplay:
    """A notifier plugin whose ``live`` always raises: it must change nothing for the others."""

    OPTIONS: dict = {}

    def __init__(self, name: str, options: dict, hub) -> None:
        self.name = name
        self.calls = 0

    def deliver(self, event) -> None: ...

    def live(self, v: LiveValues) -> None:
        self.calls += 1
        raise RuntimeError("this display is broken")


def make_daemon(tmp_path: Path, topics: tuple[str, str], sensors: Sensors, *, extra_notifiers: dict, extra_toml: str = ""):
    """The real daemon (not started) with the real BLE source on the virtual sensors."""
    from drivers.ble.source import BleSource
    from hub import config as hubconfig
    from hub.daemon import Daemon
    from hub.plugins import discover

    class VirtualBle(BleSource):  # the real source, on bumble's virtual radio instead of BlueZ
        def __init__(self, name, options, hub):
            super().__init__(name, options, hub, transport_factory=sensors.transport)

    base, prefix = topics
    home = tmp_path / "home"
    config = tmp_path / "fithub.toml"
    config.write_text(f"""
[hub]
home = "{home}"
database = "sqlite:///{tmp_path / 'fithub.db'}"
[http]
enabled = false
[sources.inbox]
enabled = false
[sources.bike]
type = "ble"
sensors = ["heart_rate", "cycling_power"]
person = "dana"
idle_gap_s = 60
min_duration_s = 1
[notifiers.ha]
type = "mqtt"
host = "{SHARED_BROKER[0]}"
port = {SHARED_BROKER[1]}
base_topic = "{base}"
discovery_prefix = "{prefix}"
live_expire_s = 20
{extra_toml}""")
    plugins = {
        "sources": {**{n: i.loaded for n, i in discover("sources").items() if i.loaded}, "ble": VirtualBle},
        "notifiers": {**{n: i.loaded for n, i in discover("notifiers").items() if i.loaded}, **extra_notifiers},
    }
    cfg = hubconfig.load(config, env={}, plugins=plugins)
    return Daemon(cfg, plugins=plugins)


@pytest.fixture
def topics():
    if not broker_up(*SHARED_BROKER):
        pytest.skip(f"no MQTT broker at {SHARED_BROKER[0]}:{SHARED_BROKER[1]}")
    tag = uuid.uuid4().hex[:10]
    return f"fithublive_{tag}", f"halive_{tag}"


def test_live_heart_rate_from_a_virtual_strap_reaches_home_assistant_over_mqtt(tmp_path, topics) -> None:
    base, prefix = topics
    watcher = Watcher(f"{base}/#", f"{prefix}/#")
    sensors = Sensors(bpm=150, power_w=230)
    daemon = make_daemon(tmp_path, topics, sensors, extra_notifiers={"raising": RaisingDisplay}, extra_toml='[notifiers.broken]\ntype = "raising"\n')
    daemon.start()
    live_topic = f"{base}/dana/live"
    config_topic = f"{prefix}/device/fithub_dana/config"
    try:
        assert daemon.loaded.consumers.keys() == {"ha", "broken"}
        assert set(daemon.live.consumers) == {"ha", "broken"}
        # Discovery for a person with nothing stored yet: the live stream announces them.
        config = json.loads(watcher.wait(lambda: [p for p, _, _ in watcher.on(config_topic) if p], 20, "discovery")[-1])
        comps = config["cmps"]
        hr = comps["fithub_dana_live_hr"]
        assert hr["state_topic"] == live_topic and hr["value_template"] == "{{ value_json.hr_bpm }}"
        assert hr["unit_of_measurement"] == "bpm" and hr["expire_after"] == 20 and hr["availability_topic"] == f"{base}/status"
        assert {c["unit_of_measurement"] for k, c in comps.items() if k.startswith("fithub_dana_live_")} == {"bpm", "W", "rpm", "m/s"}
        assert comps["fithub_dana_weight"]["state_topic"] == f"{base}/dana/state"  # the state sensors are there too

        source = daemon.loaded.sources["bike"]
        watcher.wait(lambda: source.manager and sum(s.connected and bool(s.profiles) for s in source.manager.sensors.values()) == 2,
                     20, "both sensors connected")  # fmt: skip
        after = len(watcher.on(live_topic)) + 1  # the second in progress may predate the power meter
        docs = watcher.wait(lambda: [json.loads(p) for p, _, _ in watcher.on(live_topic)][after:after + 4][3:] and
                            [json.loads(p) for p, _, _ in watcher.on(live_topic)][after:after + 4], 20, "four live messages")  # fmt: skip
        for doc in docs:
            assert doc["person"] == "dana" and doc["source"] == "bike"
            assert doc["hr_bpm"] == 150.0 and doc["sensors"]["hr_bpm"] == STRAP
            assert doc["power_w"] == 230.0 and doc["sensors"]["power_w"] == POWER
            assert doc["cadence_rpm"] == pytest.approx(90, abs=3) and doc["speed_mps"] is None
        assert not any(retained for _, retained, _ in watcher.on(live_topic))
        # One message per whole second, in order (a second is skipped only when the
        # loop wakes more than a second late: live values are never back-filled).
        times = [datetime.fromisoformat(json.loads(p)["time"].replace("Z", "+00:00")).timestamp() for p, _, _ in watcher.on(live_topic)]
        steps = [b - a for a, b in zip(times, times[1:])]
        assert all(t == int(t) for t in times) and all(step >= 1 for step in steps), times
        assert steps.count(1) >= 0.8 * len(steps), times

        # The strap's value changes: the live value follows within a couple of seconds.
        changed_at = time.monotonic()
        sensors.loop.call_soon_threadsafe(setattr, sensors.strap, "bpm", 118)
        watcher.wait(lambda: any(json.loads(p)["hr_bpm"] == 118.0 for p, _, t in watcher.on(live_topic) if t > changed_at), 10, "hr 118")
        arrived = min(t for p, _, t in watcher.on(live_topic) if json.loads(p)["hr_bpm"] == 118.0)
        assert arrived - changed_at < 3.0
        # Every value published is one the strap sent (a second's mean of 150 and 118 at the switch).
        for p, _, _ in watcher.on(live_topic):
            assert 118.0 <= json.loads(p)["hr_bpm"] <= 150.0
        broken = daemon.loaded.consumers["broken"]
        assert broken.calls >= 4 and daemon.live.failures == broken.calls
    finally:
        daemon.shutdown()
        watcher.close(config_topic, f"{base}/status", f"{base}/dana/state")
    assert daemon.live._thread is not None and not daemon.live._thread.is_alive()  # stopped on shutdown
    # The session itself was stored as usual, its heart rate the strap's.
    from hub.storage.repository import Store

    store = Store(f"sqlite:///{tmp_path / 'fithub.db'}", tmp_path / "home")
    try:
        [stored] = store.list_activities(person="dana")
        hr = store.get_activity(stored.id).activity.samples.values("hr_bpm")
        assert len(hr) >= 5 and set(hr) <= set(range(118, 151)), hr
    finally:
        store.close()


def test_a_stuck_live_consumer_does_not_slow_the_sensor_path(tmp_path, topics) -> None:
    """A consumer whose ``live`` hangs (a wedged display): the sensors keep being
    read at full rate, the session is recorded without gaps, and live values are
    dropped in the bounded queue instead of piling up."""
    stuck = threading.Event()

    class Hanging(RaisingDisplay):
        def live(self, v: LiveValues) -> None:
            self.calls += 1
            stuck.wait(30)

    class TimedFanout(LiveFanout):
        """The daemon's fan-out with a small queue, timing each publish (the BLE loop waits that long)."""

        slowest = 0.0

        def publish(self, v: LiveValues) -> None:
            started = time.perf_counter()
            super().publish(v)
            self.slowest = max(self.slowest, time.perf_counter() - started)

    sensors = Sensors(bpm=140, power_w=210)
    daemon = make_daemon(tmp_path, topics, sensors, extra_notifiers={"hanging": Hanging}, extra_toml='[notifiers.wedged]\ntype = "hanging"\n')
    daemon.live = TimedFanout(maxlen=2)
    daemon.start()
    source = daemon.loaded.sources["bike"]
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            current = source.recorder.tracker.current if source.recorder else None
            if current is not None and current.duration_s >= 3:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no session started")
        start_count = sum(s.readings for s in source.manager.sensors.values())
        time.sleep(4.0)
        readings = sum(s.readings for s in source.manager.sensors.values()) - start_count
        # Two sensors at 4 Hz for 4 s: about 32 readings, the same as with no consumer at all.
        assert readings >= 24, readings
        assert daemon.loaded.consumers["wedged"].calls == 1  # stuck on the first value since
        assert daemon.live.dropped >= 1 and daemon.live.queued <= 2
        assert daemon.live.slowest < 0.05, f"publish_live held the BLE loop for {daemon.live.slowest * 1000:.1f} ms"
    finally:
        stuck.set()
        daemon.shutdown()
    store_path = tmp_path / "fithub.db"
    from hub.storage.repository import Store

    store = Store(f"sqlite:///{store_path}", tmp_path / "home")
    try:
        [stored] = store.list_activities(person="dana")
        hr = store.get_activity(stored.id).activity.samples.columns["hr_bpm"]
        assert len(hr) >= 6 and None not in hr and set(hr) == {140.0}, hr  # no gaps while the consumer hung
    finally:
        store.close()


def test_notifier_live_respects_its_options_and_never_raises_when_the_broker_is_away(tmp_path, topics) -> None:
    from connectors.mqtt.notifier import MqttNotifier
    from hub.plugins import Hub
    from hub.storage.repository import Store
    from mqtt_util import free_port

    base, prefix = topics
    store = Store(f"sqlite:///{tmp_path / 'fithub.db'}", tmp_path / "home")
    hub = Hub(store=store, home=tmp_path / "home")
    watcher = Watcher(f"{base}/#", f"{prefix}/#")
    opts = {"host": SHARED_BROKER[0], "port": SHARED_BROKER[1], "base_topic": base, "discovery_prefix": prefix}
    off = MqttNotifier("off", {**opts, "live": False}, hub)
    only_bob = MqttNotifier("bob", {**opts, "base_topic": f"{base}/b", "persons": ["bob"]}, hub)
    away = MqttNotifier("away", {**opts, "port": free_port()}, hub)  # nothing listens there
    try:
        assert off.wait_connected(10) and only_bob.wait_connected(10)
        for n in (off, only_bob, away):
            n.live(values(hr=131, person="alice"))
        only_bob.live(values(hr=132, person="bob"))
        watcher.wait(lambda: watcher.on(f"{base}/b/bob/live"), 10, "bob's live value")
        assert json.loads(watcher.on(f"{base}/b/bob/live")[0][0])["hr_bpm"] == 132.0
        time.sleep(0.3)
        assert watcher.on(f"{base}/alice/live") == [] and watcher.on(f"{base}/b/alice/live") == []
        assert off.live_published == 0 and only_bob.live_published == 1 and away.live_dropped == 1
        # Live values off: its discovery (built with its expire setting) has no live sensors.
        assert off.live_expire_s is None
        assert "live_hr" not in json.dumps(ha.device_config("alice", base=base, version="1", live_expire_s=off.live_expire_s))
        bob_config = json.loads(watcher.wait(lambda: [p for p, _, _ in watcher.on(f"{prefix}/device/fithub_bob/config") if p], 10, "bob's discovery")[-1])
        assert bob_config["cmps"]["fithub_bob_live_hr"]["state_topic"] == f"{base}/b/bob/live"
        assert bob_config["cmps"]["fithub_bob_live_hr"]["expire_after"] == 30
    finally:
        for n in (off, only_bob, away):
            n.close()
        watcher.close(f"{prefix}/device/fithub_bob/config", f"{base}/status", f"{base}/b/status")
        store.close()

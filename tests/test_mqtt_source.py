"""The MQTT source end to end through the real Mosquitto on 127.0.0.1:1883.

Each test publishes under its own random topic prefix with its own client id, so
tests (and other users of the broker) never see each other's messages.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from connectors.files.fit import decode_fit
from connectors.mqtt.live import session_stream, split_sessions
from connectors.mqtt.source import MqttSource, routes
from connectors.mqtt.storage import LiveRow
from connectors.mqtt.topics import broker_filter, filter_problems, matches, profile_for
from hub.decoding import registry
from hub.errors import ConfigError
from hub.model import Provenance
from hub.pipeline import ingest
from hub.plugins import Hub
from hub.storage.repository import Store
from mqtt_util import SHARED_BROKER, broker_up, count, unique_prefix, wait_until

UTC = timezone.utc
HOST, PORT = SHARED_BROKER


@pytest.fixture(scope="module")
def broker() -> tuple[str, int]:
    if not broker_up(HOST, PORT):
        pytest.fail(f"Mosquitto is not running on {HOST}:{PORT} (tests/run.sh starts it)")
    return HOST, PORT


class Publisher:
    """A plain paho QoS 1 publisher for the tests."""

    def __init__(self, host: str = HOST, port: int = PORT) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str | dict, qos: int = 1) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=qos).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher():
    pub = Publisher()
    yield pub
    pub.close()


def make_hub(url: str, home: Path) -> Hub:
    store = Store(url, home)
    reg = registry()

    def import_bytes(data: bytes, *, name: str, source: str, person: str | None = None):
        return ingest(store, data, name=name, decoders=reg.decoders, sniff=reg.sniff, person=person or "default", source=source)

    return Hub(store=store, home=home, import_bytes=import_bytes, log=logging.getLogger("fithub.test.mqtt"))


class Running:
    """A started MqttSource on a test database; stopped (and the store closed) at the end."""

    def __init__(self, url: str, home: Path, prefix: str, **options) -> None:
        self.url = url
        self.hub = make_hub(url, home)
        opts = {
            "subscriptions": {
                f"{prefix}/+/samples": "fithub",
                f"{prefix}/+/measurement": "fithub",
                f"{prefix}/+/activity": "fithub",
                f"{prefix}/TheengsGateway/BTtoMQTT/+": "theengs",
            },
            "session_expiry_s": 600,
            "batch_ms": 20,
            **options,
        }
        self.source = MqttSource("mq", opts, self.hub)

    def __enter__(self) -> MqttSource:
        self.source.start()
        wait_until(self.source.broker.connected.is_set, 10, "the MQTT connection")
        time.sleep(0.2)  # the SUBACK: a message published before it is not routed to us
        return self.source

    def __exit__(self, *exc) -> None:
        self.source.stop(5)
        self.hub.store.close()


def sample(t: datetime, seq: int | None = None, **channels) -> dict:
    body = {"v": 1, "t": t.isoformat().replace("+00:00", "Z"), **channels}
    if seq is not None:
        body["seq"] = seq
    return body


T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


# -- pure parts ---------------------------------------------------------------------


def test_topic_filters_match_like_mqtt() -> None:
    assert matches("a/+/c", "a/b/c") and not matches("a/+/c", "a/b/d") and not matches("a/+", "a/b/c")
    assert matches("a/#", "a") and matches("a/#", "a/b/c") and matches("#", "x/y")
    assert not matches("#", "$SYS/broker") and not matches("+/x", "$SYS/x")
    assert profile_for("fithub/d1/samples", {"fithub/special/+": "esphome", "fithub/+/+": "fithub"}) == "fithub"
    assert profile_for("fithub/special/x", {"fithub/special/+": "esphome", "fithub/+/+": "fithub"}) == "esphome"
    assert broker_filter("a/+", "hubs") == "$share/hubs/a/+" and broker_filter("a/+", None) == "a/+"
    assert filter_problems("a/#/b") and filter_problems("a/b+") and not filter_problems("a/+/#")


def test_config_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as err:
        routes("mq", {"a/#/b": "fithub", "x/+": "nosuch", "y/+": {"profile": "fithub", "zone": "Mars/Olympus"}}, "g/1")
    text = str(err.value)
    for part in ("'#' must be a whole level", "unknown profile 'nosuch'", "unknown time zone", "shared_group"):
        assert part in text, text
    assert routes("mq", {"y/+": {"profile": "fithub", "zone": "Europe/Berlin"}}, "")["y/+"][0] == "fithub"


def _row(i: int, t: datetime, **channels) -> LiveRow:
    return LiveRow(id=i, key=f"k{i}", device="d", time=t, channels=channels, person=None, sport=None, received_at=t)


def test_sessions_split_at_gaps_and_merge_same_instant() -> None:
    rows = [_row(i, T0 + timedelta(seconds=i), hr_bpm=100 + i) for i in range(10)]
    rows += [_row(100 + i, T0 + timedelta(seconds=500 + i), power_w=200.0) for i in range(5)]
    rows.append(_row(200, T0 + timedelta(seconds=3), power_w=250.0))  # same instant as row 3
    sessions = split_sessions(list(reversed(rows)), gap_s=120)
    assert [len(s) for s in sessions] == [11, 5]
    start, stream = session_stream(sessions[0])
    assert start == T0 and stream.offsets_s == [float(i) for i in range(10)]
    assert stream.columns["hr_bpm"][3] == 103 and stream.columns["power_w"][3] == 250.0
    assert stream.columns["power_w"][2] is None  # a gap, not zero


# -- end to end through the broker ------------------------------------------------------


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_samples_become_an_activity(broker, publisher, tmp_path, db, request) -> None:
    url = f"sqlite:///{tmp_path / 'fithub.db'}" if db == "sqlite" else request.getfixturevalue("db_url_pg")
    prefix = unique_prefix()
    with Running(url, tmp_path / "home", prefix, session_gap_s=1.5, devices={"strap1": "alice"}) as source:
        for i in range(60):
            publisher.send(f"{prefix}/strap1/samples", sample(T0 + timedelta(seconds=i), seq=i, hr=120 + i % 30, power=200 + i))
        # One batch message too: seconds 60..89.
        batch = {"v": 1, "sport": "cycling", "samples": [
            {"t": int((T0 + timedelta(seconds=60 + i)).timestamp()), "hr": 150, "power": 260} for i in range(30)]}
        publisher.send(f"{prefix}/strap1/samples", batch)
        store = source.hub.store
        wait_until(lambda: store.list_activities(), 20, "the live session to become an activity")
        (stored,) = store.list_activities()
        assert stored.activity.person == "alice"
        assert stored.activity.sport == "cycling"
        assert stored.activity.start == T0
        assert stored.sample_count == 90
        full = store.get_activity(stored.id).activity
        assert full.samples.columns["hr_bpm"][:3] == [120, 121, 122]
        assert full.max_power_w == 260
        assert count(url, "SELECT count(*) FROM live_samples WHERE state = 'open'") == 0
        assert count(url, "SELECT count(*) FROM live_samples WHERE state = 'done'") == 90
        assert source.stats.committed == 61 and source.stats.acked == 61 and source.stats.payload_errors == 0
        (record,) = store.sources(stored.id)
        assert record.source == "mqtt:mq" and record.fmt == "fit"
        # The archived file reads back as the stored activity (fithub reprocess relies on it).
        again = decode_fit(store.raw_bytes(record.sha256), Provenance(source="x", sha256=None, received_at=T0))
        assert len(again.activities[0].samples) == 90


@pytest.fixture
def db_url_pg(pg_server_url):
    yield pg_server_url
    engine = sa.create_engine(pg_server_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def test_malformed_payloads_are_counted_and_skipped(broker, publisher, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fithub.db'}"
    prefix = unique_prefix()
    bad = [
        b"{not json",
        b'{"v": 1, "t": "2024-05-01T10:00:00Z", "hr": ',  # truncated
        b"\xff\xfe\x00garbage",  # not UTF-8
        json.dumps({"v": 1, "t": "2024-05-01T10:00:00Z", "hr": "fast"}).encode(),  # wrong type
        json.dumps({"v": 1, "t": "2024-05-01T10:00:00Z", "hr": 400}).encode(),  # out of range
        json.dumps({"v": 1, "t": "2024-05-01T10:00:00", "hr": 120}).encode(),  # naive time
        b"",
    ]
    with Running(url, tmp_path / "home", prefix, session_gap_s=3600) as source:
        for i, payload in enumerate(bad):
            publisher.send(f"{prefix}/strap1/samples", payload)
            publisher.send(f"{prefix}/strap1/samples", sample(T0 + timedelta(seconds=i), hr=100 + i))
        publisher.send(f"{prefix}/scale9/measurement", {"v": 1, "t": 1714557600, "kind": "weight_kg", "value": 900})
        wait_until(lambda: source.stats.committed >= 2 * len(bad) + 1, 10, "every message to be handled")
        assert source.stats.payload_errors == len(bad) + 1
        assert source.stats.acked == 2 * len(bad) + 1  # bad ones are acknowledged too: never redelivered forever
        assert count(url, "SELECT count(*) FROM live_samples") == len(bad)
        assert count(url, "SELECT count(*) FROM measurements") == 0
        assert source.ingestor._thread.is_alive()


def test_redelivered_messages_add_nothing(broker, publisher, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fithub.db'}"
    prefix = unique_prefix()
    with Running(url, tmp_path / "home", prefix, session_gap_s=3600, devices={"scale1": "bob"}) as source:
        for _ in range(3):  # as a broker redelivers after a crash: the same messages again
            for i in range(5):
                publisher.send(f"{prefix}/strap1/samples", sample(T0 + timedelta(seconds=i), seq=i, hr=100))
            publisher.send(f"{prefix}/scale1/measurement", {"v": 1, "t": 1714557600, "kind": "weight_kg", "value": 81.5})
        wait_until(lambda: source.stats.committed >= 18, 10, "every message")
        assert count(url, "SELECT count(*) FROM live_samples") == 5
        assert source.stats.samples_repeated == 10
        assert count(url, "SELECT count(*) FROM measurements") == 1
        assert count(url, "SELECT count(*) FROM outbox_events WHERE kind = 'measurement.stored'") == 1
        (m,) = source.hub.store.measurements(person="bob")
        assert m.kind == "weight_kg" and m.value == 81.5


def test_gateway_scale_and_unassigned_readings(broker, publisher, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fithub.db'}"
    prefix = unique_prefix()
    gateway = f"{prefix}/TheengsGateway/BTtoMQTT"
    rules = {"bob": {"weight_kg": [85, 95]}, "carol": {"weight_kg": [70, 80]}, "dave": {"weight_kg": [75, 85]}}
    with Running(url, tmp_path / "home", prefix, session_gap_s=3600, devices={"C4:7C:8D:6A:1B:2C": "alice"},
                 persons=rules) as source:
        publisher.send(f"{gateway}/C47C8D6A1B2C", {"id": "C4:7C:8D:6A:1B:2C", "name": "MIBFS", "brand": "Xiaomi",
                                                 "model": "Mi Body Composition Scale", "model_id": "XMTZC05HM",
                                                 "weight": 61.3, "unit": "kg", "impedance": 503}, qos=0)
        publisher.send(f"{gateway}/AABBCCDDEEFF", {"id": "AA:BB:CC:DD:EE:FF", "name": "MIBFS", "brand": "Xiaomi",
                                                 "model": "Mi Body Composition Scale", "model_id": "XMTZC05HM",
                                                 "weight": 77.0, "unit": "kg"}, qos=0)
        publisher.send(f"{gateway}/AABBCCDDEEFF", {"id": "AA:BB:CC:DD:EE:FF", "name": "MIBFS", "brand": "Xiaomi",
                                                 "model": "Mi Body Composition Scale", "model_id": "XMTZC05HM",
                                                 "weight": 198.4, "unit": "lbs"}, qos=0)
        wait_until(lambda: source.stats.committed >= 3, 10, "every gateway message")
        (weight,) = [m for m in source.hub.store.measurements(person="alice") if m.kind == "weight_kg"]
        assert weight.value == pytest.approx(61.3)
        # The shared scale: 90 kg is only bob's range; 77 kg is carol's and dave's, so
        # it is kept aside for `fithub measurements assign`, not guessed.
        (bobs,) = source.hub.store.measurements(person="bob")
        assert bobs.value == pytest.approx(198.4 * 0.45359237)
        assert count(url, "SELECT count(*) FROM unassigned_readings WHERE person_id IS NULL AND kind = 'weight_kg'") == 1
        assert count(url, "SELECT count(*) FROM outbox_events WHERE kind = 'measurement.stored'") == 2


def test_activity_file_payload_is_imported(broker, publisher, tmp_path, shared) -> None:
    url = f"sqlite:///{tmp_path / 'fithub.db'}"
    prefix = unique_prefix()
    fit = next(p for p in sorted((shared / "fit").rglob("*.fit")) if "broken" not in p.parts and p.stat().st_size > 20_000)
    with Running(url, tmp_path / "home", prefix, session_gap_s=3600, devices={"watch1": "carol"}) as source:
        publisher.send(f"{prefix}/watch1/activity", fit.read_bytes())
        publisher.send(f"{prefix}/watch1/activity", fit.read_bytes())  # again: one file
        wait_until(lambda: source.stats.committed >= 2, 30, "both activity messages")
        (record,) = source.hub.store.files()
        assert record.person == "carol" and record.source.startswith("mqtt:mq")


def test_live_session_merges_with_the_watch_fit(broker, publisher, tmp_path, shared) -> None:
    """The same workout recorded by the watch (FIT) and streamed live by a strap:
    one workout with two versions."""
    url = f"sqlite:///{tmp_path / 'fithub.db'}"
    prefix = unique_prefix()
    fit_path, watch = _fit_with_hr(shared)
    # The gap must be longer than the recording's pauses, or the stream is cut in two.
    with Running(url, tmp_path / "home", prefix, session_gap_s=8, devices={"strap1": "default"}) as source:
        outcome = source.hub.import_bytes(fit_path.read_bytes(), name=fit_path.name, source="file")
        workout_id = outcome.activity_ids[0]
        stream = watch.samples
        hr = stream.columns["hr_bpm"]
        by_time = {}  # a FIT file may hold two records for one instant; a strap sends one
        for i, off in enumerate(stream.offsets_s):
            if hr[i] is not None and 20 <= hr[i] <= 250:
                by_time.setdefault((watch.start + timedelta(seconds=off)).isoformat().replace("+00:00", "Z"), hr[i])
        samples = [{"t": t, "hr": v} for t, v in by_time.items()]
        for i in range(0, len(samples), 500):
            publisher.send(f"{prefix}/strap1/samples", {"v": 1, "sport": watch.sport, "samples": samples[i:i + 500]})
        wait_until(lambda: source.closer.stored >= 1, 30, "the live session to be stored")
        assert [a.id for a in source.hub.store.list_activities()] == [workout_id]
        versions = source.hub.store.versions(workout_id)
        assert len(versions) == 2
        assert {v.source for v in versions} == {"file:fit", "mqtt:mq"}


def _fit_with_hr(shared: Path):
    for path in sorted((shared / "fit").rglob("*.fit")):
        if "broken" in path.parts or "broken" in path.name or path.stat().st_size > 400_000:
            continue
        try:
            decoded = decode_fit(path.read_bytes(), Provenance(source="t", sha256=None, received_at=T0))
        except Exception:
            continue
        for activity in decoded.activities[:1]:
            hr = activity.samples.columns.get("hr_bpm")
            offsets = activity.samples.offsets_s
            longest_pause = max((b - a for a, b in zip(offsets, offsets[1:])), default=0)
            if (hr and sum(v is not None for v in hr) > 300 and (activity.elapsed_s or 0) > 600
                    and len(decoded.activities) == 1 and longest_pause < 8):
                return path, activity
    pytest.skip("no single-activity FIT with heart rate in the corpus")


def test_ack_only_after_commit(broker, publisher, tmp_path) -> None:
    """While the database cannot commit, nothing is acknowledged: the connection
    dropped then (as in a crash), the broker delivers every message again."""
    db = tmp_path / "fithub.db"
    url = f"sqlite:///{db}"
    prefix = unique_prefix()
    home = tmp_path / "home"
    first = Running(url, home, prefix, session_gap_s=3600)
    lock = None
    with first as source:
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # hold SQLite's write lock: commits must wait
        for i in range(20):
            publisher.send(f"{prefix}/strap1/samples", sample(T0 + timedelta(seconds=i), hr=100))
        wait_until(lambda: source.ingestor.queue.empty(), 10, "the worker to take the messages")
        time.sleep(0.3)
        assert source.stats.acked == 0
        source.broker.stop()  # the connection is gone before the commit, as in a crash
        lock.execute("ROLLBACK")  # now the stuck batch commits, but cannot be acknowledged any more
        wait_until(lambda: source.stats.committed == 20, 40, "the stuck batch to commit")
        assert source.stats.acked == 0
    lock.close()
    with Running(url, home, prefix, session_gap_s=3600) as again:  # same client id: the same session
        wait_until(lambda: again.stats.committed >= 20, 20, "the broker to deliver the unacknowledged messages again")
        assert again.stats.samples_repeated == 20 and again.stats.acked == 20
    assert count(url, "SELECT count(*) FROM live_samples") == 20


def test_sessions_left_by_a_crashed_process_are_closed_at_start(broker, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fithub.db'}"
    prefix = unique_prefix()
    old = datetime.now(UTC) - timedelta(hours=1)
    run = Running(url, tmp_path / "home", prefix, session_gap_s=60)
    engine = run.hub.store.engine
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO live_samples (key, source, device, time_utc, channels, person, sport, received_at, state) "
            "VALUES (:k, 'mq', 'strap7', :t, :c, NULL, 'running', :r, 'open')"),
            [{"k": f"k{i}", "t": (T0 + timedelta(seconds=i)).replace(tzinfo=None), "c": json.dumps({"hr_bpm": 130 + i % 5}),
              "r": old.replace(tzinfo=None)} for i in range(120)])
    with run as source:
        wait_until(lambda: source.closer.stored == 1, 15, "the leftover session to be stored")
        (stored,) = source.hub.store.list_activities()
        assert stored.activity.sport == "running" and stored.sample_count == 120



def test_esphome_openscale_and_omg_through_the_broker(broker, publisher, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fithub.db'}"
    prefix = unique_prefix()
    subscriptions = {
        f"{prefix}/+/sensor/+/state": "esphome",
        f"{prefix}/openScaleSync/+/measurements/+": "openscale",
        f"{prefix}/OMG_ESP32_BLE/BTtoMQTT/+": "omg",
    }
    devices = {f"{prefix}/bathroom-scale": "erin", "openscale:1": "frank", "D4:7C:8D:6A:1B:2C": "gina"}
    with Running(url, tmp_path / "home", prefix, session_gap_s=3600, subscriptions=subscriptions, devices=devices) as source:
        publisher.send(f"{prefix}/bathroom-scale/sensor/xiaomi_mi_scale_weight/state", b"72.35", qos=0)
        publisher.send(f"{prefix}/openScaleSync/1/measurements/insert", {
            "id": 42, "userId": 1, "date": "2024-06-01T07:30+0200", "weight": 72.4, "body_fat": 18.5,
            "water": 55.0, "muscle": 40.0, "lbm": 0.0, "bone": 4.0, "username": "frank"})
        publisher.send(f"{prefix}/OMG_ESP32_BLE/BTtoMQTT/D47C8D6A1B2C", {
            "id": "d4:7c:8d:6a:1b:2c", "name": "MIBFS", "rssi": -89, "brand": "Xiaomi", "model": "Mi_Body_Scale_2",
            "model_id": "XMTZC05HM", "type": "SCALE", "weighing_mode": "person", "unit": "kg", "weight": 64.2}, qos=0)
        wait_until(lambda: source.stats.committed >= 3, 10, "the three messages")
        store = source.hub.store
        assert [m.value for m in store.measurements(person="erin")] == [72.35]
        assert {m.kind for m in store.measurements(person="frank")} >= {"weight_kg", "body_fat_pct", "bone_mass_kg"}
        assert [m.value for m in store.measurements(person="gina", kind="weight_kg")] == [64.2]
        assert source.stats.payload_errors == 0


def test_a_broker_that_is_down_at_start_is_retried(tmp_path, caplog) -> None:
    """The hub starts before the broker (a boot race): the source keeps trying and
    connects once the broker is up, logging the outage once."""
    from mqtt_util import PrivateBroker

    broker = PrivateBroker(tmp_path / "broker")  # not started yet
    url = f"sqlite:///{tmp_path / 'fithub.db'}"
    prefix = unique_prefix()
    run = Running(url, tmp_path / "home", prefix, port=broker.port, reconnect_max_s=1)
    run.source.start()
    try:
        time.sleep(2.5)
        assert not run.source.broker.connected.is_set()
        broker.start()
        wait_until(run.source.broker.connected.is_set, 15, "the connection once the broker is up")
        pub = Publisher(port=broker.port)
        time.sleep(0.3)
        pub.send(f"{prefix}/strap1/samples", sample(T0, hr=99))
        pub.close()
        wait_until(lambda: run.source.stats.committed == 1, 10, "the message")
        assert sum("cannot be reached" in r.getMessage() for r in caplog.records) == 1
    finally:
        run.__exit__(None, None, None)
        broker.stop()


def test_two_processes_closing_one_session_store_it_once(db_url, tmp_path) -> None:
    """Two hubs on one database (shared subscription) see the same quiet device at
    once: one activity, every live row closed once."""
    from concurrent.futures import ThreadPoolExecutor

    from connectors.mqtt.sessions import SessionCloser
    from connectors.mqtt.storage import LiveStore

    stores = [Store(db_url, tmp_path / f"home{i}") for i in range(2)]
    old = datetime.now(UTC) - timedelta(hours=1)
    live = [LiveStore(s.engine, "mq") for s in stores]
    from connectors.mqtt.readings import SampleReading

    readings = [(SampleReading(device="strap1", time=T0 + timedelta(seconds=i), channels={"hr_bpm": 120.0 + i % 9},
                               key=f"k{i}", sport="running"), "alice") for i in range(300)]
    live[0].write(readings, [], [], received_at=old)
    closers = [SessionCloser(s, lv, source="mqtt:mq", gap_s=60, default_person="default", keep_done_s=86400,
                             log=logging.getLogger("t")) for s, lv in zip(stores, live)]
    try:
        with ThreadPoolExecutor(2) as pool:
            stored = list(pool.map(lambda c: c.close_quiet(), closers))
        assert sorted(stored) == [0, 1]
        (activity,) = stores[0].list_activities()
        assert activity.activity.person == "alice" and activity.sample_count == 300
        assert count(db_url, "SELECT count(*) FROM live_samples WHERE state = 'done'") == 300
        assert closers[0].close_quiet() + closers[1].close_quiet() == 0
    finally:
        for s in stores:
            s.close()


# -- the bulk insert and the two-stage worker, without a broker ---------------------------------------


def test_bulk_sample_insert_stores_every_row_as_given_once(db_url, tmp_path) -> None:
    """SQLite's multi-row INSERTs (full chunks and the remainder) and PostgreSQL's
    unnest INSERT: each new row stored once with its values, repeats (in the batch
    and from an earlier one) counted out, arrival order kept in the ids."""
    from connectors.mqtt.readings import SampleReading
    from connectors.mqtt.storage import LiveStore

    store = Store(db_url, tmp_path / "home")
    try:
        live = LiveStore(store.engine, "mq")
        t0 = datetime(2024, 6, 1, 7, 0, 0, 250000, tzinfo=UTC)
        readings = [
            (SampleReading(device=f"dev{i % 3}", time=t0 + timedelta(milliseconds=1001 * i),
                           channels={"power_w": 200.0 + i, "hr_bpm": 120.5} if i % 2 else {"lat_deg": 47.5, "lon_deg": -8.25},
                           key=f"k{i}", sport="cycling" if i % 5 == 0 else None), "alice" if i % 7 else None)
            for i in range(237)
        ]  # fmt: skip
        repeats = [readings[3], readings[200]]
        received = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
        assert live.write(readings + repeats, [], [], received_at=received).samples == 237
        assert live.write(readings[100:150], [], [], received_at=received).samples == 0
        rows = [r for device in ("dev0", "dev1", "dev2") for r in live.open_rows(device)]
        assert len(rows) == 237
        by_key = {r.key: r for r in rows}
        for reading, person in readings:
            row = by_key[reading.key]
            assert (row.device, row.time, row.channels, row.person, row.sport, row.received_at) == (
                reading.device, reading.time, reading.channels, person, reading.sport, received)
        assert [r.key for r in sorted(rows, key=lambda r: r.id)] == [r.key for r, _ in readings]
    finally:
        store.close()


class _Worker:
    """An Ingestor on a real SQLite LiveStore, fed Inbound messages directly."""

    def __init__(self, tmp_path: Path, *, batch_max: int = 500, batch_ms: float = 20, decide=None) -> None:
        from connectors.mqtt import profiles
        from connectors.mqtt.ingest import Ingestor
        from connectors.mqtt.profiles_common import ProfileOptions
        from connectors.mqtt.storage import LiveStore

        self.url = f"sqlite:///{tmp_path / 'fithub.db'}"
        self.store = Store(self.url, tmp_path / "home")
        self.acked: list[int] = []
        self.commits: list[list[int]] = []
        self.ingestor = Ingestor(
            name="mq", subscriptions={"p/+/samples": ("fithub", ProfileOptions())}, parse=profiles.parse,
            live=LiveStore(self.store.engine, "mq"), decide=decide or (lambda rs: [(r, "alice") for r in rs]),
            import_activity=lambda r, p: None, ack=lambda m: self.acked.append(m.mid) or True,
            batch_max=batch_max, batch_ms=batch_ms, log=logging.getLogger("fithub.test.mqtt"),
        )
        self.ingestor.on_commit = lambda batch, t: self.commits.append([m.mid for m in batch])

    def message(self, mid: int, device: str = "strap1", payload: bytes | None = None):
        from connectors.mqtt.client import Inbound

        body = payload if payload is not None else json.dumps(
            {"v": 1, "t": 1717225200 + mid, "hr": 100 + mid % 100}).encode()
        return Inbound(topic=f"p/{device}/samples", payload=body, qos=1, mid=mid, retain=False,
                       received_at=datetime.now(UTC), received_mono=time.monotonic(), connection=1)


def test_worker_commits_everything_in_arrival_order_and_acks_only_committed(tmp_path) -> None:
    w = _Worker(tmp_path, batch_max=40, batch_ms=5)
    w.ingestor.start()
    try:
        for mid in range(1, 1001):
            w.ingestor.put(w.message(mid, payload=b"{broken" if mid % 97 == 0 else None))
            if mid % 250 == 0:
                time.sleep(0.05)  # let some batches pile up behind a commit, some not
        wait_until(lambda: w.ingestor.stats.committed == 1000, 30, "every message committed")
    finally:
        assert w.ingestor.stop(10)
    committed = [mid for batch in w.commits for mid in batch]
    assert committed == list(range(1, 1001))  # each once, in arrival order
    assert w.acked == committed  # acknowledged after their commit, every one (bad payloads too)
    assert all(len(batch) <= 40 for batch in w.commits)  # batch_max holds per transaction, merged or not
    assert w.ingestor.stats.payload_errors == 10 and w.ingestor.stats.samples_new == 990
    assert count(w.url, "SELECT count(*) FROM live_samples") == 990
    w.store.close()


def test_worker_isolates_a_message_that_breaks_its_batch(tmp_path) -> None:
    """A bug on one message (here in deciding whose it is) costs that message only."""
    def decide(readings):
        if any(r.device == "cursed" for r in readings):
            raise RuntimeError("bug")
        return [(r, "alice") for r in readings]

    w = _Worker(tmp_path, decide=decide, batch_ms=50)
    w.ingestor.start()
    try:
        for mid in range(1, 21):
            w.ingestor.put(w.message(mid, device="cursed" if mid == 7 else "strap1"))
        wait_until(lambda: len(w.acked) == 20, 20, "every message acknowledged")
    finally:
        assert w.ingestor.stop(10)
    assert count(w.url, "SELECT count(*) FROM live_samples") == 19
    assert sorted(w.acked) == list(range(1, 21)) and w.ingestor.stats.payload_errors == 1
    assert w.ingestor._thread is not None and not w.ingestor._thread.is_alive()  # stopped, not crashed
    w.store.close()


def test_worker_stop_commits_what_was_received(tmp_path) -> None:
    w = _Worker(tmp_path, batch_ms=10_000)  # a window far longer than the test
    w.ingestor.start()
    for mid in range(1, 301):
        w.ingestor.put(w.message(mid))
    time.sleep(0.1)
    assert w.ingestor.stats.committed == 0  # still gathering
    assert w.ingestor.stop(10)
    assert w.ingestor.stats.committed == 300 and sorted(w.acked) == list(range(1, 301))
    assert count(w.url, "SELECT count(*) FROM live_samples") == 300
    w.store.close()


def test_worker_merges_what_waited_behind_a_slow_commit(tmp_path) -> None:
    """While one commit is stuck (another process holds SQLite's write lock), the
    parsed batches piling up behind it go into one transaction afterwards, not
    one transaction each: slow commits mean fewer commits, not a growing queue."""
    w = _Worker(tmp_path, batch_max=500, batch_ms=0)
    lock = sqlite3.connect(str(tmp_path / "fithub.db"), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    w.ingestor.start()
    try:
        w.ingestor.put(w.message(1))
        time.sleep(0.3)  # its commit now waits for the lock
        for mid in range(2, 302):
            w.ingestor.put(w.message(mid))
            time.sleep(0.001)  # trickling in: the parser hands them over in many small batches
        wait_until(lambda: w.ingestor.queue.empty(), 10, "the parser to take every message")
        time.sleep(0.1)
        assert w.ingestor.stats.committed == 0 and w.acked == []
        lock.execute("ROLLBACK")
        wait_until(lambda: w.ingestor.stats.committed == 301, 30, "every message committed")
    finally:
        lock.close()
        assert w.ingestor.stop(10)
    assert len(w.commits) <= 3, [len(c) for c in w.commits]
    assert [mid for c in w.commits for mid in c] == list(range(1, 302)) == w.acked
    w.store.close()

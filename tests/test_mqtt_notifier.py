"""The MQTT notifier against the real Mosquitto on 127.0.0.1:1883 (and a private
one it can stop): Home Assistant discovery payloads, per-person state equal to what
the database holds after importing real files, republishing on Home Assistant's
birth message, the last will when the process dies, retries while the broker is
down, and the whole path through the daemon (a file dropped into the inbox ends as
published state).

Every test uses its own random base topic and discovery prefix, so tests running at
the same time on the shared broker never see each other, and clears the retained
messages it caused."""

from __future__ import annotations

import getpass
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from connectors.files import decoders, sniff
from connectors.mqtt import ha_discovery as ha
from connectors.mqtt.notifier import MqttNotifier
from hub.errors import ConfigError
from hub.events import Event
from hub.outbox import Outbox, OutboxSettings
from hub.pipeline import Imported, ingest
from hub.plugins import DeliveryError, Hub
from hub.storage import Store

from daemon_util import DaemonProcess, copy_file, db_query, wait_for, write_config

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "fixtures" / "samples"
BROKER = ("127.0.0.1", 1883)
BOB_FILE = "fit/fitparse__activity-small-fenix2-run.fit"


# -- helpers --------------------------------------------------------------------------------------


class Watcher:
    """A real subscriber that records every message (topic, payload, retain flag)."""

    def __init__(self, *filters: str, port: int = BROKER[1]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.topics: set[str] = set()  # every topic with a non-empty payload, kept across clear()
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-watch-{uuid.uuid4().hex[:10]}",
                                  protocol=mqtt.MQTTv5)  # fmt: skip

        def on_message(client, userdata, msg) -> None:
            with self.cond:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
                if msg.payload:
                    self.topics.add(msg.topic)
                self.cond.notify_all()

        self.client.on_message = on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(BROKER[0], port, keepalive=30)
        self.client.subscribe([(f, 1) for f in filters])
        self.client.loop_start()
        assert subscribed.wait(10), f"subscription to {filters} not acknowledged"

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; got topics "
                                         f"{sorted({t for t, _, _ in self.messages})}")  # fmt: skip
                self.cond.wait(min(left, 0.2))

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == topic]

    def latest_json(self, topic: str) -> dict | None:
        found = [p for p in self.on(topic) if p]
        return json.loads(found[-1]) if found else None

    def wait_json(self, topic: str, timeout: float = 15, check=lambda doc: True) -> dict:
        def ready():
            doc = self.latest_json(topic)
            return doc if doc is not None and check(doc) else None

        return self.wait(ready, timeout, f"a matching message on {topic}")

    def clear(self) -> None:
        with self.cond:
            self.messages.clear()

    def close(self, clear_retained: bool = True) -> None:
        """Remove the retained messages seen (an empty retained payload deletes)."""
        if clear_retained:
            for topic in sorted(self.topics):
                self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def topics():
    tag = uuid.uuid4().hex[:10]
    return f"fithubtest_{tag}", f"hatest_{tag}"


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    opened = Store(db_url, tmp_path / "home")
    yield opened
    opened.close()


def import_file(store: Store, path: Path, person: str) -> Imported:
    outcome = ingest(store, path.read_bytes(), name=path.name, decoders=decoders(), sniff=sniff, person=person)
    assert isinstance(outcome, Imported), outcome
    return outcome


def stored_events(store: Store, after_id: int = 0) -> list[Event]:
    """The events the import wrote to the outbox, exactly as the daemon would deliver them."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, kind, key, person, payload FROM outbox_events "
                                    "WHERE id > :after ORDER BY id"), {"after": after_id}).mappings().all()  # fmt: skip
    return [Event(kind=r["kind"], key=r["key"], person=r["person"], payload=json.loads(r["payload"]), id=r["id"]) for r in rows]


def notifier(store: Store, tmp_path: Path, topics: tuple[str, str], **options) -> MqttNotifier:
    base, prefix = topics
    made = MqttNotifier("ha", {"host": BROKER[0], "port": BROKER[1], "base_topic": base, "discovery_prefix": prefix,
                               **options}, Hub(store=store, home=tmp_path / "home"))  # fmt: skip
    assert made.wait_connected(10), "the notifier did not connect to the broker"
    return made


def template_field(template: str) -> str:
    """The state key a ``{{ value_json.<key> }}`` template reads."""
    match = re.fullmatch(r"\{\{ value_json\.([a-z_]+) \}\}", template)
    assert match, f"unexpected value_template {template!r}"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateBroker:
    """A Mosquitto of our own on a free port, to stop and start at will; ``extra``
    lines go into its listener's config (TLS, passwords)."""

    def __init__(self, tmp_path: Path, extra: str = "allow_anonymous true\n") -> None:
        self.port = free_port()
        self.conf = tmp_path / "mosquitto.conf"
        # `user`: run as root, mosquitto would switch to its own user, which cannot
        # read the test's private folder (ignored when not root).
        self.conf.write_text(f"user {getpass.getuser()}\nper_listener_settings true\nlistener {self.port} 127.0.0.1\n{extra}persistence false\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# -- pure parts -----------------------------------------------------------------------------------


def test_ids_are_sanitised_and_stay_distinct() -> None:
    assert ha.sanitise("alice") == "alice"
    assert ha.sanitise("Bob_2-x") == "Bob_2-x"
    odd = [ha.sanitise(n) for n in ("anna.b", "anna_b", "anna b", "Zoë", "a/b", "a+#")]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", s) for s in odd), odd
    assert len(set(odd)) == len(odd)
    assert ha.state_topic("fithub", "a/b+#").count("/") == 2  # the person is one topic level, no wildcards
    assert ha.discovery_topic("homeassistant", "Zoë").startswith("homeassistant/device/fithub_Zo_")


def test_bad_topic_prefixes_are_config_errors(store: Store, tmp_path: Path) -> None:
    hub = Hub(store=store, home=tmp_path)
    for bad in ({"base_topic": "fit/#"}, {"base_topic": ""}, {"discovery_prefix": "/ha"}, {"base_topic": "a/+/b"}):
        with pytest.raises(ConfigError, match=r"notifiers\.ha"):
            MqttNotifier("ha", {"host": "127.0.0.1", **bad}, hub)


# -- against the real broker ----------------------------------------------------------------------


def test_discovery_and_state_carry_the_stored_values(store: Store, tmp_path: Path, topics, shared: Path) -> None:
    base, prefix = topics
    for sample in ("morning_run.gpx", "evening_ride.tcx", "weight_scale.fit"):
        import_file(store, SAMPLES / sample, "alice")
    import_file(store, shared / BOB_FILE, "bob")

    watcher = Watcher(f"{base}/#", f"{prefix}/#")
    made = notifier(store, tmp_path, topics)
    try:
        assert watcher.wait(lambda: b"online" in watcher.on(f"{base}/status"), 10, "status online")
        unique_ids = []
        for person in ("alice", "bob"):
            config = watcher.wait_json(f"{prefix}/device/fithub_{person}/config")
            assert config["dev"]["identifiers"] == [f"fithub_{person}"]
            assert config["dev"]["name"] and config["o"]["name"] == "fithub"
            comps = config["cmps"]
            assert {c["platform"] for c in comps.values()} == {"sensor"}
            by_key = {cid.removeprefix(f"fithub_{person}_"): c for cid, c in comps.items()}
            live = {"live_hr", "live_power", "live_cadence", "live_speed"}  # read the live topic (tests/test_live.py)
            assert set(by_key) == {"last_activity", "weekly_distance", "weekly_time", "streak", "weight", "resting_hr", *live}
            for cid, comp in comps.items():
                assert comp["unique_id"] == cid and re.fullmatch(r"[a-zA-Z0-9_-]+", cid)
                is_live = cid.removeprefix(f"fithub_{person}_") in live
                assert comp["state_topic"] == f"{base}/{person}/" + ("live" if is_live else "state")
                assert ("expire_after" in comp) == is_live
                assert comp["availability_topic"] == f"{base}/status"
                assert comp["name"]
                unique_ids.append(comp["unique_id"])
            assert by_key["weight"]["device_class"] == "weight" and by_key["weight"]["unit_of_measurement"] == "kg"
            assert by_key["resting_hr"]["unit_of_measurement"] == "bpm"
            assert by_key["resting_hr"]["state_class"] == "measurement"
            assert by_key["weekly_distance"]["unit_of_measurement"] == "m"
            assert by_key["weekly_time"]["unit_of_measurement"] == "s"

            # Every template reads a key the state has, and that key holds the stored value.
            state = watcher.wait_json(f"{base}/{person}/state")
            fields = {key: template_field(c["value_template"]) for key, c in by_key.items() if key not in live}
            assert all(f in state for f in fields.values()), (fields, sorted(state))
            last = store.list_activities(person=person)[-1]
            assert state[fields["last_activity"]] == last.activity.sport
            assert state["last_activity_id"] == last.id
            assert state["last_activity_distance_m"] == pytest.approx(last.activity.distance_m, abs=0.06)
            assert state["last_activity_elapsed_s"] == pytest.approx(last.activity.elapsed_s, abs=0.06)
            weights = store.measurements(person=person, kind="weight_kg")
            if weights:
                assert state[fields["weight"]] == pytest.approx(weights[-1].value, abs=0.006)
            else:
                assert state[fields["weight"]] is None
            for attr in re.findall(r"value_json\.([a-z_]+)", by_key["last_activity"]["json_attributes_template"]):
                assert attr in state
        assert len(unique_ids) == len(set(unique_ids))
        alice = watcher.latest_json(f"{base}/alice/state")
        assert alice["weight_kg"] == pytest.approx(71.9) and alice["last_activity_sport"] == "cycling"
        assert watcher.latest_json(f"{base}/bob/state")["last_activity_sport"] == "running"
        # Retained: a Home Assistant that connects later gets configs and states at once.
        late = Watcher(f"{base}/alice/state", f"{prefix}/device/fithub_alice/config")
        try:
            late.wait(lambda: len(late.messages) == 2, 5, "the retained config and state")
            assert all(retained for _, _, retained in late.messages)
        finally:
            late.close(clear_retained=False)
    finally:
        made.close()
        watcher.close()


def test_deliver_publishes_new_state_and_the_event(store: Store, tmp_path: Path, topics) -> None:
    base, prefix = topics
    import_file(store, SAMPLES / "morning_run.gpx", "alice")
    made = notifier(store, tmp_path, topics)
    watcher = Watcher(f"{base}/#", f"{prefix}/#")
    try:
        watcher.wait_json(f"{base}/alice/state", check=lambda d: d["last_activity_sport"] == "running")
        seen = stored_events(store)
        import_file(store, SAMPLES / "evening_ride.tcx", "alice")
        import_file(store, SAMPLES / "weight_scale.fit", "carol")  # a person the notifier has not announced
        new = stored_events(store, after_id=max(e.id for e in seen))
        assert [e.kind for e in new] == ["activity.stored", "measurement.stored"]
        ride = store.list_activities(person="alice")[-1]
        made.clock = lambda: ride.activity.start + timedelta(hours=3)  # the evening of the ride
        watcher.clear()
        for event in new:
            made.deliver(event)
        # deliver() returned: the broker has acknowledged it all, so the watcher gets it promptly.
        state = watcher.wait_json(f"{base}/alice/state", 5, lambda d: d["last_activity_id"] == ride.id)
        assert state["last_activity_sport"] == "cycling"
        # Tuesday's ride is this week's only activity (Saturday's run was the week before).
        assert state["week_activities"] == 1 and state["week_start"] == "2024-05-20"
        assert state["week_distance_m"] == pytest.approx(ride.activity.distance_m, abs=0.06)
        assert state["week_moving_s"] == pytest.approx(ride.activity.moving_s, abs=0.06)
        assert state["streak_days"] == 1
        carol = watcher.wait_json(f"{base}/carol/state", 5)
        assert carol["weight_kg"] == pytest.approx(store.measurements(person="carol", kind="weight_kg")[-1].value)
        assert watcher.wait_json(f"{prefix}/device/fithub_carol/config", 5)["dev"]["identifiers"] == ["fithub_carol"]
        sent = watcher.wait_json(f"{base}/events/activity.stored", 5)
        assert sent["key"] == new[0].key and sent["person"] == "alice" and sent["payload"]["activity_id"] == ride.id
        watcher.wait_json(f"{base}/events/measurement.stored", 5)
        # Events are not retained: a subscriber arriving later gets none of them.
        late = Watcher(f"{base}/events/#")
        try:
            time.sleep(0.5)
            assert late.messages == []
        finally:
            late.close(clear_retained=False)
        # A repeated delivery (at least once) republishes the same truth.
        made.deliver(new[0])
        assert watcher.wait(lambda: len(watcher.on(f"{base}/events/activity.stored")) == 2, 5, "the repeat")
        assert watcher.latest_json(f"{base}/alice/state")["last_activity_id"] == ride.id
    finally:
        made.close()
        watcher.close()


def test_persons_option_limits_what_is_published(store: Store, tmp_path: Path, topics) -> None:
    base, prefix = topics
    import_file(store, SAMPLES / "morning_run.gpx", "alice")
    import_file(store, SAMPLES / "evening_ride.tcx", "bob")
    watcher = Watcher(f"{base}/#", f"{prefix}/#")
    made = notifier(store, tmp_path, topics, persons=["bob"])
    try:
        watcher.wait_json(f"{base}/bob/state")
        for event in stored_events(store):
            made.deliver(event)  # alice's event is acknowledged without publishing
        sent = watcher.wait(lambda: watcher.on(f"{base}/events/activity.stored"), 5, "bob's event")
        time.sleep(0.5)  # alice's would have arrived by now
        assert [json.loads(p)["person"] for p in watcher.on(f"{base}/events/activity.stored")] == ["bob"] == [
            json.loads(p)["person"] for p in sent]  # fmt: skip
        assert not [t for t, _, _ in watcher.messages if "alice" in t]
    finally:
        made.close()
        watcher.close()


def test_discovery_is_republished_when_home_assistant_comes_online(store: Store, tmp_path: Path, topics) -> None:
    base, prefix = topics
    import_file(store, SAMPLES / "morning_run.gpx", "alice")
    made = notifier(store, tmp_path, topics)
    watcher = Watcher(f"{base}/#", f"{prefix}/device/#")
    try:
        config_topic = f"{prefix}/device/fithub_alice/config"
        watcher.wait_json(config_topic)  # the retained copy from the first announcement
        watcher.clear()
        time.sleep(0.5)
        assert watcher.on(config_topic) == []
        # Home Assistant restarting publishes a fresh, unretained "online".
        watcher.client.publish(f"{prefix}/status", "online", qos=1).wait_for_publish(5)
        config = watcher.wait_json(config_topic, 10)
        assert config["dev"]["identifiers"] == ["fithub_alice"]
        assert watcher.wait_json(f"{base}/alice/state", 5)["last_activity_sport"] == "running"
        # "offline" from Home Assistant asks for nothing.
        watcher.clear()
        watcher.client.publish(f"{prefix}/status", "offline", qos=1).wait_for_publish(5)
        time.sleep(1.0)
        assert watcher.on(config_topic) == []
    finally:
        made.close()
        watcher.close()


_LWT_SCRIPT = """
import sys, time
from pathlib import Path
from hub.plugins import Hub
from hub.storage import Store
from connectors.mqtt.notifier import MqttNotifier
home = Path(sys.argv[1])
store = Store(sys.argv[2], home)
n = MqttNotifier("lwt", {"host": "127.0.0.1", "base_topic": sys.argv[3], "discovery_prefix": sys.argv[4]},
                 Hub(store=store, home=home))
assert n.wait_connected(10)
print("ready", flush=True)
time.sleep(600)
"""


def test_last_will_says_offline_when_the_process_is_killed(tmp_path: Path, topics) -> None:
    base, prefix = topics
    home = tmp_path / "home"
    watcher = Watcher(f"{base}/status")
    proc = subprocess.Popen([sys.executable, "-c", _LWT_SCRIPT, str(home), f"sqlite:///{tmp_path / 'x.db'}", base, prefix],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()
        watcher.wait(lambda: watcher.on(f"{base}/status")[-1:] == [b"online"], 10, "online")
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker must send the will
        proc.wait(10)
        watcher.wait(lambda: watcher.on(f"{base}/status")[-1:] == [b"offline"], 15, "the last will")
        # Retained: a Home Assistant connecting later also sees the hub as unavailable.
        late = Watcher(f"{base}/status")
        try:
            late.wait(lambda: (f"{base}/status", b"offline", True) in late.messages, 5, "retained offline")
        finally:
            late.close(clear_retained=False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        watcher.close()


def test_unreachable_broker_raises_delivery_error_and_the_outbox_retries(tmp_path: Path, topics) -> None:
    base, prefix = topics
    store = Store(f"sqlite:///{tmp_path / 'fithub.db'}", tmp_path / "home")
    broker = PrivateBroker(tmp_path)
    broker.start()
    made = None
    try:
        made = MqttNotifier("ha", {"host": "127.0.0.1", "port": broker.port, "base_topic": base, "discovery_prefix": prefix,
                                   "timeout_s": 2}, Hub(store=store, home=tmp_path / "home"))  # fmt: skip
        assert made.wait_connected(10)
        box = Outbox(store, {"ha": made}, OutboxSettings(retry_base_s=0.05, retry_max_s=0.2, max_attempts=100,
                                                         breaker_failures=100))  # fmt: skip
        box.register()
        broker.stop()
        wait_for(lambda: not made.connected, 10, "the notifier to notice the broker is gone")
        import_file(store, SAMPLES / "morning_run.gpx", "alice")

        started = time.monotonic()
        with pytest.raises(DeliveryError, match=rf"127\.0\.0\.1:{broker.port}"):
            made.deliver(stored_events(store)[0])
        assert time.monotonic() - started < 1, "an unreachable broker fails fast, it does not hang the outbox"
        box.run_once()
        (pending,) = box.pending("ha")
        assert pending.attempts >= 1 and "not reachable" in (pending.last_error or "")

        broker.start()
        watcher = Watcher(f"{base}/#", f"{prefix}/#", port=broker.port)
        try:
            wait_for(lambda: made.connected, 40, "the notifier to reconnect")
            deadline = time.monotonic() + 20
            while sum(box.depth().values()) and time.monotonic() < deadline:
                box.run_once()
                time.sleep(0.1)
            assert sum(box.depth().values()) == 0, box.pending()
            run = store.list_activities(person="alice")[-1]
            state = watcher.wait_json(f"{base}/alice/state", 10, lambda d: d["last_activity_id"] == run.id)
            assert state["last_activity_sport"] == "running"
            assert watcher.wait(lambda: b"online" in watcher.on(f"{base}/status"), 5, "online after reconnect")
            assert watcher.wait_json(f"{prefix}/device/fithub_alice/config", 5)["cmps"]
        finally:
            watcher.close(clear_retained=False)
    finally:
        if made is not None:
            made.close()
        broker.stop()
        store.close()


def test_through_the_daemon_a_dropped_file_ends_as_published_state(tmp_path: Path, topics) -> None:
    base, prefix = topics
    home = tmp_path / "home"
    config = write_config(home, f"""
[hub]
log_format = "json"

[http]
port = 0

[outbox]
interval_s = 0.2
retry_base_s = 0.2
retry_max_s = 1

[sources.inbox]
type = "watch"
interval_s = 0.3
settle_s = 0.5

[notifiers.ha]
type = "mqtt"
host = "127.0.0.1"
port = {BROKER[1]}
base_topic = "{base}"
discovery_prefix = "{prefix}"
""")
    watcher = Watcher(f"{base}/#", f"{prefix}/#")
    daemon = DaemonProcess(home, config).start()
    try:
        daemon.wait_ready()
        watcher.wait(lambda: watcher.on(f"{base}/status")[-1:] == [b"online"], 20, "the daemon's notifier online")
        copy_file(SAMPLES / "evening_ride.tcx", home / "inbox" / "evening_ride.tcx")
        state = watcher.wait_json(f"{base}/default/state", 60, lambda d: d["last_activity_sport"] is not None)
        ((wid, sport, distance),) = db_query(home / "fithub.db", "SELECT id, sport, distance_m FROM workouts")
        assert (state["last_activity_id"], state["last_activity_sport"]) == (wid, sport) == (wid, "cycling")
        assert state["last_activity_distance_m"] == pytest.approx(distance, abs=0.06)
        config_doc = watcher.wait_json(f"{prefix}/device/fithub_default/config", 10)
        assert config_doc["dev"]["identifiers"] == ["fithub_default"]
        assert json.loads(watcher.wait(lambda: watcher.on(f"{base}/events/activity.stored"), 10, "the event")[0])["payload"][
            "activity_id"] == wid  # fmt: skip
        code, _ = daemon.terminate()
        assert code == 0, daemon.log()[-3000:]
        # The process is gone without a clean MQTT disconnect: Home Assistant marks it unavailable.
        watcher.wait(lambda: watcher.on(f"{base}/status")[-1:] == [b"offline"], 15, "offline after the daemon stopped")
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
        watcher.close()


def _tls_material(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=fithub test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def test_tls_and_password_from_config(tmp_path: Path, topics) -> None:
    base, prefix = topics
    ca, cert, key = _tls_material(tmp_path)
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "hub", "right horse"], check=True, capture_output=True)
    broker = PrivateBroker(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n"
                                     f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'fithub.db'}", tmp_path / "home")
    hub = Hub(store=store, home=tmp_path / "home")
    import_file(store, SAMPLES / "evening_ride.tcx", "alice")
    event = stored_events(store)[0]
    base_opts = {"host": "127.0.0.1", "port": broker.port, "tls": True, "ca_file": str(ca), "username": "hub",
                 "base_topic": base, "discovery_prefix": prefix, "timeout_s": 2}  # fmt: skip
    broker.start()
    good = wrong = None
    try:
        wrong = MqttNotifier("bad", {**base_opts, "password": "wrong"}, hub)
        assert not wrong.wait_connected(2), "the broker must refuse a wrong password"
        with pytest.raises(DeliveryError, match="not reachable"):
            wrong.deliver(event)

        good = MqttNotifier("ha", {**base_opts, "password": "right horse"}, hub)
        assert good.wait_connected(10), "TLS with the configured CA and the password connects"
        good.deliver(event)  # returns only once the broker acknowledged over TLS
    finally:
        for made in (wrong, good):
            if made is not None:
                made.close()
        broker.stop()
        store.close()


def test_state_is_refreshed_without_new_events(store: Store, tmp_path: Path, topics) -> None:
    base, prefix = topics
    import_file(store, SAMPLES / "morning_run.gpx", "alice")
    watcher = Watcher(f"{base}/#")
    made = notifier(store, tmp_path, topics, refresh_s=1, discovery=False)
    try:
        # A new week or a missed day changes the figures too: they are republished on a timer.
        watcher.wait(lambda: len(watcher.on(f"{base}/alice/state")) >= 3, 10, "periodic state refreshes")
    finally:
        made.close()
        watcher.close()

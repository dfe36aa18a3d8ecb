"""The ``mqtt`` push source: gateways and devices publishing to a broker.

Config (``[sources.<name>] type = "mqtt"``), e.g.::

    host = "127.0.0.1"
    subscriptions = { "home/TheengsGateway/BTtoMQTT/+" = "theengs", "fithub/+/samples" = "fithub" }
    devices = { "C4:7C:8D:6A:1B:2C" = "alice" }

How the parts fit (one job per module):

- :mod:`.client`: the paho-mqtt session (persistent MQTT 5 session, QoS 1, manual
  acks, reconnects) feeding received messages into
- :mod:`.ingest`: the worker (a parser thread and a writer thread) that parses
  them with their topic's profile (:mod:`.profiles`), stores each batch in one
  transaction (:mod:`.storage`) and only then acknowledges them;
- :mod:`.sessions`: a timer that turns the samples of devices that went quiet into
  activities (:mod:`.live`), stored like imported files so they merge with the
  watch's recording of the same workout.

With ``shared_group`` several hub processes subscribe to ``$share/<group>/<filter>``
and the broker splits the messages between them; every row's idempotency key is
UNIQUE in the database, so they never store anything twice. Each process needs its
own client id (the default differs per machine and data directory).

What "nothing lost" needs from the broker: QoS 1 publishers, and a broker that
queues enough for a hub that is down or restarting. Mosquitto keeps at most 1000
queued messages per offline client unless ``max_queued_messages`` is raised (0 = no
limit), and keeps sessions across its own restarts only with ``persistence true``.
QoS 0 gateways (Theengs) lose what is published while nobody is connected; their
readings carry a key from the receive second and the payload, so a repeat within
that second is still stored once.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import ConfigError
from hub.options import Option
from hub.pipeline import Imported, Rejected
from hub.plugins import Hub, SourceHealthReport

from . import profiles
from .profiles_common import ProfileOptions
from .client import BrokerSession, BrokerSettings
from .ingest import Ingestor
from . import people
from .readings import ActivityReading, SampleReading
from .sessions import SessionCloser
from .storage import LiveStore
from .topics import broker_filter, filter_problems, group_problems

DEFAULT_SUBSCRIPTIONS = {
    "fithub/+/samples": "fithub",
    "fithub/+/measurement": "fithub",
    "fithub/+/activity": "fithub",
}
# Done live rows are kept this much longer than the broker keeps our session, after
# which no redelivery of their messages can come.
KEEP_DONE_MARGIN_S = 3600.0


class MqttSource:
    OPTIONS = {
        "host": Option("str", "MQTT broker host name or address", default="127.0.0.1"),
        "port": Option("int", "broker port (8883 is usual with TLS)", default=1883, minimum=1, maximum=65535),
        "client_id": Option(
            "str",
            "MQTT client id; empty: derived from this machine, the data directory and the source name, so it "
            "stays the same across restarts (the broker keeps the session by it). Give each process its own.",
            default="",
        ),
        "username": Option("str", "user name for the broker; empty: anonymous", default=""),
        "password": Option("secret", "password for the broker", default=None),
        "tls": Option("bool", "connect with TLS (the server certificate is verified)", default=False),
        "ca_file": Option("path", "CA certificate file for TLS; empty: the system's CAs", default=""),
        "session_expiry_s": Option(
            "duration", "how long the broker keeps our session and queues messages while the hub is down",
            default=86400, minimum=0, maximum=4294967295,
        ),
        "keepalive_s": Option("int", "MQTT keep-alive interval, seconds", default=60, minimum=5, maximum=65535),
        "subscriptions": Option(
            "table", "topic filter -> payload profile (theengs, omg, esphome, openscale, fithub); first match wins",
            default=dict(DEFAULT_SUBSCRIPTIONS),
            example={"home/TheengsGateway/BTtoMQTT/+": "theengs", "fithub/+/samples": "fithub"},
        ),
        "shared_group": Option(
            "str", "share the subscriptions with other hub processes ($share/<group>/<filter>); empty: not shared",
            default="",
        ),
        **people.OPTIONS,  # devices, persons, timezone: whose reading is it
        "session_gap_s": Option(
            "duration", "a device's live session ends after this long without samples and becomes an activity",
            default=120, minimum=1,
        ),
        "batch_max": Option("int", "at most this many messages per database transaction", default=500, minimum=1, maximum=20000),
        "batch_ms": Option("int", "gather messages for at most this long before committing, milliseconds", default=50, minimum=0, maximum=10000),
        "qos": Option("int", "subscription QoS (1: nothing lost, acknowledged after the commit)", default=1, choices=(0, 1)),
        "reconnect_max_s": Option("duration", "longest pause between two reconnect attempts", default=60, minimum=1),
    }

    def __init__(self, name: str, options: dict[str, Any], hub: Hub) -> None:
        self.name = name
        self.hub = hub
        # Defaults too, so a source built without the config layer (tests, the benchmark) works.
        opts = {k: o.default for k, o in self.OPTIONS.items() if not o.required}
        opts.update(options)
        self.options = opts
        subscriptions = dict(opts["subscriptions"] or {})
        self.routes = routes(name, subscriptions, opts["shared_group"])
        self._device_people: dict[str, str] = {}
        self.people = people.load_people(opts.get("devices"), opts.get("persons"), opts.get("timezone") or "UTC")
        self.live = LiveStore(hub.store.engine, name)
        self.source = f"mqtt:{name}"
        gap = float(opts["session_gap_s"])
        self.closer = SessionCloser(
            hub.store, self.live, source=self.source, gap_s=gap, default_person=hub.default_person,
            keep_done_s=float(opts["session_expiry_s"]) + KEEP_DONE_MARGIN_S, log=hub.log,
        )
        self.check_every_s = max(0.2, min(gap / 4, 10.0))
        batch_max = int(opts["batch_max"])
        self.ingestor = Ingestor(
            name=name, subscriptions=self.routes, parse=profiles.parse, live=self.live,
            decide=self._decide,
            import_activity=self._import_activity, ack=self._ack,
            batch_max=batch_max, batch_ms=float(opts["batch_ms"]), log=hub.log,
        )
        group = opts["shared_group"] or None
        self.broker = BrokerSession(
            BrokerSettings(
                host=opts["host"], port=int(opts["port"]),
                client_id=opts["client_id"] or default_client_id(str(hub.home), name),
                filters=tuple(broker_filter(f, group) for f in self.routes),
                qos=int(opts["qos"]), username=opts["username"] or None, password=opts["password"] or None,
                tls=bool(opts["tls"]), ca_file=str(opts["ca_file"] or "") or None,
                keepalive_s=int(opts["keepalive_s"]), session_expiry_s=int(float(opts["session_expiry_s"])),
                # Room for a whole batch being committed plus the next one arriving.
                receive_maximum=min(65535, max(100, 4 * batch_max)),
                reconnect_max_s=max(1, int(float(opts["reconnect_max_s"]))),
            ),
            on_message=self.ingestor.put,
            log=hub.log,
        )
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    @property
    def stats(self):
        return self.ingestor.stats

    def health(self) -> SourceHealthReport:
        """For ``fithub status`` and ``/metrics`` (the daemon records it periodically)."""
        st = self.stats
        connected = self.broker.connected.is_set()
        return SourceHealthReport(
            ok=connected,
            items=st.samples_new + st.measurements_new + st.unassigned_new + st.activities,  # new rows stored
            errors=st.payload_errors + st.db_failures,
            error=None if connected else f"not connected to {self.broker.settings.host}:{self.broker.settings.port}",
        )

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self.ingestor.start()
        self.broker.start()
        self._timer = threading.Thread(target=self._sessions_loop, name=f"mqtt-sessions-{self.name}", daemon=True)
        self._timer.start()

    def stop(self, timeout_s: float) -> None:
        """Commit and acknowledge what was received, then disconnect; the broker
        keeps the session, so what is published meanwhile waits for the next run."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        self.ingestor.stop(max(0.1, deadline - time.monotonic() - 0.5))
        self.broker.stop()
        if self._timer is not None:
            self._timer.join(max(0.1, deadline - time.monotonic()))
        st = self.stats
        self.hub.log.info(
            "MQTT source %s stopped: %d messages committed, %d new samples, %d repeats absorbed, "
            "%d measurements, %d malformed, %d activities from live sessions",
            self.name, st.committed, st.samples_new, st.samples_repeated, st.measurements_new + st.unassigned_new,
            st.payload_errors, self.closer.stored,
            extra={"source": self.name, "committed": st.committed, "samples_new": st.samples_new},
        )

    def _sessions_loop(self) -> None:
        # Sessions a crashed process left open are closed at start-up, but only once
        # what the broker kept for us has been taken in: the samples it delivers
        # first may well continue those sessions.
        settle_until = time.monotonic() + self.closer.gap_s
        while not self._stop.is_set() and time.monotonic() < settle_until:
            if self.broker.connected.is_set() and self.ingestor.idle.is_set():
                break
            self._stop.wait(0.1)
        while not self._stop.is_set():
            try:
                self.closer.close_quiet()
            except Exception as exc:  # the database may be away; the next turn retries
                self.ingestor.bad.warning("sessions", "MQTT source %s: closing live sessions failed: %s: %s",
                                          self.name, type(exc).__name__, exc)
            self._stop.wait(self.check_every_s)

    # -- what the ingest worker calls ----------------------------------------------

    def _ack(self, message) -> bool:
        return self.broker.ack(message)

    def _decide(self, readings: list) -> list:
        if readings and all(type(r) is SampleReading for r in readings):
            # The hot path: people.decide's rule for samples (payload, then device
            # map, then the default person) with the map looked up once per device.
            return [(r, r.person or self._device_person(r.device)) for r in readings]
        return [(r, d.person) for r, d in people.decide(self.people, readings, self.hub.default_person)]

    def _device_person(self, device: str) -> str:
        person = self._device_people.get(device)
        if person is None:
            person = self.people.person_for_device(device) or self.hub.default_person
            if len(self._device_people) < 100_000:  # bounded: device ids come from the network
                self._device_people[device] = person
        return person

    def _import_activity(self, reading: ActivityReading, person: str | None) -> None:
        outcome = self.hub.import_bytes(
            reading.data, name=reading.name, source=self.source, person=person or self.hub.default_person
        )
        if isinstance(outcome, Rejected):
            self.hub.log.warning("MQTT source %s: activity %s from %s rejected: %s",
                                 self.name, reading.name, reading.device, outcome.reason)
        elif isinstance(outcome, Imported):
            self.hub.log.info("MQTT source %s: activity %s from %s imported", self.name, reading.name, reading.device)


def default_client_id(home: str, name: str) -> str:
    """Stable across restarts of this process (the broker finds our session by it)
    and different for each machine, data directory and source section."""
    digest = hashlib.sha256(f"{socket.gethostname()}\0{home}\0{name}".encode()).hexdigest()[:16]
    return f"fithub-{digest}"


def routes(name: str, subscriptions: dict[str, Any], group: str) -> dict[str, tuple[str, ProfileOptions]]:
    """Topic filter -> (profile, its options), every config problem reported at once.

    A subscription's value is a profile name, or a table with ``profile`` and the
    profile's own settings: ``zone`` (IANA name: the zone of naive payload times)
    and, for esphome, ``sensors`` (sensor name -> target).
    """
    problems, result = [], {}
    if not subscriptions:
        problems.append("subscriptions is empty: nothing to subscribe to")
    for topic_filter, value in subscriptions.items():
        where = f"subscriptions[{topic_filter!r}]"
        problems.extend(f"{where}: {p}" for p in filter_problems(topic_filter))
        spec = {"profile": value} if isinstance(value, str) else value
        if not isinstance(spec, dict):
            problems.append(f"{where}: must be a profile name or a table with a profile key")
            continue
        profile = spec.get("profile")
        if profile not in profiles.PROFILES:
            problems.append(f"{where}: unknown profile {profile!r} (known: {', '.join(profiles.PROFILES)})")
            continue
        unknown = set(spec) - {"profile", "zone", "sensors"}
        if unknown:
            problems.append(f"{where}: unknown keys {', '.join(sorted(unknown))} (profile, zone, sensors)")
        zone = None
        if spec.get("zone"):
            try:
                zone = ZoneInfo(str(spec["zone"]))
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(f"{where}: unknown time zone {spec['zone']!r}")
        sensors = spec.get("sensors") or {}
        if not isinstance(sensors, dict):
            problems.append(f"{where}: sensors must be a table (sensor name -> target)")
            sensors = {}
        result[topic_filter] = (profile, ProfileOptions(zone=zone, esphome_sensors={str(k): str(v) for k, v in sensors.items()}))
    if group:
        problems.extend(group_problems(group))
    if problems:
        raise ConfigError(f"sources.{name}: " + "; ".join(problems))
    return result


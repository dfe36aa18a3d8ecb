"""MQTT notifier: per-person state for Home Assistant, and every event as JSON.

Config (``[notifiers.<name>] type = "mqtt"``)::

    host = "127.0.0.1"
    port = 1883
    username = "fithub"          # optional
    password = "..."             # optional (secret)
    tls = false
    ca_file = ""                 # TLS: the broker's CA; empty: the system's CAs
    base_topic = "fithub"
    discovery = true             # Home Assistant MQTT discovery
    discovery_prefix = "homeassistant"
    persons = []                 # empty: every person in the store
    retain = true
    refresh_s = 900              # republish states (the week and the streak roll over)
    timeout_s = 10               # wait this long for the broker's acknowledgement
    live = true                  # publish live sensor values (and their discovery)
    live_expire_s = 30           # Home Assistant: live sensors unavailable after this silence

What it publishes:

``<base>/status``
    ``online`` (retained) once connected; ``offline`` (retained) as the MQTT last
    will, so a hub that dies or loses its network shows as unavailable.
``<base>/<person>/state``
    Retained, QoS 1: :meth:`hub.stats.PersonState.as_json` (last activity, this
    ISO week's distance and time, the current streak, latest weight and resting
    HR), recomputed from the database after each activity or measurement event, so
    a repeated or reordered delivery always leaves the current truth.
``<base>/events/<kind>``
    Each event as ``event.as_json()`` (not retained, QoS 1); ``key`` identifies
    repeats (delivery is at least once).
``<base>/<person>/live``
    Live sensor values (:meth:`hub.events.LiveValues.as_json`: ``hr_bpm``,
    ``power_w``, ``cadence_rpm``, ``speed_mps``, null when not measured), about
    once a second while a BLE session runs; QoS 0, not retained: a missed or late
    value is worth nothing, so they are never queued, waited for or retried.
``<discovery_prefix>/device/fithub_<person>/config``
    Device-based discovery (:mod:`connectors.mqtt.ha_discovery`), published with the
    state on every connect and again whenever Home Assistant announces
    ``online`` on ``<discovery_prefix>/status`` (its restart).

A delivery returns only when the broker acknowledged every publish (QoS 1); when
the broker is unreachable it raises :class:`hub.plugins.DeliveryError`, and the
outbox retries later. The connection runs on paho's own thread and reconnects by
itself; discovery and state after a (re)connect are published from a small
worker thread, never from paho's callback thread (which must not block).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from connectors.notify import plugin_options
from hub import stats
from hub.errors import ConfigError, FithubError
from hub.events import ACTIVITY_MERGED, ACTIVITY_STORED, MEASUREMENT_STORED, Event, LiveValues
from hub.options import Option
from hub.plugins import DeliveryError

from . import ha_discovery as ha

log = logging.getLogger("fithub.mqtt.notifier")

# Events after which a person's figures may have changed.
_STATE_EVENTS = frozenset({ACTIVITY_STORED, ACTIVITY_MERGED, MEASUREMENT_STORED})


def _fithub_version() -> str:
    try:
        return version("fithub")
    except PackageNotFoundError:  # a bare checkout
        return "0"


class MqttNotifier:
    OPTIONS = {
        "host": Option("str", "MQTT broker host name or address.", default="127.0.0.1"),
        "port": Option("int", "MQTT broker port (8883 is usual with TLS).", default=1883, minimum=1, maximum=65535),
        "username": Option("str", "User name at the broker; empty: anonymous.", default=""),
        "password": Option("secret", "Password at the broker.", default=None),
        "tls": Option("bool", "Connect with TLS, checking the broker's certificate against the system CAs.", default=False),
        "ca_file": Option("path", "CA certificate file for TLS; empty: the system's CAs.", default=""),
        "base_topic": Option("str", "Prefix of every topic this notifier publishes (status, state, events).", default="fithub"),
        "discovery": Option("bool", "Publish Home Assistant MQTT discovery configs (one device per person).", default=True),
        "discovery_prefix": Option("str", "Home Assistant's discovery prefix.", default="homeassistant"),
        "persons": Option("list", "Persons to publish; empty: every person in the store.", default=[], example=["alice", "bob"]),
        "retain": Option("bool", "Retain status, state and discovery messages (Home Assistant sees them after its restart).", default=True),
        "refresh_s": Option("duration", "Republish every person's state this often, so the week and the streak roll over without new data.", default=900.0, minimum=1),
        "timeout_s": Option("duration", "How long a delivery waits for the broker's acknowledgement before it is retried.", default=10.0, minimum=0.1),
        "live": Option("bool", "Publish live sensor values (BLE heart rate, power, cadence, speed) on <base_topic>/<person>/live, with their discovery.", default=True),
        "live_expire_s": Option("duration", "Home Assistant shows a live sensor as unavailable after this long without a value.", default=30.0, minimum=1),
    }  # fmt: skip

    def __init__(self, name: str, options: dict, hub=None) -> None:
        if hub is None or getattr(hub, "store", None) is None:
            raise ConfigError(f"[notifiers.{name}]: the mqtt notifier needs the hub's store")
        opts = plugin_options("notifiers", name, self.OPTIONS, options)
        for key in ("base_topic", "discovery_prefix"):
            problem = ha.check_topic_prefix(str(opts[key]), key)
            if problem:
                raise ConfigError(f"[notifiers.{name}] {problem}")
        self.name = name
        self.store = hub.store
        self.host, self.port = str(opts["host"]), int(opts["port"])
        self.base = str(opts["base_topic"])
        self.discovery = bool(opts["discovery"])
        self.prefix = str(opts["discovery_prefix"])
        self.persons_filter = frozenset(opts["persons"] or ())
        self.retain = bool(opts["retain"])
        self.timeout_s = float(opts["timeout_s"])
        self.refresh_s = float(opts["refresh_s"])
        self.live_enabled = bool(opts["live"])
        # Home Assistant takes whole seconds; the discovery carries it only with live on.
        self.live_expire_s = max(1, round(float(opts["live_expire_s"]))) if self.live_enabled else None
        self.live_published = 0
        self.live_dropped = 0  # while the broker was away: live values are not queued
        self.version = _fithub_version()
        # "Now" for the week and the streak; replaceable so tests can fix the date.
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

        self._lock = threading.Lock()  # one compute-and-publish at a time: state goes out in computed order
        self._connected = threading.Event()
        self._announce = threading.Event()
        self._closing = threading.Event()
        self._announced: set[str] = set()  # persons whose discovery went out on this connection
        self._last_error: str | None = "not connected yet"
        self._was_down = False

        self.client = self._make_client(name, opts)
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._announcer, name=f"mqtt-notifier-{name}", daemon=True)
        self._worker.start()

    # -- connection -------------------------------------------------------------------------------

    def _make_client(self, name: str, opts: dict[str, Any]) -> mqtt.Client:
        # Unique per process: no session is kept (nothing is subscribed that must
        # survive), and two hubs must not keep kicking each other off the broker.
        client_id = f"fithub-notify-{ha.sanitise(name)}-{ha.sanitise(socket.gethostname())}-{os.getpid()}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if opts["username"]:
            client.username_pw_set(str(opts["username"]), opts["password"] or None)
        if opts["tls"]:
            client.tls_set(ca_certs=str(opts["ca_file"]) if opts["ca_file"] else None)
        client.will_set(ha.status_topic(self.base), "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._down(f"broker refused the connection: {reason_code}")
            return
        if self._was_down:
            log.warning("mqtt notifier %s: connected to %s:%d again", self.name, self.host, self.port)
        else:
            log.info("mqtt notifier %s: connected to %s:%d", self.name, self.host, self.port)
        self._was_down = False
        self._last_error = None
        client.publish(ha.status_topic(self.base), "online", qos=1, retain=True)
        if self.discovery:
            client.subscribe(ha.birth_topic(self.prefix), qos=1)
        self._connected.set()
        self._announce.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._down("connection failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._down(f"disconnected: {reason_code}")

    def _down(self, why: str) -> None:
        self._connected.clear()
        self._announced.clear()  # a new connection announces again
        self._last_error = why
        if not self._was_down and not self._closing.is_set():
            # Logged once per outage; paho keeps reconnecting with backoff.
            log.warning("mqtt notifier %s: broker %s:%d unavailable (%s); retrying", self.name, self.host, self.port, why)
        self._was_down = True

    def _on_message(self, client, userdata, message) -> None:
        # A retained "online" is an old birth message, not a restart happening now.
        if message.topic == ha.birth_topic(self.prefix) and not message.retain:
            if message.payload.strip().lower() == b"online":
                self._announce.set()

    # -- publishing -------------------------------------------------------------------------------

    def _announcer(self) -> None:
        """Announce after each connect and birth message; otherwise refresh the
        states every ``refresh_s`` (a new week or a missed day changes them too)."""
        last = time.monotonic()
        while not self._closing.is_set():
            if not self._announce.wait(0.5):
                if time.monotonic() - last < self.refresh_s or not self._connected.is_set():
                    continue
                discovery = False
            else:
                self._announce.clear()
                discovery = self.discovery
            last = time.monotonic()
            try:
                self.announce(discovery=discovery)
            except Exception as exc:  # retried on the next connect, birth message or refresh
                log.warning("mqtt notifier %s: publishing state failed: %s", self.name, exc)

    def persons(self) -> list[str]:
        if self.persons_filter:
            return sorted(self.persons_filter)
        return self.store.persons()

    def announce(self, *, discovery: bool = True) -> None:
        """Publish discovery (when enabled and asked for) and the current state of every person."""
        discovery = discovery and self.discovery
        with self._lock:
            for person in self.persons():
                self._wait(self._person_messages(person, discovery=discovery), f"state of {person}")
                if discovery:
                    self._announced.add(person)

    def deliver(self, event: Event) -> None:
        if event.person is not None and self.persons_filter and event.person not in self.persons_filter:
            return
        with self._lock:
            infos: list[mqtt.MQTTMessageInfo] = []
            person = event.person
            if event.kind in _STATE_EVENTS and person is not None:
                new_person = self.discovery and person not in self._announced
                infos += self._person_messages(person, discovery=new_person)
            body = json.dumps(event.as_json(), ensure_ascii=False, separators=(",", ":"), default=str)
            infos.append(self._publish(ha.event_topic(self.base, event.kind), body, retain=False))
            self._wait(infos, f"event {event.key}")
            if event.kind in _STATE_EVENTS and person is not None and self.discovery:
                self._announced.add(person)

    def _person_messages(self, person: str, *, discovery: bool) -> list[mqtt.MQTTMessageInfo]:
        infos = []
        if discovery:
            config = ha.device_config(person, base=self.base, version=self.version, live_expire_s=self.live_expire_s)
            infos.append(self._publish(ha.discovery_topic(self.prefix, person), json.dumps(config), retain=self.retain))
        try:
            state = stats.person_state(self.store, person, now=self.clock()).as_json()
        except FithubError as exc:  # the database is down or locked: the outbox retries later
            raise DeliveryError(f"mqtt notifier {self.name}: cannot read the state of {person!r}: {exc}") from exc
        infos.append(self._publish(ha.state_topic(self.base, person), json.dumps(state), retain=self.retain))
        return infos

    def live(self, values: LiveValues) -> None:
        """Publish live values (QoS 0, not retained) without waiting for anything:
        this runs on the daemon's live worker, about once a second per source.
        A person seen for the first time gets their discovery first (without the
        state, which would need the database), so the live sensors exist in Home
        Assistant before the first session is stored."""
        if not self.live_enabled or (self.persons_filter and values.person not in self.persons_filter):
            return
        if not self._connected.is_set() or self._closing.is_set():
            self.live_dropped += 1
            return
        person = values.person
        if self.discovery and person not in self._announced:
            config = ha.device_config(person, base=self.base, version=self.version, live_expire_s=self.live_expire_s)
            self.client.publish(ha.discovery_topic(self.prefix, person), json.dumps(config), qos=1, retain=self.retain)
            self._announced.add(person)
        body = json.dumps(values.as_json(), ensure_ascii=False, separators=(",", ":"))
        self.client.publish(ha.live_topic(self.base, person), body, qos=0, retain=False)
        self.live_published += 1

    def _publish(self, topic: str, payload: str, *, retain: bool) -> mqtt.MQTTMessageInfo:
        if not self._connected.is_set():
            # Refuse rather than let paho queue it: a queued old state could be sent
            # after the fresh one published on reconnect.
            raise self._unreachable()
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def _wait(self, infos: list[mqtt.MQTTMessageInfo], what: str) -> None:
        for info in infos:
            try:
                info.wait_for_publish(self.timeout_s)
            except (RuntimeError, ValueError) as exc:
                raise self._unreachable(str(exc)) from exc
            if not info.is_published():
                raise DeliveryError(
                    f"mqtt notifier {self.name}: broker {self.host}:{self.port} did not acknowledge {what} "
                    f"within {self.timeout_s:g} s"
                )

    def _unreachable(self, detail: str | None = None) -> DeliveryError:
        why = detail or self._last_error or "not connected"
        return DeliveryError(f"mqtt notifier {self.name}: broker {self.host}:{self.port} is not reachable ({why})")

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def close(self) -> None:
        """Say "offline" and disconnect cleanly (a clean disconnect suppresses the will)."""
        self._closing.set()
        try:
            if self._connected.is_set():
                self.client.publish(ha.status_topic(self.base), "offline", qos=1, retain=True).wait_for_publish(2.0)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()
        self._worker.join(2.0)

"""The broker connection: the one module of fithub that touches paho-mqtt.

MQTT 5 with a persistent session, so that messages published while the hub is
down or reconnecting wait on the broker instead of being lost:

- a stable client id, ``clean_start=False`` on every connect, and a
  SessionExpiryInterval (paho's default keeps no session at all);
- QoS 1 subscriptions with *manual* acknowledgement: :meth:`BrokerSession.ack` is
  called by the ingest worker only after what a message produced is committed. A
  message that is never acknowledged (the hub was killed) is redelivered by the
  broker, and its idempotency key absorbs it;
- reconnects by paho's loop thread with a growing delay (``reconnect_delay_set``);
  when the broker answers that it has no session for us (it restarted without
  persistence, or the session expired), every filter is subscribed again.

Acknowledgements are tagged with the connection they belong to: after a reconnect
a packet id from the old connection may name a different message on the new one,
so a late ack for an old connection is dropped (the broker redelivers that message,
and the key absorbs the repeat) rather than risk acknowledging an uncommitted one.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from hub.errors import SourceUnavailable


@dataclass(frozen=True)
class Inbound:
    """One received message, as the ingest worker sees it."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    received_at: datetime  # UTC, when paho handed it to us
    received_mono: float  # time.monotonic() at the same moment, for latency figures
    connection: int  # which connection delivered it (see module docstring)


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int
    client_id: str
    filters: tuple[str, ...]  # as sent to the broker (shared prefix included)
    qos: int = 1
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    keepalive_s: int = 60
    session_expiry_s: int = 86400
    # How many unacknowledged QoS 1 messages the broker may have in flight to us
    # (MQTT 5 Receive Maximum). Acks wait for a commit, so this must cover a whole
    # batch or the broker stalls until the batch commits.
    receive_maximum: int = 2000
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60


class BrokerSession:
    """A persistent MQTT 5 session feeding ``on_message``; runs paho's loop thread."""

    def __init__(self, settings: BrokerSettings, on_message: Callable[[Inbound], None], log: logging.Logger) -> None:
        self.settings = settings
        self._on_message_cb = on_message
        self.log = log
        self.connected = threading.Event()
        self.connections = 0  # successful connects so far; also the current connection's tag
        self._first = True
        self._lost_logged = False
        self._stopping = False
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=paho.MQTTv5, manual_ack=True,
        )
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.tls:
            client.tls_set(ca_certs=s.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried."""
        s = self.settings
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(s.session_expiry_s)
        props.ReceiveMaximum = max(1, min(65535, int(s.receive_maximum)))
        try:
            self._client.connect_async(
                s.host, s.port, keepalive=int(s.keepalive_s), clean_start=False, properties=props
            )
        except (OSError, ValueError) as exc:
            raise SourceUnavailable(f"MQTT broker {s.host}:{s.port}: {exc}") from exc
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect (the broker keeps the session for ``session_expiry_s``)."""
        self._stopping = True
        self.connected.clear()
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    def ack(self, message: Inbound) -> bool:
        """Acknowledge a committed message; False when it cannot be (QoS 0, or its
        connection is gone: the broker will redeliver it)."""
        if message.qos == 0 or message.connection != self.connections or not self.connected.is_set():
            return False
        return self._client.ack(message.mid, message.qos) == paho.MQTT_ERR_SUCCESS

    # -- paho callbacks (paho's loop thread) -------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        s = self.settings
        if reason_code.is_failure:
            if not self._lost_logged:  # logged once per outage, not at every retry
                self.log.error("MQTT broker %s:%d refused the connection: %s; retrying with backoff",
                               s.host, s.port, reason_code)
                self._lost_logged = True
            return
        self.connections += 1
        present = bool(flags.session_present)
        # Subscribe when the broker has no session for us, and on this process's
        # first connect anyway: the config may list filters the old session lacks.
        if self._first or not present:
            options = SubscribeOptions(qos=s.qos)
            client.subscribe([(f, options) for f in s.filters])
        if self._lost_logged or not self._first:
            self.log.info(
                "MQTT reconnected to %s:%d (session %s)", s.host, s.port, "resumed" if present else "new, resubscribed"
            )
        else:
            self.log.info(
                "MQTT connected to %s:%d as %s (session %s), subscribed to %s",
                s.host, s.port, s.client_id, "resumed" if present else "new", ", ".join(s.filters),
            )
        self._first = False
        self._lost_logged = False
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._lost_logged and not self._stopping:  # a wanted stop is not news
            s = self.settings
            self.log.warning("MQTT connection to %s:%d lost (%s); reconnecting with backoff", s.host, s.port, reason_code)
            self._lost_logged = True

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._lost_logged and not self._stopping:
            s = self.settings
            self.log.warning("MQTT broker %s:%d cannot be reached; retrying with backoff", s.host, s.port)
            self._lost_logged = True

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        for topic_filter, code in zip(self.settings.filters, reason_codes):
            if code.is_failure:
                self.log.error("MQTT subscription to %s refused by the broker: %s", topic_filter, code)

    def _on_message(self, client, userdata, message) -> None:
        self._on_message_cb(
            Inbound(
                topic=message.topic,
                payload=message.payload,
                qos=message.qos,
                mid=message.mid,
                retain=bool(message.retain),
                received_at=datetime.now(timezone.utc),
                received_mono=time.monotonic(),
                connection=self.connections,
            )
        )

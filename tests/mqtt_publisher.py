"""A device fleet publishing fithub sample messages, in its own process.

Device ``d<i>`` publishes ``per_device`` samples on ``<prefix>/d<i>/samples`` at
times ``start + n`` seconds, ``seq = n``; with ``--batch k`` each message carries k
consecutive samples. Messages go out round-robin over the devices, paced to
``--rate`` messages/s (0: as fast as the broker takes them), QoS 1 by default.

A publish the broker did not acknowledge (the broker restarted, the connection
dropped) is sent again until it is: a repeat carries the same sample times and
sequence numbers, so the hub's idempotency keys absorb it. Prints one JSON line at
the end: {"sent": messages, "samples": n, "seconds": s, "republished": r}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def payload(n0: int, count: int, start: int) -> bytes:
    samples = [{"t": start + n, "seq": n, "hr": 100 + n % 80, "power": 150 + n % 200} for n in range(n0, n0 + count)]
    if count == 1:
        body = {"v": 1, **samples[0]}
    else:
        body = {"v": 1, "samples": samples}
    return json.dumps(body, separators=(",", ":")).encode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--per-device", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--start", type=int, default=1_700_000_000)
    ap.add_argument("--qos", type=int, default=1)
    args = ap.parse_args()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(0.2, 2)
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()

    messages = []  # (topic, first sample index, count)
    for n0 in range(0, args.per_device, args.batch):
        for d in range(args.devices):
            messages.append((f"{args.prefix}/d{d}/samples", n0, min(args.batch, args.per_device - n0)))

    started = time.monotonic()
    pending: dict[int, tuple[str, bytes, object]] = {}
    republished = 0
    for i, (topic, n0, count) in enumerate(messages):
        if args.rate:
            wait = started + i / args.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        data = payload(n0, count, args.start)
        while True:
            info = client.publish(topic, data, qos=args.qos)
            if info.rc == paho.MQTT_ERR_SUCCESS or info.rc == paho.MQTT_ERR_NO_CONN:
                break
            time.sleep(0.01)
        pending[i] = (topic, data, info, time.monotonic())
        if len(pending) > 5000:
            republished += _settle(client, pending, args.qos, keep=1000)
    republished += _settle(client, pending, args.qos, keep=0)
    took = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"sent": len(messages), "samples": args.devices * args.per_device, "seconds": took,
                      "republished": republished}), flush=True)
    return 0


def _settle(client, pending: dict, qos: int, keep: int) -> int:
    """Wait until at most ``keep`` publishes are unacknowledged; publish again the
    ones that were lost with a dropped connection."""
    republished = 0
    while len(pending) > keep:
        now = time.monotonic()
        for i in list(pending):
            topic, data, info, sent_at = pending[i]
            if info.rc == paho.MQTT_ERR_SUCCESS and info.is_published():
                del pending[i]
            elif client.is_connected() and (info.rc != paho.MQTT_ERR_SUCCESS or now - sent_at > 5):
                # Never sent (no connection then), or stuck across a reconnect.
                pending[i] = (topic, data, client.publish(topic, data, qos=qos), now)
                republished += 1
        if len(pending) > keep:
            time.sleep(0.02)
    return republished


if __name__ == "__main__":
    sys.exit(main())

"""Webhook notifier: each event POSTed as JSON to a URL.

Config (``[notifiers.<name>] type = "webhook"``)::

    url = "https://example.org/fithub"   # required
    secret = "..."                        # optional: sign every request
    events = ["activity.stored"]          # default: every kind
    timeout_s = 10
    headers = { Authorization = "Bearer ..." }

The request body is ``event.as_json()`` as compact UTF-8 JSON
(``{"id", "kind", "key", "person", "created_at", "payload"}``), with headers:

``Idempotency-Key``
    ``event.key``: the same for every delivery of one event. Delivery is *at least
    once* (a retry after a timeout, a hub killed between the call and recording it),
    so a receiver should remember the keys it has processed and answer 2xx to a
    repeat without doing the work again.
``X-Fithub-Event``
    The event kind, e.g. ``activity.stored``.
``X-Fithub-Signature``
    Only with a ``secret``: ``sha256=<hex>``, the HMAC-SHA256 of the exact body
    bytes keyed with the secret (UTF-8). To verify, compute it over the raw body as
    received, before parsing it, and compare in constant time::

        expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, request.headers["X-Fithub-Signature"])

Answer 2xx when done. 408, 425, 429, 5xx, timeouts and connection errors are
retried with backoff; any other 4xx parks the event as a dead letter at once
(``fithub outbox list --dead``, ``fithub outbox retry``).
Events whose kind is not in ``events`` are acknowledged without a request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hub.events import EVENT_KINDS, Event
from hub.options import Option

from . import event_kinds, plugin_options
from .http import client, header_value, post

SIGNATURE_HEADER = "X-Fithub-Signature"


def body_bytes(event: Event) -> bytes:
    return json.dumps(event.as_json(), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def request_headers(event: Event, body: bytes, secret: str | None, extra: dict[str, Any]) -> dict[str, str]:
    """The configured extra headers, then the protocol's own, which a config
    cannot override (a stray ``Idempotency-Key`` would break the receiver's dedupe)."""
    headers = {str(k): header_value(str(v)) for k, v in extra.items()}
    protocol = {
        "Content-Type": "application/json; charset=utf-8",
        "Idempotency-Key": header_value(event.key),
        "X-Fithub-Event": event.kind,
    }
    if secret:
        protocol[SIGNATURE_HEADER] = signature(secret, body)
    lowered = {k.lower() for k in protocol}
    headers = {k: v for k, v in headers.items() if k.lower() not in lowered}
    headers.update(protocol)
    return headers


class Webhook:
    OPTIONS = {
        "url": Option("str", "Where events are POSTed (http:// or https://).", example="https://example.org/fithub"),
        "secret": Option("secret", "Signs each request: X-Fithub-Signature = sha256=HMAC-SHA256(secret, body).", default=None),
        "events": Option("list", "Event kinds to send; others are skipped.", default=list(EVENT_KINDS), choices=tuple(EVENT_KINDS)),
        "timeout_s": Option("duration", "Seconds to wait for the receiver before retrying later.", default=10.0, minimum=0.1),
        "headers": Option("table", "Extra request headers, e.g. Authorization.", default={}, example={"Authorization": "Bearer TOKEN"}),
    }  # fmt: skip

    def __init__(self, name: str, options: dict, hub=None) -> None:
        opts = plugin_options("notifiers", name, self.OPTIONS, options)
        self.name = name
        self.url = str(opts["url"])
        self.secret = opts["secret"] or None
        self.events = event_kinds("notifiers", name, opts["events"])
        self.extra_headers = dict(opts["headers"] or {})
        self._http = client(float(opts["timeout_s"]))

    def deliver(self, event: Event) -> None:
        if event.kind not in self.events:
            return
        body = body_bytes(event)
        post(self._http, f"webhook {self.name}", self.url, body, request_headers(event, body, self.secret, self.extra_headers))

    def close(self) -> None:
        self._http.close()

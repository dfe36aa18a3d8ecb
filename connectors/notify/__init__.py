"""Notifiers: event consumers that tell someone or something else (a webhook, a
push service). Each one receives events through the outbox (:mod:`hub.outbox`)
and raises :class:`hub.plugins.DeliveryError` to be retried later or
:class:`hub.plugins.PermanentDeliveryError` to park the event as a dead letter.

Only :mod:`connectors.notify.http` touches the network library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hub.errors import ConfigError
from hub.events import EVENT_KINDS
from hub.options import Option


def plugin_options(kind: str, name: str, declared: Mapping[str, Option], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``given`` with defaults filled in. The daemon validates sections before
    creating plugins; this also lets a plugin be built directly (tests, scripts)
    and still fail with a message naming its section and key."""
    values = {key: option.default for key, option in declared.items() if not option.required}
    values.update(given or {})
    missing = [key for key, option in declared.items() if option.required and values.get(key) in (None, "")]
    if missing:
        raise ConfigError(f"[{kind}.{name}]: missing required key(s): {', '.join(missing)}")
    return values


def event_kinds(kind: str, name: str, wanted: Iterable[str]) -> frozenset[str]:
    """The configured ``events`` list, checked against the known kinds."""
    chosen = frozenset(wanted)
    unknown = sorted(chosen - EVENT_KINDS.keys())
    if unknown:
        raise ConfigError(
            f"[{kind}.{name}] events: unknown event kind(s) {', '.join(unknown)}; known: {', '.join(EVENT_KINDS)}"
        )
    return chosen

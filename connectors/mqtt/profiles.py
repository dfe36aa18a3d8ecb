"""Payload profiles: what an MQTT message on a subscribed topic means.

``parse(profile, topic, payload, received_at)`` turns one message into readings
(:mod:`connectors.mqtt.readings`) or raises :class:`PayloadError` naming the topic
and what was wrong; nothing else ever escapes (the MQTT loop counts the error, logs
it with its topic and acknowledges the message). :class:`IgnoredPayload`, a
``PayloadError``, marks well-formed messages that hold nothing fithub stores
(another device on a gateway's wildcard topic, a status message).

Profiles, chosen per topic filter in the MQTT source's config:

========== ==================================================== ==========================
profile    topics                                               module
========== ==================================================== ==========================
theengs    ``home/TheengsGateway/BTtoMQTT/<MAC>``               profiles_gateways
omg        ``home/<gateway>/BTtoMQTT/<MAC>`` (OpenMQTTGateway)   profiles_gateways
esphome    ``<node>/sensor/<name>/state``                       profiles_esphome
openscale  ``openScaleSync/[<userId>/]measurements/<event>``    profiles_openscale
fithub     ``fithub/<device>/samples|measurement|activity``     profiles_fithub (SCHEMA.md)
========== ==================================================== ==========================

Units are converted here, at the edge: everything leaving is SI and UTC. A
reading's time is the payload's own time when it has one, else ``received_at``
(truncated to the second); its ``key`` is derived from the message (see
:func:`profiles_common.time_key` and :func:`profiles_common.received_key`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from connectors.mqtt.profiles_common import IgnoredPayload, ProfileOptions
from connectors.mqtt.profiles_esphome import parse_esphome
from connectors.mqtt.profiles_fithub import parse_fithub
from connectors.mqtt.profiles_gateways import parse_gateway
from connectors.mqtt.profiles_openscale import parse_openscale
from connectors.mqtt.readings import PayloadError, Reading

__all__ = ["PROFILES", "IgnoredPayload", "PayloadError", "ProfileOptions", "parse", "parse_strict"]

PROFILES: tuple[str, ...] = ("theengs", "omg", "esphome", "openscale", "fithub")

log = logging.getLogger("fithub.mqtt.profiles")

_DEFAULT_OPTIONS = ProfileOptions()


def parse(
    profile: str,
    topic: str,
    payload: bytes,
    received_at: datetime,
    options: ProfileOptions | None = None,
    *,
    retained: bool = False,
) -> list[Reading]:
    """The readings in one message; :class:`PayloadError` for anything unusable.

    ``received_at`` must be timezone-aware. ``retained``: the broker delivered a
    retained message (its age is unknown; profiles without their own time skip it).
    """
    try:
        return parse_strict(profile, topic, payload, received_at, options, retained=retained)
    except PayloadError:
        raise
    except Exception as exc:  # a bug in a profile must not take the MQTT loop down
        log.exception("profile %s failed on %s", profile, topic)
        raise PayloadError(topic, f"profile {profile} failed: {type(exc).__name__}: {str(exc)[:200]}") from exc


def parse_strict(
    profile: str,
    topic: str,
    payload: bytes,
    received_at: datetime,
    options: ProfileOptions | None = None,
    *,
    retained: bool = False,
) -> list[Reading]:
    """:func:`parse` without the safety net, so tests see a profile's own bugs."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    options = options or _DEFAULT_OPTIONS
    if not isinstance(payload, (bytes, bytearray)):
        raise PayloadError(topic, f"payload must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    if profile in ("theengs", "omg"):
        if retained:
            # Gateways do not retain readings; a retained one is a stale leftover of
            # unknown age (someone published it by hand).
            raise IgnoredPayload(topic, "retained gateway message of unknown age")
        return parse_gateway(profile, topic, payload, received_at)
    if profile == "esphome":
        return parse_esphome(profile, topic, payload, received_at, options, retained)
    if profile == "openscale":
        return parse_openscale(profile, topic, payload, received_at, options)
    if profile == "fithub":
        return parse_fithub(profile, topic, payload, received_at, options)
    raise PayloadError(topic, f"unknown payload profile {profile!r} (one of {', '.join(PROFILES)})")

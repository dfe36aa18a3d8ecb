"""Plugin contracts and their discovery through entry points.

Four entry-point groups; the built-ins register in ``pyproject.toml`` exactly like
third-party packages do:

``fithub.sources``
    A factory for a source. ``[sources.<name>] type = "<entry point name>"`` in the
    config creates one. A source either *polls* (the scheduler calls ``poll()``
    every ``interval_s``) or is *pushed to* (``start()``/``stop()``; it calls the
    hub when data arrives, e.g. MQTT, BLE).
``fithub.decoders``
    A :class:`FileDecoder` for one more file format (bytes in, model out).
``fithub.sinks`` / ``fithub.notifiers``
    A factory for an event consumer (``[sinks.<name>]`` / ``[notifiers.<name>]``):
    it receives every event at least once through the outbox, in order per person.

A factory is any callable ``factory(name, options, hub) -> plugin`` with an
``OPTIONS`` mapping (key -> :class:`hub.options.Option`) declaring its section's
keys; a class with a class attribute ``OPTIONS`` is the usual shape. It receives
only its own section, already validated and with defaults filled in.

Loading is defensive: a plugin that fails to import or to start is logged with
its name and skipped; the hub keeps running with the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .events import Event, LiveValues
from .model import DEFAULT_PERSON, Decoded, Provenance
from .options import Option

if TYPE_CHECKING:  # pragma: no cover
    from .storage.repository import Store

log = logging.getLogger("fithub.plugins")

GROUPS: dict[str, str] = {
    "sources": "fithub.sources",
    "decoders": "fithub.decoders",
    "sinks": "fithub.sinks",
    "notifiers": "fithub.notifiers",
}


# -- what plugins implement ---------------------------------------------------


@runtime_checkable
class PollingSource(Protocol):
    """Called by the scheduler every ``interval_s``, never twice at once.

    ``poll`` returns how many items it took (files, records) and raises
    (preferably :class:`hub.errors.SourceUnavailable`) when the source cannot be
    read; the scheduler then backs off and retries. It should return promptly
    when ``hub.stopping`` is set.
    """

    name: str
    interval_s: float

    def poll(self) -> int: ...


@runtime_checkable
class PushSource(Protocol):
    """Runs on its own (a network client, a BLE session) and stores through the hub."""

    name: str

    def start(self) -> None: ...

    def stop(self, timeout_s: float) -> None: ...


@dataclass(frozen=True)
class SourceHealthReport:
    """What a push source may report through an optional ``health()`` method; the
    daemon records it every few seconds for ``fithub status`` and ``/metrics``.
    ``items`` and ``errors`` count since the source started."""

    ok: bool
    items: int = 0
    errors: int = 0
    error: str | None = None  # why it is not ok


@runtime_checkable
class EventConsumer(Protocol):
    """A sink or notifier. ``deliver`` returns when the event is handled; it raises
    :class:`DeliveryError` (retried later) or :class:`PermanentDeliveryError`
    (parked in the dead-letter list at once). The same event may arrive again after
    a crash: ``event.key`` lets the receiver recognise it.

    Optionally a consumer also has ``live(values: LiveValues) -> None``: it then
    gets the live readings push sources publish (about one per second per
    source), best-effort, from one worker thread of the daemon. They are never
    stored or retried: values arriving faster than the consumers take them are
    dropped (oldest first), and an exception is logged (rate-limited) and
    otherwise ignored. ``live`` should return quickly (publish, do not wait for
    acknowledgements): a slow one delays the live values of every consumer.
    """

    name: str

    def deliver(self, event: Event) -> None: ...


@runtime_checkable
class FileDecoder(Protocol):
    """One more file format for the import pipeline."""

    format: str  # short name stored with the file, e.g. "fit"

    def sniff(self, name: str, head: bytes) -> bool: ...

    def decode(self, data: bytes, origin: Provenance) -> Decoded: ...


@runtime_checkable
class StreamImporter(Protocol):
    """A whole-container importer for inputs too big or too structured for
    :class:`FileDecoder` (an Apple Health ``export.zip``, a Garmin Connect account
    export). Registered under ``fithub.decoders`` too; the CLI and the watch folders
    offer every path to these first.

    ``import_path`` streams, commits in batches, is safe to run again on the same
    or an overlapping input (adds only what is new), and returns a
    :class:`StreamReport`. It raises :class:`hub.errors.DecodeError` for an input it
    claimed but cannot read at all.
    """

    format: str

    def claims(self, path: Path, head: bytes) -> bool: ...

    def import_path(self, path: Path, store: Store, *, person: str, source: str, progress: Callable[[int, int], None] | None = None) -> StreamReport: ...


@dataclass
class StreamReport:
    """What a :class:`StreamImporter` did. ``progress`` callbacks get (done, total)
    in bytes of the input."""

    path: str
    activity_ids: list[int] = field(default_factory=list)
    merged_ids: list[int] = field(default_factory=list)
    measurements: int = 0  # newly stored
    skipped: int = 0  # already present (re-import)
    warnings: list[str] = field(default_factory=list)


class DeliveryError(Exception):
    """The consumer could not handle the event now; try again later."""


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (the receiver rejected the event as invalid)."""


# -- what plugins receive -----------------------------------------------------


@dataclass
class Hub:
    """What a plugin may use: the store, the data directory, the file importer,
    and the hub's stop flag. Push sources store data with ``import_bytes`` and
    may publish live readings with ``publish_live``."""

    store: Store
    home: Path
    stopping: threading.Event = field(default_factory=threading.Event)
    # import_bytes(data, name=..., source=..., person=...) -> pipeline Outcome
    import_bytes: Callable[..., Any] | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("fithub"))
    default_person: str = DEFAULT_PERSON  # [hub] person: whose data a source's files are, unless it says
    # publish_live(values): hand live readings to the consumers that have ``live``.
    # Never blocks and never raises (the daemon queues and drops); without a daemon
    # (CLI, tests) live values go nowhere.
    publish_live: Callable[[LiveValues], None] = field(default=lambda values: None)  # noqa: E731


# -- discovery ----------------------------------------------------------------


@dataclass(frozen=True)
class PluginInfo:
    group: str  # "sources", "decoders", "sinks", "notifiers"
    name: str  # the entry point name, used as `type = "..."` in the config
    value: str  # "module:attribute"
    distribution: str | None  # the installed package that provides it
    version: str | None
    loaded: Any = None  # the factory/decoder, when it loaded
    error: str | None = None  # why it did not load

    @property
    def builtin(self) -> bool:
        return self.distribution == "fithub"

    @property
    def options(self) -> Mapping[str, Option]:
        return getattr(self.loaded, "OPTIONS", {}) or {}


def _info(group: str, ep: EntryPoint) -> PluginInfo:
    dist = getattr(ep, "dist", None)
    name = dist.metadata["Name"] if dist is not None else None
    version = dist.version if dist is not None else None
    try:
        loaded = ep.load()
    except Exception as exc:  # a broken plugin must not take the hub down
        log.warning("plugin %s (%s, %s) failed to load: %s: %s", ep.name, GROUPS[group], ep.value, type(exc).__name__, exc)
        return PluginInfo(group, ep.name, ep.value, name, version, error=f"{type(exc).__name__}: {exc}")
    return PluginInfo(group, ep.name, ep.value, name, version, loaded=loaded)


def discover(group: str) -> dict[str, PluginInfo]:
    """Every plugin installed for ``group`` ("sources", ...), by entry point name.

    When two packages register the same name, the first one found wins and the
    clash is logged (entry point order is the installation's, not ours).
    """
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=GROUPS[group]):
        if ep.name in found:
            log.warning("plugin name %r in %s is registered twice; using %s, ignoring %s", ep.name, GROUPS[group], found[ep.name].value, ep.value)
            continue
        found[ep.name] = _info(group, ep)
    return found


def discover_all() -> dict[str, dict[str, PluginInfo]]:
    return {group: discover(group) for group in GROUPS}

"""Import one path (a file, a .zip or .gz, or a whole export a stream importer
claims) and remember what was decided about its bytes.

Shared by the watch folders and, later, the CLI. The steps for one path:

1. Offer it to every :class:`hub.plugins.StreamImporter` (Apple Health, Garmin
   account export): the first that ``claims`` it imports it as a whole.
2. Otherwise split it into payloads with :mod:`hub.inputs` (zip members, gunzip)
   and run each through :func:`hub.pipeline.ingest`.

The ingest state (``ingest_state``: file SHA-256 -> stored/rejected) is what makes a
watch folder crash-safe; :func:`known` and :func:`record` read and write it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from .errors import DecodeError, StorageError
from .inputs import iter_payloads
from .pipeline import Duplicate, Imported, Outcome, Rejected, ingest
from .plugins import StreamImporter, discover
from .storage.daemon_rows import IngestMark, mark_ingest
from .storage.engine import WRITE
from .storage.schema import ingest_state, raw_files

log = logging.getLogger("fithub.importer")

# How much of a file a StreamImporter sees to decide whether it claims it: enough
# for a zip's local header plus a first member name, or an XML prolog and DTD start.
HEAD_BYTES = 64 * 1024
_CHUNK = 1024 * 1024


# -- stream importers ----------------------------------------------------------


def stream_importers() -> list[StreamImporter]:
    """Every installed ``fithub.decoders`` plugin that imports whole paths
    (has ``claims`` and ``import_path``), in name order so the choice is stable.
    Plugins that failed to load were already logged by :func:`discover`."""
    found = []
    for name, info in sorted(discover("decoders").items()):
        plugin = info.loaded
        if plugin is not None and callable(getattr(plugin, "claims", None)) and callable(getattr(plugin, "import_path", None)):
            found.append(plugin)
    return found


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def claiming(importers: Iterable[StreamImporter], path: Path, head: bytes) -> StreamImporter | None:
    """The first importer that claims ``path``. One that raises while deciding is
    logged and passed over: a broken plugin must not block every file."""
    for importer in importers:
        try:
            if importer.claims(path, head):
                return importer
        except Exception as exc:  # plugin code: anything may escape
            log.warning("stream importer %s failed deciding on %s: %s: %s", getattr(importer, "format", importer), path, type(exc).__name__, exc)
    return None


def file_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, read in chunks (exports reach gigabytes)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# -- one path ------------------------------------------------------------------


@dataclass(frozen=True)
class PathResult:
    """What importing one path did. ``outcomes`` has one entry per payload (one for
    a plain file, one per member of a zip). ``state`` is the decision about the
    file's own bytes: "stored" when anything in it was stored or already present,
    "rejected" (with ``reason``) when nothing in it was usable."""

    outcomes: list[Outcome]
    state: str
    reason: str | None = None
    recorded: bool = False  # the ingest state committed with the data already

    @property
    def rejected(self) -> bool:
        return self.state == "rejected"


def import_path(
    store,
    path: Path,
    *,
    name: str,
    person: str,
    source: str,
    decoders: Mapping[str, Callable],
    sniff: Callable[[str, bytes], str | None],
    importers: Sequence[StreamImporter] = (),
    data: bytes | None = None,
    sha256: str | None = None,
    mark: IngestMark | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PathResult:
    """Import ``path``, naming it ``name`` in outcomes and the database.

    ``data``/``sha256``: the file's bytes and hash when the caller already read
    them (the watch folder hashes before deciding to import). ``mark``: where the
    file was seen; for a plain file it commits with the data, so a crash can never
    store the data and forget the decision.

    Raises :class:`StorageError` when the database fails (not the file's fault)
    and ``OSError`` when the file cannot be read.
    """
    head = data[:HEAD_BYTES] if data is not None else read_head(path)
    importer = claiming(importers, path, head)
    if importer is not None:
        return _stream(importer, store, path, name=name, person=person, source=source, sha256=sha256, progress=progress)

    kwargs = dict(decoders=decoders, sniff=sniff, person=person, source=source)
    plain = data is not None and not _is_container(path, head)
    if plain:
        # The payload is the file itself: its hash is the file's, so the ingest
        # state can commit in the data's transaction.
        outcome = ingest(store, data, name=name, ingest_mark=mark, **kwargs)
        recorded = isinstance(outcome, Imported) and mark is not None
        return _decide([outcome], recorded=recorded)

    outcomes: list[Outcome] = []
    prefix = str(path)
    for _top, payloads in iter_payloads([prefix]):
        for payload in payloads:
            shown = name + payload.name[len(prefix):] if payload.name.startswith(prefix) else payload.name
            if payload.data is None:
                outcomes.append(Rejected(shown, payload.error or "cannot read"))
            else:
                outcomes.append(ingest(store, payload.data, name=shown, **kwargs))
    if not outcomes:
        outcomes.append(Rejected(name, "archive holds no FIT, GPX or TCX file"))
    return _decide(outcomes, recorded=False)


def _is_container(path: Path, head: bytes) -> bool:
    return path.name.lower().endswith(".zip") or head[:2] == b"\x1f\x8b"


def _decide(outcomes: list[Outcome], *, recorded: bool) -> PathResult:
    if any(not isinstance(o, Rejected) for o in outcomes):
        return PathResult(outcomes, "stored", recorded=recorded)
    if len(outcomes) == 1:
        return PathResult(outcomes, "rejected", outcomes[0].reason)
    reasons = "; ".join(f"{o.path}: {o.reason}" for o in outcomes)
    return PathResult(outcomes, "rejected", f"nothing usable in {len(outcomes)} members: {reasons}")


def _stream(importer: StreamImporter, store, path: Path, *, name: str, person: str, source: str, sha256: str | None,
            progress: Callable[[int, int], None] | None = None) -> PathResult:
    try:
        report = importer.import_path(path, store, person=person, source=source, progress=progress)
    except DecodeError as exc:
        return PathResult([Rejected(name, str(exc.why))], "rejected", f"{importer.format}: {exc.why}")
    sha = sha256 or ""
    if not (report.activity_ids or report.merged_ids or report.measurements) and report.skipped:
        outcome: Outcome = Duplicate(name, sha)
    else:
        outcome = Imported(name, sha, list(report.activity_ids), report.measurements, list(report.warnings), list(report.merged_ids))
    return PathResult([outcome], "stored")


# -- ingest state --------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """What the database already knows about some bytes."""

    state: str  # "stored" | "rejected"
    reason: str | None
    in_state: bool  # False: only raw_files has it (imported by the CLI)


@contextmanager
def _db(store, what: str) -> Iterator[None]:
    """Map SQLAlchemy errors to StorageError naming the database (as Store does)."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"database {store.safe_url}: {what} failed: {exc}") from exc


def known(store, sha256: str) -> Known | None:
    """The recorded decision about ``sha256``, or "stored" when only ``raw_files``
    has it, or None when these bytes are new."""
    with _db(store, "reading the ingest state"), store.engine.connect() as conn:
        row = conn.execute(sa.select(ingest_state.c.state, ingest_state.c.reason).where(ingest_state.c.sha256 == sha256)).first()
        if row is not None:
            return Known(row.state, row.reason, True)
        if conn.execute(sa.select(raw_files.c.sha256).where(raw_files.c.sha256 == sha256)).first() is not None:
            return Known("stored", None, False)
    return None


def record(store, sha256: str, state: str, mark: IngestMark, reason: str | None = None) -> None:
    """Commit the decision about ``sha256`` in its own transaction."""
    with _db(store, "recording the ingest state"), store.engine.connect() as conn:
        conn = conn.execution_options(**{WRITE: True})
        with conn.begin():
            mark_ingest(conn, sha256, state, mark, reason)


def seen_paths(store, source: str) -> dict[str, tuple[int, int | None]]:
    """``path -> (size, mtime_ns)`` of every file ``source`` has a decision for
    (lets a folder whose files stay in place skip them without reading)."""
    with _db(store, "reading the ingest state"), store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(ingest_state.c.path, ingest_state.c.size, ingest_state.c.mtime_ns).where(ingest_state.c.source == source)
        ).all()
    return {r.path: (r.size, r.mtime_ns) for r in rows}


__all__ = [
    "Known",
    "PathResult",
    "claiming",
    "file_sha256",
    "import_path",
    "known",
    "read_head",
    "record",
    "seen_paths",
    "stream_importers",
]

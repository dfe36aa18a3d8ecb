"""The ingest pipeline: one file's bytes in, one outcome out.

The whole stage list is :func:`ingest`; read it top to bottom. Outcomes a user
expects (already present, not an activity, corrupt file) are returned as values;
only a failure of fithub itself (the database is gone) raises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from .errors import DecodeError
from .model import DEFAULT_PERSON, Decoded, Provenance


@dataclass(frozen=True)
class Imported:
    """Stored. ``activity_ids`` are new workouts; ``merged_ids`` existing workouts
    this file's activities joined as further versions of the same workout."""

    path: str
    sha256: str
    activity_ids: list[int]
    measurements: int
    warnings: list[str] = field(default_factory=list)
    merged_ids: list[int] = field(default_factory=list)

    @property
    def merged_only(self) -> bool:
        """Every activity of the file joined an existing workout."""
        return bool(self.merged_ids) and not self.activity_ids


@dataclass(frozen=True)
class Duplicate:
    path: str
    sha256: str


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str


Outcome = Imported | Duplicate | Rejected
Decoder = Callable[[bytes, Provenance], Decoded]


def ingest(
    store,
    data: bytes,
    *,
    name: str,
    decoders: Mapping[str, Decoder],
    sniff: Callable[[str, bytes], str | None],
    person: str = DEFAULT_PERSON,
    source: str = "file",
    received_at: datetime | None = None,
    ingest_mark=None,
) -> Outcome:
    """Decode and store one file. Safe to call again with the same bytes.

    ``ingest_mark`` (a :class:`hub.storage.daemon_rows.IngestMark`) records where the
    daemon saw the file, in the same transaction as the data.
    """
    # 1. Identity first: identical bytes are recognised before any decoding work.
    sha256 = hashlib.sha256(data).hexdigest()
    if store.has_file(sha256):
        return Duplicate(name, sha256)

    # 2. Which decoder.
    if not data:
        return Rejected(name, "empty file (0 bytes)")
    fmt = sniff(name, data)
    if fmt is None or fmt not in decoders:
        return Rejected(name, "not a FIT, GPX or TCX file (unrecognised content)")

    # 3. Decode (pure). A decoder turns every failure into a DecodeError.
    origin = Provenance(
        source=f"{source}:{fmt}",
        sha256=sha256,
        received_at=received_at or datetime.now(timezone.utc),
        name=name,
    )
    try:
        decoded = decoders[fmt](data, origin)
    except DecodeError as exc:
        return Rejected(name, _reason(exc))
    if decoded.not_activity:
        return Rejected(name, decoded.not_activity)
    if not decoded.activities and not decoded.measurements:
        return Rejected(name, f"no activity or measurement data in this {fmt.upper()} file")

    # 4. Assign the household member, then store everything in one transaction
    #    (the raw bytes go to the content-addressed archive before the commit).
    activities = [replace(a, person=person) for a in decoded.activities]
    measurements = [replace(m, person=person) for m in decoded.measurements]
    saved = store.save_file(
        data=data,
        sha256=sha256,
        name=name,
        fmt=fmt,
        source=origin.source,
        person=person,
        received_at=origin.received_at,
        activities=activities,
        measurements=measurements,
        ingest=ingest_mark,
    )
    if saved.duplicate:  # another importer stored the same bytes meanwhile
        return Duplicate(name, sha256)
    warnings = list(dict.fromkeys([*decoded.warnings, *(w for a in activities for w in a.warnings)]))
    return Imported(name, sha256, saved.activity_ids, len(measurements), warnings, saved.merged_ids)


def _reason(exc: DecodeError) -> str:
    return f"{exc.why} (at {exc.where})" if exc.where else exc.why


def ingest_all(
    store,
    payloads: Iterable[tuple[str, Iterator]],
    *,
    decoders: Mapping[str, Decoder],
    sniff: Callable[[str, bytes], str | None],
    person: str = DEFAULT_PERSON,
    on_file: Callable[[str], None] | None = None,
) -> Iterator[Outcome]:
    """Ingest every payload of :func:`hub.inputs.iter_payloads`, yielding outcomes."""
    for top, members in payloads:
        for payload in members:
            if payload.data is None:
                yield Rejected(payload.name, payload.error or "cannot read")
            else:
                yield ingest(store, payload.data, name=payload.name, decoders=decoders, sniff=sniff, person=person)
        if on_file:
            on_file(top)


@dataclass
class Summary:
    """Outcomes by kind: a file is *imported* when it created at least one new
    workout, *merged* when all its activities joined existing workouts."""

    imported: list[Imported] = field(default_factory=list)
    merged: list[Imported] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, Imported):
            (self.merged if outcome.merged_only else self.imported).append(outcome)
        elif isinstance(outcome, Duplicate):
            self.duplicates.append(outcome)
        else:
            self.rejected.append(outcome)

    def as_json(self) -> dict:
        stored = self.imported + self.merged
        return {
            "imported": len(self.imported),
            "merged": len(self.merged),
            "duplicates": len(self.duplicates),
            "rejected": [{"path": r.path, "reason": r.reason} for r in self.rejected],
            "activities": sum(len(i.activity_ids) for i in stored),
            "merged_activities": sum(len(i.merged_ids) for i in stored),
            "measurements": sum(i.measurements for i in stored),
            "warnings": [{"path": i.path, "warning": w} for i in stored for w in i.warnings],
        }

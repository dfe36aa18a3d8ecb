"""Rebuild stored records from the raw archive with the current decoders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .errors import DecodeError
from .model import Provenance
from .pipeline import Decoder


def reprocess_all(store, decoders: Mapping[str, Decoder]) -> dict:
    """Decode every archived file again and replace what it produced.

    A file the current decoders cannot read (or no longer consider an activity)
    keeps its existing records: reprocessing must never lose data that was accepted.
    """
    files = activities = 0
    failed: list[dict] = []
    for record in store.files():
        decoder = decoders.get(record.fmt)
        if decoder is None:
            failed.append({"name": record.name, "reason": f"no decoder for format {record.fmt!r}"})
            continue
        origin = Provenance(source=record.source, sha256=record.sha256, received_at=record.received_at, name=record.name)
        try:
            decoded = decoder(store.raw_bytes(record.sha256), origin)
        except DecodeError as exc:
            failed.append({"name": record.name, "reason": str(exc)})
            continue
        if decoded.not_activity or not (decoded.activities or decoded.measurements):
            failed.append({"name": record.name, "reason": decoded.not_activity or "no data any more"})
            continue
        ids = store.replace_file_records(
            record.sha256,
            [replace(a, person=record.person) for a in decoded.activities],
            [replace(m, person=record.person) for m in decoded.measurements],
        )
        files += 1
        activities += len(ids)
    return {"files": files, "activities": activities, "failed": failed}

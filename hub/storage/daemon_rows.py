"""Rows of the daemon's tables written inside other transactions.

``append_events`` and ``mark_ingest`` take the caller's connection so that an
event or an ingest decision commits together with the data it describes: after a
crash either both exist or neither does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from hub.events import Event
from hub.storage.engine import upsert_insert
from hub.storage.schema import ingest_state, outbox_events


@dataclass(frozen=True)
class IngestMark:
    """Where the daemon saw a file, recorded with the decision about its bytes."""

    source: str
    path: str
    size: int
    mtime_ns: int | None = None


def append_events(conn: sa.Connection, events: Iterable[Event]) -> None:
    """Add events to the outbox; an event whose key is already there is skipped
    (the same change reported twice is one event)."""
    values = [
        {
            "key": e.key,
            "kind": e.kind,
            "person": e.person,
            "payload": json.dumps(e.payload, sort_keys=True, default=str),
            "created_at": e.created_at,
        }
        for e in events
    ]
    if values:
        conn.execute(upsert_insert(conn, outbox_events).on_conflict_do_nothing(index_elements=["key"]), values)


def mark_ingest(conn: sa.Connection, sha256: str, state: str, mark: IngestMark, reason: str | None = None) -> None:
    """Record (or update) the decision about ``sha256``."""
    values = {
        "sha256": sha256,
        "state": state,
        "source": mark.source,
        "path": mark.path,
        "size": mark.size,
        "mtime_ns": mark.mtime_ns,
        "reason": reason,
        "updated_at": datetime.now(timezone.utc),
    }
    stmt = upsert_insert(conn, ingest_state).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["sha256"], set_={k: stmt.excluded[k] for k in values if k != "sha256"}
    )
    conn.execute(stmt)

"""The unassigned list: measurements from shared devices no rule could attribute.

``add`` stores readings (inside the caller's transaction, so the MQTT source can
commit them with the rest of a batch); a reading whose key is already present is
skipped, which makes a redelivered message harmless. ``assign`` gives readings to a
person: in one transaction it writes them into ``measurements`` (plus a
``measurement.stored`` event) and marks the rows assigned. The rows stay, so their
keys keep absorbing redeliveries instead of reappearing in the list. Assigning a
reading again to the same person changes nothing; to another person moves its
measurement (a correction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from hub.errors import NotFound, StorageError
from hub.events import MEASUREMENT_STORED, Event
from hub.model import MEASUREMENT_KINDS, require_utc
from hub.storage import schema
from hub.storage.daemon_rows import append_events
from hub.storage.engine import WRITE, upsert_insert
from hub.storage.schema import persons, unassigned_readings

# Readings are taken by shape (device, time, kind, value, key, extra: what
# connectors.mqtt.readings.MeasurementReading has), so storage does not depend on
# a connector.


@dataclass(frozen=True)
class Unassigned:
    id: int
    key: str
    device: str
    time: datetime
    kind: str
    value: float
    extra: dict[str, float]
    source: str
    received_at: datetime
    person: str | None = None  # set once assigned
    assigned_at: datetime | None = None


@dataclass(frozen=True)
class AssignResult:
    assigned: list[int] = field(default_factory=list)  # newly given to the person (or moved to them)
    unchanged: list[int] = field(default_factory=list)  # already theirs


def add(conn: sa.Connection, readings: Iterable, *, source: str, received_at: datetime) -> int:
    """Store ``readings`` (objects with device, time, kind, value, key, extra) in the
    caller's transaction; returns how many were new (the rest were redeliveries)."""
    received_at = require_utc(received_at, "received_at")
    rows = []
    for r in readings:
        if r.kind not in MEASUREMENT_KINDS:
            raise ValueError(f"unassigned reading {r.key}: unknown measurement kind {r.kind!r}")
        rows.append({
            "key": r.key, "device": r.device, "time_utc": require_utc(r.time, "reading time"), "kind": r.kind,
            "value": float(r.value), "extra": json.dumps(dict(r.extra), sort_keys=True), "source": source,
            "received_at": received_at,
        })  # fmt: skip
    if not rows:
        return 0
    stmt = upsert_insert(conn, unassigned_readings).on_conflict_do_nothing(index_elements=["key"])
    # RETURNING yields only the rows actually inserted, so skipped redeliveries are not counted.
    return len(conn.execute(stmt.returning(unassigned_readings.c.id), rows).all())


def add_readings(engine: sa.Engine, readings: Iterable, *, source: str, received_at: datetime) -> int:
    """:func:`add` in a transaction of its own."""
    with _writer(engine) as conn:
        return add(conn, readings, source=source, received_at=received_at)


def listing(engine: sa.Engine, *, include_assigned: bool = False) -> list[Unassigned]:
    """The list, oldest first; with ``include_assigned`` also the resolved ones."""
    table = unassigned_readings
    query = (
        sa.select(table, persons.c.name.label("person_name"))
        .outerjoin(persons, persons.c.id == table.c.person_id)
        .order_by(table.c.time_utc, table.c.id)
    )
    if not include_assigned:
        query = query.where(table.c.person_id.is_(None))
    try:
        with engine.connect() as conn:
            return [_from_row(row) for row in conn.execute(query).mappings()]
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"unassigned readings: listing failed: {exc}") from exc


def assign(engine: sa.Engine, ids: Sequence[int], person: str, *, now: datetime | None = None) -> AssignResult:
    """Give the readings ``ids`` to ``person`` in one transaction (all or none).

    :class:`NotFound` names every id that does not exist.
    """
    if not person or person != person.strip():
        raise ValueError(f"person name {person!r} is empty or has surrounding spaces")
    now = require_utc(now or datetime.now(timezone.utc), "now")
    wanted = sorted(set(ids))
    table = unassigned_readings
    measurements = schema.measurements
    with _writer(engine) as conn:
        found = {
            row["id"]: row
            for row in conn.execute(sa.select(table).where(table.c.id.in_(wanted)).with_for_update()).mappings()
        }
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"no unassigned reading(s) {', '.join(map(str, missing))}")
        person_id = _person_id(conn, person)
        result = AssignResult()
        kinds: list[str] = []
        for rid in wanted:
            row = found[rid]
            if row["person_id"] == person_id:
                result.unchanged.append(rid)
                continue
            if row["person_id"] is not None:
                # A correction: take the value away from whoever had it.
                conn.execute(sa.delete(measurements).where(
                    measurements.c.person_id == row["person_id"], measurements.c.kind == row["kind"],
                    measurements.c.time_utc == row["time_utc"], measurements.c.source == row["source"],
                    measurements.c.file_sha256.is_(None),
                ))  # fmt: skip
            conn.execute(
                upsert_insert(conn, measurements).on_conflict_do_nothing(index_elements=["person_id", "kind", "time_utc", "source"]),
                {
                    "person_id": person_id, "kind": row["kind"], "time_utc": row["time_utc"], "value": row["value"],
                    "source": row["source"], "file_sha256": None, "prov_sha256": None,
                    "prov_received_at": row["received_at"], "prov_name": row["device"],
                },
            )  # fmt: skip
            conn.execute(sa.update(table).where(table.c.id == rid).values(person_id=person_id, assigned_at=now))
            result.assigned.append(rid)
            kinds.append(row["kind"])
        if result.assigned:
            append_events(conn, [_event(person, result.assigned, kinds)])
        return result


def _event(person: str, ids: list[int], kinds: list[str]) -> Event:
    # Keyed by the rows and their new owner: repeating the same assignment adds no
    # event, a correction to someone else does.
    return Event(
        kind=MEASUREMENT_STORED,
        key=f"{MEASUREMENT_STORED}:{person}:unassigned:{','.join(map(str, ids))}",
        person=person,
        payload={"file_sha256": None, "count": len(kinds), "kinds": sorted(set(kinds)), "assigned_ids": ids},
    )


def _person_id(conn: sa.Connection, name: str) -> int:
    conn.execute(upsert_insert(conn, persons).on_conflict_do_nothing(index_elements=["name"]), {"name": name})
    return conn.execute(sa.select(persons.c.id).where(persons.c.name == name)).scalar_one()


def _from_row(row) -> Unassigned:
    try:
        extra = json.loads(row["extra"])
    except ValueError as exc:
        raise StorageError(f"unassigned reading {row['id']}: extra is not JSON") from exc
    return Unassigned(
        id=row["id"], key=row["key"], device=row["device"], time=row["time_utc"], kind=row["kind"],
        value=row["value"], extra=extra, source=row["source"], received_at=row["received_at"],
        person=row["person_name"], assigned_at=row["assigned_at"],
    )  # fmt: skip


@contextmanager
def _writer(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction (SQLite: BEGIN IMMEDIATE, so two writers queue instead of
    failing on a lock upgrade); commits on success, rolls back on any exception.
    Database errors become :class:`StorageError`."""
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"unassigned readings: database write failed: {exc}") from exc

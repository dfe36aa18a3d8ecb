"""The MQTT source's rows: live samples, measurements and unassigned scale readings.

Everything one batch of messages produced is written in one transaction, with
``INSERT ... ON CONFLICT DO NOTHING`` on each row's idempotency key: a message the
broker delivers again (the hub died between commit and acknowledgement) adds
nothing, and two hub processes on a shared subscription cannot both store one
reading. The database enforces this, not the process.

- samples -> ``live_samples`` (key UNIQUE), ``state = 'open'`` until their
  session becomes an activity;
- measurements with a person -> ``measurements``, unique per (person, kind, time,
  source) where ``source`` is ``mqtt:<device>``; the reading's key is kept in
  ``prov_name``. Newly stored ones get a ``measurement.stored`` event in the same
  transaction;
- measurements nobody could be attributed -> ``unassigned_readings`` (key UNIQUE).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from hub.errors import StorageError
from hub.events import MEASUREMENT_STORED, Event
from hub.storage.daemon_rows import append_events
from hub.storage.engine import WRITE
from hub.storage import unassigned
from hub.storage.schema import live_samples, measurements, persons

from .readings import MeasurementReading, SampleReading

OPEN, DONE = "open", "done"
# Ids per UPDATE when a session's rows are marked done: below SQLite's variable limit.
_ID_CHUNK = 5000


@dataclass(frozen=True)
class Written:
    """What one batch added (repeats absorbed by the keys are not counted)."""

    samples: int = 0
    measurements: int = 0
    unassigned: int = 0


@dataclass(frozen=True)
class LiveRow:
    id: int
    key: str
    device: str
    time: datetime
    channels: dict[str, float]
    person: str | None
    sport: str | None
    received_at: datetime


class SessionTaken(Exception):
    """Another process closed (some of) these live rows first; roll back."""


class LiveStore:
    """SQL for the MQTT source, on the hub's engine. ``source`` is the config
    section name (``[sources.<name>]``), recorded with every row."""

    def __init__(self, engine: sa.Engine, source: str) -> None:
        self.engine = engine
        self.source = source
        self._dialect = pg_dialect if engine.dialect.name == "postgresql" else sqlite_dialect
        self._sqlite = engine.dialect.name == "sqlite"
        mark = "?" if self._sqlite else "%s"
        self._samples_sql = (
            "INSERT INTO live_samples (key, source, device, time_utc, channels, person, sport, received_at, state) "
            f"VALUES ({', '.join([mark] * 8)}, '{OPEN}') ON CONFLICT (key) DO NOTHING"
        )

    @contextmanager
    def writer(self) -> Iterator[sa.Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE), database errors mapped."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(**{WRITE: True})
                with conn.begin():
                    yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"MQTT source {self.source}: database write failed: {exc}") from exc

    # -- one batch ---------------------------------------------------------------

    def write(
        self,
        samples: Sequence[tuple[SampleReading, str | None]],
        assigned: Sequence[tuple[MeasurementReading, str]],
        unassigned: Sequence[MeasurementReading],
        *,
        received_at: datetime,
    ) -> Written:
        """Store one batch's readings in one transaction (each with its person)."""
        with self.writer() as conn:
            new_samples = self._insert_samples(conn, samples, received_at)
            new_measurements = self._insert_measurements(conn, assigned, received_at)
            new_unassigned = self._insert_unassigned(conn, unassigned, received_at)
        return Written(new_samples, new_measurements, new_unassigned)

    def _insert_samples(self, conn, samples, received_at: datetime) -> int:
        """The hot path (every sample of every device): one driver-level
        ``executemany``, skipping SQLAlchemy's per-value type processing, which cost
        more than the insert itself. The summed rowcount counts the new rows (a
        conflicting key inserts nothing)."""
        if not samples:
            return 0
        stamp = _sqlite_time if self._sqlite else _aware_utc
        got = stamp(received_at)
        rows = [
            (r.key, self.source, r.device, stamp(r.time), _channels_json(r.channels), person, r.sport, got)
            for r, person in samples
        ]
        cursor = conn.exec_driver_sql(self._samples_sql, rows)
        return cursor.rowcount

    def _insert_measurements(self, conn, assigned, received_at: datetime) -> int:
        if not assigned:
            return 0
        ids = self._person_ids(conn, {person for _, person in assigned})
        rows = [
            {
                "person_id": ids[person],
                "kind": r.kind,
                "time_utc": r.time,
                "value": r.value,
                "source": f"mqtt:{r.device}",
                "file_sha256": None,
                "prov_sha256": None,
                "prov_received_at": received_at,
                "prov_name": r.key,
            }
            for r, person in assigned
        ]
        stmt = self._dialect.insert(measurements).on_conflict_do_nothing(
            index_elements=["person_id", "kind", "time_utc", "source"]
        )
        new = conn.execute(
            stmt.returning(measurements.c.person_id, measurements.c.kind, measurements.c.prov_name), rows
        ).all()
        names = {pid: name for name, pid in ids.items()}
        append_events(conn, _measurement_events(self.source, [(names[pid], kind, key) for pid, kind, key in new]))
        return len(new)

    def _insert_unassigned(self, conn, readings: Sequence[MeasurementReading], received_at: datetime) -> int:
        by_device: dict[str, list[MeasurementReading]] = {}
        for r in readings:
            by_device.setdefault(r.device, []).append(r)
        # The source becomes measurements.source on assignment: the same
        # "mqtt:<device>" as readings stored with a person right away.
        return sum(
            unassigned.add(conn, items, source=f"mqtt:{device}", received_at=received_at)
            for device, items in sorted(by_device.items())
        )

    def _person_ids(self, conn: sa.Connection, names: Iterable[str]) -> dict[str, int]:
        wanted = sorted(set(names))
        conn.execute(
            self._dialect.insert(persons).on_conflict_do_nothing(index_elements=["name"]),
            [{"name": n} for n in wanted],
        )
        return dict(conn.execute(sa.select(persons.c.name, persons.c.id).where(persons.c.name.in_(wanted))).all())

    # -- live sessions -------------------------------------------------------------

    def quiet_devices(self, cutoff: datetime) -> list[str]:
        """Devices with open samples, none received since ``cutoff``."""
        query = (
            sa.select(live_samples.c.device)
            .where(live_samples.c.state == OPEN, live_samples.c.source == self.source)
            .group_by(live_samples.c.device)
            .having(sa.func.max(live_samples.c.received_at) < cutoff)
            .order_by(live_samples.c.device)
        )
        return self._read(lambda conn: list(conn.execute(query).scalars()))

    def open_rows(self, device: str) -> list[LiveRow]:
        query = (
            sa.select(live_samples)
            .where(live_samples.c.state == OPEN, live_samples.c.source == self.source, live_samples.c.device == device)
            .order_by(live_samples.c.time_utc, live_samples.c.id)
        )
        return self._read(lambda conn: [_live_row(r) for r in conn.execute(query).mappings()])

    def open_count(self) -> int:
        query = sa.select(sa.func.count()).select_from(live_samples).where(live_samples.c.state == OPEN)
        return self._read(lambda conn: conn.execute(query).scalar_one())

    @staticmethod
    def mark_done(conn: sa.Connection, ids: Sequence[int]) -> None:
        """Close these rows inside the caller's transaction; :class:`SessionTaken`
        when any is no longer open (another process stored the session first)."""
        changed = 0
        for i in range(0, len(ids), _ID_CHUNK):
            chunk = list(ids[i : i + _ID_CHUNK])
            changed += conn.execute(
                live_samples.update()
                .where(live_samples.c.id.in_(chunk), live_samples.c.state == OPEN)
                .values(state=DONE)
            ).rowcount
        if changed != len(ids):
            raise SessionTaken(f"{len(ids) - changed} of {len(ids)} live samples were already closed")

    def close_rows(self, ids: Sequence[int]) -> None:
        """Mark rows done in their own transaction (their activity was already stored)."""
        with self.writer() as conn:
            for i in range(0, len(ids), _ID_CHUNK):
                conn.execute(
                    live_samples.update()
                    .where(live_samples.c.id.in_(list(ids[i : i + _ID_CHUNK])), live_samples.c.state == OPEN)
                    .values(state=DONE)
                )

    def prune_done(self, before: datetime) -> int:
        """Delete done rows received before ``before``: the broker can no longer
        redeliver their messages, so their keys have nothing left to absorb."""
        with self.writer() as conn:
            return conn.execute(
                sa.delete(live_samples).where(live_samples.c.state == DONE, live_samples.c.received_at < before)
            ).rowcount

    def _read(self, action):
        try:
            with self.engine.connect() as conn:
                return action(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"MQTT source {self.source}: database read failed: {exc}") from exc


def _sqlite_time(value: datetime) -> str:
    """How :class:`hub.storage.schema.UTCDateTime` stores a time on SQLite (naive UTC
    text, SQLAlchemy's format), so rows written here read back like any other."""
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _aware_utc(value: datetime) -> datetime:
    return value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)


def _channels_json(channels: dict[str, float]) -> str:
    """Compact JSON of finite floats (the profiles refuse NaN and infinities);
    ``repr`` of a finite float is valid JSON, and this is several times faster
    than ``json.dumps`` on the hot path."""
    return "{" + ",".join(f'"{name}":{float(value)!r}' for name, value in sorted(channels.items())) + "}"


def _live_row(r) -> LiveRow:
    return LiveRow(
        id=r["id"],
        key=r["key"],
        device=r["device"],
        time=r["time_utc"],
        channels=json.loads(r["channels"]),
        person=r["person"],
        sport=r["sport"],
        received_at=r["received_at"],
    )


def _measurement_events(source: str, new: list[tuple[str, str, str]]) -> list[Event]:
    """One event per person for the measurements a batch newly stored. The key is
    a digest of the readings' own keys, so it is the same whichever process or
    attempt stored them (and a repeat stores nothing, hence no event)."""
    by_person: dict[str, list[tuple[str, str]]] = {}
    for person, kind, key in new:
        by_person.setdefault(person, []).append((kind, key))
    events = []
    for person, items in sorted(by_person.items()):
        digest = hashlib.sha256("\n".join(sorted(k for _, k in items)).encode()).hexdigest()[:32]
        events.append(
            Event(
                kind=MEASUREMENT_STORED,
                key=f"{MEASUREMENT_STORED}:{person}:mqtt:{digest}",
                person=person,
                payload={"file_sha256": None, "source": f"mqtt:{source}", "count": len(items),
                         "kinds": sorted({kind for kind, _ in items})},
            )
        )
    return events

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
from .utctext import naive_utc_text

OPEN, DONE = "open", "done"
# Ids per UPDATE when a session's rows are marked done: below SQLite's variable limit.
_ID_CHUNK = 5000
# Live sample rows per INSERT statement on SQLite (8 variables each: 800, below
# the 999 of old SQLite builds).
_ROWS_PER_INSERT = 100


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
        columns = "INSERT INTO live_samples (key, source, device, time_utc, channels, person, sport, received_at, state) "
        if self._sqlite:
            # Several rows per statement: a SQLite step (and the GIL released and
            # taken back around it) per statement, not per row.
            row = f"({', '.join(['?'] * 8)}, '{OPEN}')"
            self._sqlite_insert = lambda n: f"{columns}VALUES {', '.join([row] * n)} ON CONFLICT (key) DO NOTHING"
            self._sqlite_insert_full = self._sqlite_insert(_ROWS_PER_INSERT)
        else:
            # One statement per batch, its columns as arrays: a single round trip
            # and one plan however many rows (executemany costs one execution per
            # row). unnest keeps the arrays' order, so ids follow arrival order as
            # they would row by row.
            self._pg_insert = (
                f"{columns}SELECT k, %s, d, t, c, p, s, %s, '{OPEN}' "
                "FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[]) "
                "AS u(k, d, t, c, p, s) ON CONFLICT (key) DO NOTHING"
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
        """The hot path (every sample of every device), at the driver level,
        skipping SQLAlchemy's per-value type processing, which cost more than the
        insert itself: SQLite ``executemany`` of 100-row INSERTs (in-process, no
        round trips), PostgreSQL one ``INSERT ... SELECT FROM unnest(arrays)``. The
        rowcounts count the new rows (a conflicting key inserts nothing)."""
        if not samples:
            return 0
        if not self._sqlite:
            columns = (
                self.source, _aware_utc(received_at),
                [r.key for r, _ in samples], [r.device for r, _ in samples], [_aware_utc(r.time) for r, _ in samples],
                [_channels_json(r.channels) for r, _ in samples], [person for _, person in samples],
                [r.sport for r, _ in samples],
            )
            return conn.exec_driver_sql(self._pg_insert, columns).rowcount
        got = _sqlite_time(received_at)
        source = self.source
        values: list = []
        for r, person in samples:
            values += (r.key, source, r.device, _sqlite_time(r.time), _channels_json(r.channels), person, r.sport, got)
        step = 8 * _ROWS_PER_INSERT
        full = len(values) // step * step
        new = 0
        if full:
            chunks = [tuple(values[i : i + step]) for i in range(0, full, step)]
            new += conn.exec_driver_sql(self._sqlite_insert_full, chunks).rowcount
        if full < len(values):
            new += conn.exec_driver_sql(self._sqlite_insert((len(values) - full) // 8), tuple(values[full:])).rowcount
        return new

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
    return naive_utc_text(value, " ")


def _aware_utc(value: datetime) -> datetime:
    return value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)


def _channels_json(channels: dict[str, float]) -> str:
    """Compact JSON of finite floats, keys sorted (the profiles refuse NaN and
    infinities); ``repr`` of a finite float is valid JSON. A device sends the same
    channels in every sample, so the text around the numbers is built once per
    set of channel names and the numbers are ``%``-formatted into it: several
    times faster than ``json.dumps`` on the hot path."""
    names = tuple(channels)
    shape = _JSON_SHAPES.get(names)
    if shape is None:
        order = tuple(sorted(names))
        template = "{" + ",".join('"' + name.replace("%", "%%") + '":%r' for name in order) + "}"
        shape = (template, order)
        if len(_JSON_SHAPES) < 4096:  # channel names come from the profiles' fixed tables; bounded anyway
            _JSON_SHAPES[names] = shape
    template, order = shape
    return template % tuple([float(channels[name]) for name in order])


_JSON_SHAPES: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {}


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

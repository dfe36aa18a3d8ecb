"""The Store: fithub's one door to the database and the raw archive.

Every public method maps database failures to :class:`~hub.errors.StorageError`
(chained) at this boundary. Saving a file that is already stored is an expected
outcome and comes back as ``SaveResult(duplicate=True)``, also when another process
wins a race for the same bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from hub.errors import FithubError, NotFound, StorageError
from hub.model import Activity, Measurement, require_utc
from hub.storage import migrate, rows
from hub.storage.archive import RawArchive, check_sha256
from hub.storage.engine import WRITE, make_engine, normalise_url
from hub.storage.schema import laps, persons, raw_files, strength_sets, swim_lengths
# The tables "activities" and "measurements" share their names with Store methods and
# parameters, so they are always spelled out as schema.<table>.
from hub.storage import schema


@dataclass(frozen=True)
class StoredActivity:
    id: int
    activity: Activity
    sample_count: int
    file_sha256: str | None


@dataclass(frozen=True)
class SaveResult:
    duplicate: bool
    activity_ids: list[int]


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    name: str
    fmt: str
    source: str
    size: int
    person: str
    received_at: datetime
    imported_at: datetime


class _Duplicate(Exception):
    """Internal signal: the raw file row exists; unwinds the transaction."""


def _mapped(what: str):
    """Decorator: turn SQLAlchemy errors of a public method into StorageError."""

    def wrap(method):
        @functools.wraps(method)
        def run(self: Store, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except FithubError:
                raise
            except sa.exc.SQLAlchemyError as exc:
                raise StorageError(f"database {self.safe_url}: {what} failed: {exc}") from exc

        return run

    return wrap


# Summary columns for listings: everything except the blobs.
_SUMMARY_COLUMNS = [c for c in schema.activities.c if c.name not in ("samples", "hrv")]


class Store:
    def __init__(self, url: str, home: Path) -> None:
        parsed = normalise_url(url)
        self.url = parsed.render_as_string(hide_password=False)
        self.safe_url = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        self.home = Path(home)
        self.archive = RawArchive(self.home / "raw")
        self._engine = make_engine(parsed)
        try:
            migrate.upgrade(self._engine)
        except Exception as exc:  # alembic raises its own and SQLAlchemy's errors
            self._engine.dispose()
            raise StorageError(f"database {self.safe_url}: schema upgrade failed: {exc}") from exc

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, for diagnostics and read-only reports."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- raw files -----------------------------------------------------------

    @_mapped("checking for a file")
    def has_file(self, sha256: str) -> bool:
        with self._engine.connect() as conn:
            return self._has_file(conn, sha256)

    @_mapped("saving a file")
    def save_file(
        self,
        *,
        data: bytes,
        sha256: str,
        name: str,
        fmt: str,
        source: str,
        person: str,
        received_at: datetime,
        activities: list[Activity],
        measurements: list[Measurement],
    ) -> SaveResult:
        """Store one file and what was decoded from it, all or nothing.

        The bytes go to the raw archive inside the transaction, before the commit: a
        crash after the archive write leaves an unreferenced file (harmless, and
        reused by the next attempt); the database never references a missing one.
        """
        check_sha256(sha256)
        received_at = require_utc(received_at, "received_at")
        try:
            with self._writer() as conn:
                if self._has_file(conn, sha256):
                    raise _Duplicate
                names = [person, *(a.person for a in activities), *(m.person for m in measurements)]
                ids = self._person_ids(conn, names)
                conn.execute(
                    raw_files.insert().values(
                        sha256=sha256,
                        size=len(data),
                        name=name,
                        format=fmt,
                        source=source,
                        person_id=ids[person],
                        received_at=received_at,
                        imported_at=datetime.now(timezone.utc),
                    )
                )
                activity_ids = self._insert_records(conn, sha256, activities, measurements, ids)
                self.archive.write(sha256, data)
        except _Duplicate:
            return SaveResult(duplicate=True, activity_ids=[])
        except sa.exc.IntegrityError:
            # Another process inserted the same raw file between our check and our
            # insert (PostgreSQL lets both transactions reach the insert). Anything
            # else that violates a constraint is a real error.
            if self.has_file(sha256):
                return SaveResult(duplicate=True, activity_ids=[])
            raise
        return SaveResult(duplicate=False, activity_ids=activity_ids)

    @_mapped("replacing a file's records")
    def replace_file_records(
        self, sha256: str, activities: list[Activity], measurements: list[Measurement]
    ) -> list[int]:
        """Swap what ``sha256`` produced for a fresh decode, in one transaction."""
        with self._writer() as conn:
            if not self._has_file(conn, sha256):
                raise NotFound(f"no raw file {sha256} in {self.safe_url}")
            conn.execute(sa.delete(schema.activities).where(schema.activities.c.file_sha256 == sha256))
            conn.execute(sa.delete(schema.measurements).where(schema.measurements.c.file_sha256 == sha256))
            ids = self._person_ids(conn, [*(a.person for a in activities), *(m.person for m in measurements)])
            return self._insert_records(conn, sha256, activities, measurements, ids)

    @_mapped("listing files")
    def files(self) -> list[FileRecord]:
        query = _file_query().order_by(raw_files.c.imported_at, raw_files.c.sha256)
        with self._engine.connect() as conn:
            return [_file_record(r) for r in conn.execute(query).mappings()]

    @_mapped("looking up an activity's files")
    def sources(self, activity_id: int) -> list[FileRecord]:
        with self._engine.connect() as conn:
            sha = conn.execute(
                sa.select(schema.activities.c.file_sha256).where(schema.activities.c.id == activity_id)
            ).one_or_none()
            if sha is None:
                raise NotFound(f"no activity {activity_id} in {self.safe_url}")
            if sha[0] is None:
                return []
            query = _file_query().where(raw_files.c.sha256 == sha[0])
            return [_file_record(r) for r in conn.execute(query).mappings()]

    def raw_bytes(self, sha256: str) -> bytes:
        return self.archive.read(sha256)

    # -- activities ----------------------------------------------------------

    @_mapped("listing activities")
    def list_activities(
        self,
        *,
        person: str | None = None,
        sport: str | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
    ) -> list[StoredActivity]:
        """Summaries ordered by start; ``start_from <= start < start_to``.

        Samples, HRV, laps, lengths and sets are not loaded (``sample_count`` says how
        many samples :meth:`get_activity` would return).
        """
        query = (
            sa.select(*_SUMMARY_COLUMNS, persons.c.name.label("person_name"))
            .join(persons, persons.c.id == schema.activities.c.person_id)
            .order_by(schema.activities.c.start_utc, schema.activities.c.id)
        )
        if person is not None:
            query = query.where(persons.c.name == person)
        if sport is not None:
            query = query.where(schema.activities.c.sport == sport)
        if start_from is not None:
            query = query.where(schema.activities.c.start_utc >= require_utc(start_from, "start_from"))
        if start_to is not None:
            query = query.where(schema.activities.c.start_utc < require_utc(start_to, "start_to"))
        with self._engine.connect() as conn:
            return [
                _stored(r, rows.activity_from_row(r, person=r["person_name"], full=False))
                for r in conn.execute(query).mappings()
            ]

    @_mapped("reading an activity")
    def get_activity(self, activity_id: int) -> StoredActivity:
        """Everything stored for one activity; raises NotFound for an unknown id."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(schema.activities, persons.c.name.label("person_name"))
                .join(persons, persons.c.id == schema.activities.c.person_id)
                .where(schema.activities.c.id == activity_id)
            ).mappings().one_or_none()
            if row is None:
                raise NotFound(f"no activity {activity_id} in {self.safe_url}")
            children = {
                table.name: [
                    convert(r)
                    for r in conn.execute(
                        sa.select(table).where(table.c.activity_id == activity_id).order_by(table.c.idx)
                    ).mappings()
                ]
                for table, convert in (
                    (laps, rows.lap_from_row),
                    (swim_lengths, rows.length_from_row),
                    (strength_sets, rows.set_from_row),
                )
            }
        try:
            activity = rows.activity_from_row(
                row,
                person=row["person_name"],
                laps=tuple(children["laps"]),
                lengths=tuple(children["swim_lengths"]),
                sets=tuple(children["strength_sets"]),
            )
        except StorageError as exc:  # a corrupt blob: say which activity holds it
            raise StorageError(f"activity {activity_id} in {self.safe_url}: {exc}") from exc
        return _stored(row, activity)

    @_mapped("listing activity ids")
    def activity_ids(self) -> list[int]:
        with self._engine.connect() as conn:
            return list(conn.execute(sa.select(schema.activities.c.id).order_by(schema.activities.c.id)).scalars())

    # -- persons and measurements -------------------------------------------

    @_mapped("listing persons")
    def persons(self) -> list[str]:
        with self._engine.connect() as conn:
            return list(conn.execute(sa.select(persons.c.name).order_by(persons.c.name)).scalars())

    @_mapped("listing measurements")
    def measurements(self, *, person: str | None = None, kind: str | None = None) -> list[Measurement]:
        """Ordered by time, then kind and source."""
        table = schema.measurements
        query = (
            sa.select(table, persons.c.name.label("person_name"))
            .join(persons, persons.c.id == table.c.person_id)
            .order_by(table.c.time_utc, table.c.kind, table.c.source, table.c.id)
        )
        if person is not None:
            query = query.where(persons.c.name == person)
        if kind is not None:
            query = query.where(table.c.kind == kind)
        with self._engine.connect() as conn:
            return [rows.measurement_from_row(r, person=r["person_name"]) for r in conn.execute(query).mappings()]

    # -- internals -----------------------------------------------------------

    @contextmanager
    def _writer(self) -> Iterator[sa.Connection]:
        """A connection in a write transaction (SQLite: holding the write lock from
        the start); commits on success, rolls back on any exception."""
        with self._engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    @staticmethod
    def _has_file(conn: sa.Connection, sha256: str) -> bool:
        found = conn.execute(sa.select(raw_files.c.sha256).where(raw_files.c.sha256 == sha256)).first()
        return found is not None

    def _person_ids(self, conn: sa.Connection, names: Iterable[str]) -> dict[str, int]:
        """Ids for ``names``, creating missing persons; safe when others create them too."""
        wanted = sorted(set(names))  # a fixed order, so concurrent writers lock rows alike
        if not wanted:
            return {}
        conn.execute(
            self._insert_ignore(persons, ["name"]),
            [{"name": name} for name in wanted],
        )
        found = conn.execute(sa.select(persons.c.name, persons.c.id).where(persons.c.name.in_(wanted)))
        return {name: pid for name, pid in found}

    def _insert_ignore(self, table: sa.Table, conflict_columns: list[str]):
        """INSERT that skips rows colliding on ``conflict_columns`` (both backends speak
        ON CONFLICT DO NOTHING; without it a collision would abort a PostgreSQL
        transaction)."""
        dialect = pg_dialect if self.dialect == "postgresql" else sqlite_dialect
        return dialect.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)

    def _insert_records(
        self,
        conn: sa.Connection,
        sha256: str,
        new_activities: list[Activity],
        new_measurements: list[Measurement],
        person_ids: dict[str, int],
    ) -> list[int]:
        ids = []
        for activity in new_activities:
            result = conn.execute(
                schema.activities.insert().values(
                    rows.activity_row(activity, person_id=person_ids[activity.person], file_sha256=sha256)
                )
            )
            activity_id = result.inserted_primary_key[0]
            ids.append(activity_id)
            for table, items, to_row in (
                (laps, activity.laps, rows.lap_row),
                (swim_lengths, activity.lengths, rows.length_row),
                (strength_sets, activity.sets, rows.set_row),
            ):
                if items:
                    conn.execute(
                        table.insert(),
                        [to_row(item, activity_id=activity_id, idx=i) for i, item in enumerate(items)],
                    )
        if new_measurements:
            conn.execute(
                self._insert_ignore(schema.measurements, ["person_id", "kind", "time_utc", "source"]),
                [
                    rows.measurement_row(m, person_id=person_ids[m.person], file_sha256=sha256)
                    for m in new_measurements
                ],
            )
        return ids


def _file_query() -> sa.Select:
    return sa.select(raw_files, persons.c.name.label("person_name")).join(
        persons, persons.c.id == raw_files.c.person_id
    )


def _file_record(row) -> FileRecord:
    return FileRecord(
        sha256=row["sha256"],
        name=row["name"],
        fmt=row["format"],
        source=row["source"],
        size=row["size"],
        person=row["person_name"],
        received_at=row["received_at"],
        imported_at=row["imported_at"],
    )


def _stored(row, activity: Activity) -> StoredActivity:
    return StoredActivity(
        id=row["id"], activity=activity, sample_count=row["sample_count"], file_sha256=row["file_sha256"]
    )

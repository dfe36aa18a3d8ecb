"""The Store: fithub's one door to the database and the raw archive.

Every public method maps database failures to :class:`~hub.errors.StorageError`
(chained) at this boundary. Saving a file that is already stored is an expected
outcome and comes back as ``SaveResult(duplicate=True)``, also when another process
wins a race for the same bytes.

Activities are stored as *versions* (one per decoded activity of a source, kept as
decoded) grouped into *workouts* (one per real workout, the merged canonical
activity); see :mod:`hub.storage.workouts`. The ids the Store hands out for
activities are workout ids.

Race safety: every transaction that attaches, moves or removes versions first
locks the rows of the persons involved (PostgreSQL ``SELECT ... FOR UPDATE``, in id
order; SQLite's write transaction already holds the database's single write lock),
so two importers of copies of one workout never both create it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import product
from pathlib import Path

import sqlalchemy as sa

from hub.dedupe import MatchRules, MergePolicy, Version
from hub.events import ACTIVITY_MERGED, ACTIVITY_STORED, Event, activity_event, measurement_event
from hub.errors import FithubError, NotFound, StorageError
from hub.model import Activity, Measurement, require_utc
# The table "measurements" shares its name with a Store method, so it is always
# spelled out as schema.measurements.
from hub.storage import migrate, rows, schema
from hub.storage.archive import RawArchive, check_sha256
from hub.storage.daemon_rows import IngestMark, append_events, mark_ingest
from hub.storage.engine import WRITE, make_engine, normalise_url, upsert_insert
from hub.storage.schema import persons, raw_files, versions, workouts
from hub.storage.workouts import APART, TOGETHER, WorkoutWriter, load_full, version_key


@dataclass(frozen=True)
class StoredActivity:
    id: int  # the workout id
    activity: Activity
    sample_count: int
    file_sha256: str | None  # the file of the primary version
    # Merged channel ("position", "hr_bpm", "laps", ...) -> key of the version that supplied it.
    channel_sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveResult:
    duplicate: bool
    activity_ids: list[int]  # workouts this file created
    merged_ids: list[int] = field(default_factory=list)  # existing workouts it joined
    # Existing workouts this file showed to be the same as one in merged_ids (it
    # matched both); their versions moved there and these ids are gone.
    absorbed_ids: list[int] = field(default_factory=list)


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


@dataclass(frozen=True)
class VersionRecord:
    """One source version of a workout, as listed by :meth:`Store.versions`."""

    key: str
    workout_id: int
    file_sha256: str | None
    name: str | None  # the file name as stored
    fmt: str | None
    source: str | None
    sport: str
    start: datetime  # as decoded, before shift_s is applied
    elapsed_s: float | None
    distance_m: float | None
    sample_count: int
    shift_s: int
    channels: list[str]  # merged channels this version supplied
    primary: bool


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
_SUMMARY_COLUMNS = [c for c in workouts.c if c.name not in ("samples", "hrv")]
# The primary version of a workout, for the file it came from.
_primary = versions.alias("primary_version_row")
# Statements every import runs, built once: SQLAlchemy then only binds the values
# (building one anew costs several times its execution on SQLite).
_HAS_FILE = sa.select(raw_files.c.sha256).where(raw_files.c.sha256 == sa.bindparam("sha256"))
_PERSON_IDS = sa.select(persons.c.name, persons.c.id).where(persons.c.name.in_(sa.bindparam("names", expanding=True)))


class Store:
    def __init__(
        self, url: str, home: Path, policy: MergePolicy | None = None, rules: MatchRules | None = None
    ) -> None:
        parsed = normalise_url(url)
        self.url = parsed.render_as_string(hide_password=False)
        self.safe_url = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        self.home = Path(home)
        self.archive = RawArchive(self.home / "raw")
        self.policy = policy  # None: hub.dedupe's defaults
        self.rules = rules
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
        ingest: IngestMark | None = None,
        also=None,
    ) -> SaveResult:
        """Store one file and what was decoded from it, all or nothing.

        Activity ``i`` becomes version ``"<sha256>:<i>"``: it joins the workout
        :func:`hub.dedupe.match` picks (which is then re-merged) or starts a new one.

        The bytes go to the raw archive inside the transaction, before the commit: a
        crash after the archive write leaves an unreferenced file (harmless, and
        reused by the next attempt); the database never references a missing one.

        The outbox events for the stored and merged workouts and measurements, and
        (with ``ingest``) the daemon's record of where the file was seen, commit in
        the same transaction. ``also(conn)``, when given, runs in that transaction
        too, before the commit (e.g. the MQTT source marks the live samples an activity
        was built from as done); whatever it raises rolls everything back.
        """
        check_sha256(sha256)
        received_at = require_utc(received_at, "received_at")
        try:
            with self._writer() as conn:
                if self._has_file(conn, sha256):
                    raise _Duplicate
                names = [person, *(a.person for a in activities), *(m.person for m in measurements)]
                ids = self._person_ids(conn, names)
                # Before anything that references a person row (see module docstring).
                self._lock_persons(conn, ids.values())
                conn.execute(
                    raw_files.insert(),  # parameters apart: one statement compiled once
                    {
                        "sha256": sha256,
                        "size": len(data),
                        "name": name,
                        "format": fmt,
                        "source": source,
                        "person_id": ids[person],
                        "received_at": received_at,
                        "imported_at": datetime.now(timezone.utc),
                    },
                )
                writer = WorkoutWriter(conn, self.policy, self.rules)
                created, merged, events = [], [], []
                for index, activity in enumerate(activities):
                    workout_id, joined = writer.attach(
                        activity, person_id=ids[activity.person], key=version_key(sha256, index), file_sha256=sha256
                    )
                    (merged if joined else created).append(workout_id)
                    events.append(_activity_event(joined, workout_id, activity, sha256, name))
                writer.flush()
                self._insert_measurements(conn, sha256, measurements, ids)
                events.extend(_measurement_events(measurements, sha256))
                append_events(conn, events)
                if ingest is not None:
                    mark_ingest(conn, sha256, "stored", ingest)
                if also is not None:
                    also(conn)
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
        return SaveResult(duplicate=False, activity_ids=created, merged_ids=merged, absorbed_ids=writer.absorbed)

    @_mapped("replacing a file's records")
    def replace_file_records(
        self, sha256: str, activities: list[Activity], measurements: list[Measurement]
    ) -> list[int]:
        """Swap what ``sha256`` produced for a fresh decode, in one transaction.

        The file's versions are replaced and matched again (manual decisions hold,
        being keyed by version key); workouts they left are re-merged, or deleted
        when nothing is left in them. Returns the workout id of each new activity.
        """
        with self._writer() as conn:
            if not self._has_file(conn, sha256):
                raise NotFound(f"no raw file {sha256} in {self.safe_url}")
            old = conn.execute(
                sa.select(versions.c.workout_id, versions.c.person_id).where(versions.c.file_sha256 == sha256)
            ).all()
            ids = self._person_ids(conn, [*(a.person for a in activities), *(m.person for m in measurements)])
            self._lock_persons(conn, [*ids.values(), *(person_id for _, person_id in old)])
            conn.execute(sa.delete(versions).where(versions.c.file_sha256 == sha256))
            conn.execute(sa.delete(schema.measurements).where(schema.measurements.c.file_sha256 == sha256))
            writer = WorkoutWriter(conn, self.policy, self.rules)
            writer.dirty.update(workout_id for workout_id, _ in old)
            result = [
                writer.attach(
                    activity, person_id=ids[activity.person], key=version_key(sha256, index), file_sha256=sha256
                )[0]
                for index, activity in enumerate(activities)
            ]
            writer.flush()
            self._insert_measurements(conn, sha256, measurements, ids)
            return result

    @_mapped("listing files")
    def files(self) -> list[FileRecord]:
        query = _file_query().order_by(raw_files.c.imported_at, raw_files.c.sha256)
        with self._engine.connect() as conn:
            return [_file_record(r) for r in conn.execute(query).mappings()]

    @_mapped("looking up a workout's files")
    def sources(self, activity_id: int) -> list[FileRecord]:
        """The files of every version of workout ``activity_id``."""
        with self._engine.connect() as conn:
            self._workout_person(conn, activity_id)
            shas = sa.select(versions.c.file_sha256).where(versions.c.workout_id == activity_id)
            query = _file_query().where(raw_files.c.sha256.in_(shas)).order_by(raw_files.c.imported_at, raw_files.c.sha256)
            return [_file_record(r) for r in conn.execute(query).mappings()]

    def raw_bytes(self, sha256: str) -> bytes:
        return self.archive.read(sha256)

    # -- workouts (the canonical activities) ------------------------------------

    @_mapped("listing activities")
    def list_activities(
        self,
        *,
        person: str | None = None,
        sport: str | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
    ) -> list[StoredActivity]:
        """Workout summaries ordered by start; ``start_from <= start < start_to``.

        Samples, HRV, laps, lengths and sets are not loaded (``sample_count`` says how
        many samples :meth:`get_activity` would return).
        """
        query = (
            sa.select(
                *_SUMMARY_COLUMNS,
                persons.c.name.label("person_name"),
                _primary.c.file_sha256.label("primary_file_sha256"),
            )
            .join(persons, persons.c.id == workouts.c.person_id)
            .outerjoin(_primary, _primary.c.version_key == workouts.c.primary_version)
            .order_by(workouts.c.start_utc, workouts.c.id)
        )
        if person is not None:
            query = query.where(persons.c.name == person)
        if sport is not None:
            query = query.where(workouts.c.sport == sport)
        if start_from is not None:
            query = query.where(workouts.c.start_utc >= require_utc(start_from, "start_from"))
        if start_to is not None:
            query = query.where(workouts.c.start_utc < require_utc(start_to, "start_to"))
        with self._engine.connect() as conn:
            return [
                _stored(r, rows.activity_from_row(r, person=r["person_name"], full=False), r["primary_file_sha256"])
                for r in conn.execute(query).mappings()
            ]

    @_mapped("reading an activity")
    def get_activity(self, activity_id: int) -> StoredActivity:
        """The merged canonical activity of workout ``activity_id``; NotFound if unknown."""
        with self._engine.connect() as conn:
            try:
                found = load_full(conn, workouts, workouts.c.id == activity_id)
            except StorageError as exc:
                raise StorageError(f"{self.safe_url}: {exc}") from exc
            if not found:
                raise NotFound(f"no activity {activity_id} in {self.safe_url}")
            row, activity = found[0]
            sha = conn.execute(
                sa.select(versions.c.file_sha256).where(versions.c.version_key == row["primary_version"])
            ).scalar_one_or_none()
        return _stored(row, activity, sha)

    @_mapped("listing activity ids")
    def activity_ids(self) -> list[int]:
        """Every workout id, ascending."""
        with self._engine.connect() as conn:
            return list(conn.execute(sa.select(workouts.c.id).order_by(workouts.c.id)).scalars())

    # -- versions and manual dedupe decisions -------------------------------------

    @_mapped("listing a workout's versions")
    def versions(self, workout_id: int) -> list[VersionRecord]:
        """The source versions of a workout, by start then key."""
        with self._engine.connect() as conn:
            workout = conn.execute(
                sa.select(workouts.c.channel_sources, workouts.c.primary_version).where(workouts.c.id == workout_id)
            ).mappings().one_or_none()
            if workout is None:
                raise NotFound(f"no activity {workout_id} in {self.safe_url}")
            supplied = rows.channel_sources_from_row(workout)
            query = (
                sa.select(
                    versions.c.version_key,
                    versions.c.workout_id,
                    versions.c.file_sha256,
                    versions.c.sport,
                    versions.c.start_utc,
                    versions.c.elapsed_s,
                    versions.c.distance_m,
                    versions.c.sample_count,
                    versions.c.shift_s,
                    raw_files.c.name,
                    raw_files.c.format,
                    raw_files.c.source,
                )
                .outerjoin(raw_files, raw_files.c.sha256 == versions.c.file_sha256)
                .where(versions.c.workout_id == workout_id)
                .order_by(versions.c.start_utc, versions.c.version_key)
            )
            return [
                VersionRecord(
                    key=r["version_key"],
                    workout_id=r["workout_id"],
                    file_sha256=r["file_sha256"],
                    name=r["name"],
                    fmt=r["format"],
                    source=r["source"],
                    sport=r["sport"],
                    start=r["start_utc"],
                    elapsed_s=r["elapsed_s"],
                    distance_m=r["distance_m"],
                    sample_count=r["sample_count"],
                    shift_s=r["shift_s"],
                    channels=sorted(ch for ch, key in supplied.items() if key == r["version_key"]),
                    primary=r["version_key"] == workout["primary_version"],
                )
                for r in conn.execute(query).mappings()
            ]

    @_mapped("reading a version")
    def get_version(self, key: str) -> StoredActivity:
        """One source version exactly as decoded; ``id`` is the workout it belongs to."""
        with self._engine.connect() as conn:
            found = load_full(conn, versions, versions.c.version_key == key)
        if not found:
            raise NotFound(f"no version {key!r} in {self.safe_url}")
        row, activity = found[0]
        return StoredActivity(
            id=row["workout_id"], activity=activity, sample_count=row["sample_count"], file_sha256=row["file_sha256"]
        )

    @_mapped("looking up a version")
    def find_version(self, workout_id: int, source: str) -> str:
        """The key of the version of ``workout_id`` that ``source`` names: a version
        key, a unique prefix of a file's SHA-256, or the file name as stored."""
        with self._engine.connect() as conn:
            return _resolve(self._version_files(conn, workout_id), workout_id, source)

    @_mapped("splitting a workout")
    def split(self, workout_id: int, source: str) -> int:
        """Detach the version ``source`` names (see :meth:`find_version`) into a new
        workout; both are re-merged and the version is recorded as apart from every
        one left behind, so reimporting or reprocessing will not join them again.
        Returns the new workout id."""
        with self._writer() as conn:
            person_id = self._workout_person(conn, workout_id)
            self._lock_persons(conn, [person_id])
            files = self._version_files(conn, workout_id)
            key = _resolve(files, workout_id, source)
            if len(files) == 1:
                raise FithubError(f"workout {workout_id} has a single version ({key}); there is nothing to split off")
            writer = WorkoutWriter(conn, self.policy, self.rules)
            ((_, activity),) = load_full(conn, versions, versions.c.version_key == key)
            # Alone, the version is its own time base: no correction any more.
            new_id = writer.create_workout(Version(key=key, activity=activity), person_id=person_id)
            writer.move_version(key, new_id, shift_s=0)
            writer.decide(person_id, [(key, other) for other, _, _ in files if other != key], APART)
            writer.remerge(workout_id)
            return new_id

    @_mapped("merging workouts")
    def merge_workouts(self, a: int, b: int) -> int:
        """Move every version of workout ``b`` into ``a`` and delete ``b``; the pairs are
        recorded as together (replacing any "apart"), so they stay one workout through
        reimports and reprocessing. Returns ``a``."""
        if a == b:
            raise FithubError(f"cannot merge workout {a} with itself")
        with self._writer() as conn:
            person_a, person_b = self._workout_person(conn, a), self._workout_person(conn, b)
            if person_a != person_b:
                names = dict(conn.execute(sa.select(persons.c.id, persons.c.name)).all())
                raise FithubError(
                    f"workouts {a} ({names.get(person_a)}) and {b} ({names.get(person_b)}) belong to different persons"
                )
            self._lock_persons(conn, [person_a])
            keys_a = [k for k, _, _ in self._version_files(conn, a)]
            keys_b = [k for k, _, _ in self._version_files(conn, b)]
            writer = WorkoutWriter(conn, self.policy, self.rules)
            writer.decide(person_a, product(keys_a, keys_b), TOGETHER)
            # Each version keeps the time correction it had; none is guessed for a manual merge.
            conn.execute(versions.update().where(versions.c.workout_id == b).values(workout_id=a))
            conn.execute(sa.delete(workouts).where(workouts.c.id == b))
            writer.remerge(a)
            return a

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

    def _lock_persons(self, conn: sa.Connection, person_ids: Iterable[int]) -> None:
        """Serialise writers per person until this transaction ends.

        PostgreSQL: row locks taken in id order, so two writers needing the same
        persons cannot deadlock. SQLite: already serialised by BEGIN IMMEDIATE.
        """
        wanted = sorted(set(person_ids))
        if self.dialect != "postgresql" or not wanted:
            return
        conn.execute(
            sa.select(persons.c.id).where(persons.c.id.in_(wanted)).order_by(persons.c.id).with_for_update()
        ).all()

    def _workout_person(self, conn: sa.Connection, workout_id: int) -> int:
        person_id = conn.execute(
            sa.select(workouts.c.person_id).where(workouts.c.id == workout_id)
        ).scalar_one_or_none()
        if person_id is None:
            raise NotFound(f"no activity {workout_id} in {self.safe_url}")
        return person_id

    def _version_files(self, conn: sa.Connection, workout_id: int) -> list[tuple[str, str | None, str | None]]:
        """(version key, file sha256, file name) of each version of a workout."""
        found = conn.execute(
            sa.select(versions.c.version_key, versions.c.file_sha256, raw_files.c.name)
            .outerjoin(raw_files, raw_files.c.sha256 == versions.c.file_sha256)
            .where(versions.c.workout_id == workout_id)
            .order_by(versions.c.version_key)
        ).all()
        if not found:
            raise NotFound(f"no activity {workout_id} in {self.safe_url}")
        return [tuple(r) for r in found]

    @staticmethod
    def _has_file(conn: sa.Connection, sha256: str) -> bool:
        found = conn.execute(_HAS_FILE, {"sha256": sha256}).first()
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
        found = conn.execute(_PERSON_IDS, {"names": wanted})
        return {name: pid for name, pid in found}

    def _insert_ignore(self, table: sa.Table, conflict_columns: list[str]):
        """INSERT that skips rows colliding on ``conflict_columns`` (both backends speak
        ON CONFLICT DO NOTHING; without it a collision would abort a PostgreSQL
        transaction)."""
        return upsert_insert(self._engine, table).on_conflict_do_nothing(index_elements=conflict_columns)

    def _insert_measurements(
        self, conn: sa.Connection, sha256: str, new: list[Measurement], person_ids: dict[str, int]
    ) -> None:
        if new:
            conn.execute(
                self._insert_ignore(schema.measurements, ["person_id", "kind", "time_utc", "source"]),
                [rows.measurement_row(m, person_id=person_ids[m.person], file_sha256=sha256) for m in new],
            )


def _activity_event(joined: bool, workout_id: int, activity: Activity, sha256: str, name: str) -> Event:
    summary = {
        "sport": activity.sport,
        "start_utc": activity.start.isoformat(),
        "elapsed_s": activity.elapsed_s,
        "distance_m": activity.distance_m,
        "file_name": name,
    }
    kind = ACTIVITY_MERGED if joined else ACTIVITY_STORED
    return activity_event(kind, workout_id=workout_id, person=activity.person, file_sha256=sha256, summary=summary)


def _measurement_events(measurements: list[Measurement], sha256: str) -> list[Event]:
    by_person: dict[str, list[str]] = {}
    for m in measurements:
        by_person.setdefault(m.person, []).append(m.kind)
    return [
        measurement_event(person=person, file_sha256=sha256, count=len(kinds), kinds=kinds)
        for person, kinds in sorted(by_person.items())
    ]


def _resolve(files: list[tuple[str, str | None, str | None]], workout_id: int, source: str) -> str:
    """Pick the one version ``source`` names among a workout's versions."""
    keys = [key for key, _, _ in files]
    if source in keys:
        return source
    by_name = [key for key, _, name in files if name == source]
    by_sha = [key for key, sha, _ in files if source and sha and sha.startswith(source.lower())]
    hits = by_name or by_sha
    listing = ", ".join(f"{key} ({name or 'no file'})" for key, _, name in files)
    if not hits:
        raise NotFound(f"workout {workout_id} has no version {source!r}; its versions: {listing}")
    if len(hits) > 1:
        raise FithubError(
            f"{source!r} names {len(hits)} versions of workout {workout_id} ({', '.join(hits)}); "
            "give a full version key"
        )
    return hits[0]


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


def _stored(row, activity: Activity, file_sha256: str | None) -> StoredActivity:
    return StoredActivity(
        id=row["id"],
        activity=activity,
        sample_count=row["sample_count"],
        file_sha256=file_sha256,
        channel_sources=rows.channel_sources_from_row(row),
    )

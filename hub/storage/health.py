"""Storage of bulk health records (Apple Health): batched writes, resume, daily totals.

Kept out of :mod:`hub.storage.repository` because its shape is different: millions of
small rows written in batches straight through the driver (multi-row INSERTs of
prepared tuples on SQLite, COPY on PostgreSQL; SQLAlchemy's per-row type processing
would cost more than the XML parse), each batch committed together with the
import's checkpoint. Rows are narrow (type and source are ids, times are epoch
seconds) and keyed by their identity alone, whose first bytes are the start hour
(:func:`key_hour`): one B-tree per insert, and time ranges are key ranges.

Daily totals of additive kinds follow the Health app's rule: where records of
several sources overlap in time, the highest-priority source counts and a lower one
only for the part of its interval no higher source covers, in proportion to that
part's length. Days are the person's local days (each record's own UTC offset).
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

from hub.events import MEASUREMENT_STORED, Event
from hub.model import Measurement
from hub.storage import rows
from hub.storage.daemon_rows import append_events
from hub.storage.engine import WRITE, upsert_insert
from hub.storage.schema import (
    health_imports,
    health_records,
    health_source_priority,
    health_sources,
    health_types,
    measurements,
    persons,
)

RECORD_COLUMNS = ("person_id", "identity", "type_id", "source_id", "value", "text_value", "kind_value",
                  "start_s", "end_s", "utc_offset_s", "metadata")


# Rows per SQLite INSERT statement: 2900 x 11 parameters stay under the 32766 SQLite
# allows since 3.32 (90 under the 999 of older builds). Long statements also let a
# writer thread run longer without the GIL (sqlite3 releases it only around a step).
ROWS_PER_INSERT = 2900 if sqlite3.sqlite_version_info >= (3, 32) else 90

# SQLite page cache (KB) of the connection that writes an import: the upper levels of
# the records' key tree and the pages being filled stay in memory. Counted against
# the import's 150 MB memory bound.
BULK_CACHE_KB = 16 * 1024


def person_id(engine: sa.Engine, name: str) -> int:
    """The id of person ``name``, created when missing (safe against concurrent creators)."""
    with engine.connect() as conn:
        with conn.execution_options(**{WRITE: True}).begin():
            conn.execute(upsert_insert(conn, persons).on_conflict_do_nothing(index_elements=["name"]), [{"name": name}])
            return conn.execute(sa.select(persons.c.id).where(persons.c.name == name)).scalar_one()


class RecordWriter:
    """Writes batches of record tuples for one person; one instance per import."""

    def __init__(self, engine: sa.Engine, person: str) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.person = person
        self.person_id = person_id(engine, person)
        self._sources: dict[tuple[str, str, str], int] = {}
        self._types: dict[tuple[str, str], int] = {}
        self._kinds: dict[int, str | None] = {}
        mark = "?" if self.dialect == "sqlite" else "%s"
        row = f"({', '.join([mark] * len(RECORD_COLUMNS))})"
        insert = f"INSERT INTO health_records ({', '.join(RECORD_COLUMNS)}) VALUES "
        self._sql = f"{insert}{row} ON CONFLICT (person_id, identity) DO NOTHING"
        self._sql_many = f"{insert}{', '.join([row] * ROWS_PER_INSERT)} ON CONFLICT (person_id, identity) DO NOTHING"

    def source_id(self, name: str, version: str | None, device: str | None) -> int:
        key = (name, version or "", device or "")
        found = self._sources.get(key)
        if found is not None:
            return found
        with self.engine.connect() as conn:
            with conn.execution_options(**{WRITE: True}).begin():
                conn.execute(
                    upsert_insert(conn, health_sources).on_conflict_do_nothing(index_elements=["name", "version", "device"]),
                    [{"name": key[0], "version": key[1], "device": key[2]}],
                )
                found = conn.execute(
                    sa.select(health_sources.c.id).where(
                        health_sources.c.name == key[0], health_sources.c.version == key[1], health_sources.c.device == key[2]
                    )
                ).scalar_one()
        if len(self._sources) > 4096:  # bounded: real exports have tens of sources
            self._sources.clear()
        self._sources[key] = found
        return found

    def type_id(self, rtype: str, unit: str | None, kind: str | None) -> int:
        """The id of (type, unit), created when missing; ``kind`` is what the type maps to."""
        key = (rtype, unit or "")
        found = self._types.get(key)
        if found is not None:
            return found
        with self.engine.connect() as conn:
            with conn.execution_options(**{WRITE: True}).begin():
                conn.execute(
                    upsert_insert(conn, health_types).on_conflict_do_nothing(index_elements=["type", "unit"]),
                    [{"type": key[0], "unit": key[1], "kind": kind}],
                )
                found, stored = conn.execute(
                    sa.select(health_types.c.id, health_types.c.kind).where(
                        health_types.c.type == key[0], health_types.c.unit == key[1])
                ).one()
        if len(self._types) > 4096:  # bounded: real exports have a few dozen types
            self._types.clear()
            self._kinds.clear()
        self._types[key] = found
        self._kinds[found] = stored
        return found

    def checkpoint(self, export_key: str) -> tuple[int, bool]:
        """(records already committed, finished) for this export, (0, False) when new."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(health_imports.c.records_done, health_imports.c.finished).where(
                    health_imports.c.person_id == self.person_id, health_imports.c.export_key == export_key
                )
            ).first()
        return (int(row[0]), bool(row[1])) if row else (0, False)

    def write(self, records: Sequence[tuple], points: Iterable[Measurement], *, export_key: str, done: int,
              finished: bool = False) -> int:
        """Insert ``records`` (tuples in :data:`RECORD_COLUMNS` order, type and source
        ids from :meth:`type_id` and :meth:`source_id`), the point measurements, and the
        checkpoint, in one transaction. Returns how many records were new."""
        with self.engine.connect() as conn:
            return self._write(conn, records, points, export_key=export_key, done=done, finished=finished)

    @contextmanager
    def bulk(self) -> Iterator[Callable[..., int]]:
        """A ``write`` bound to one connection held for a whole import.

        On SQLite that connection runs with ``synchronous=NORMAL`` and a larger page
        cache while it is held. In WAL mode NORMAL still leaves a consistent database
        after a crash or power cut; only the last few commits may be lost, and the
        import's checkpoint (committed with each batch) makes a re-run redo exactly
        those. Both settings are put back before the connection returns to the pool.
        """
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection if self.dialect == "sqlite" else None
            if raw is not None:
                before = [raw.execute(f"PRAGMA {name}").fetchone()[0] for name in ("synchronous", "cache_size")]
                raw.execute("PRAGMA synchronous=NORMAL")
                raw.execute(f"PRAGMA cache_size={-BULK_CACHE_KB}")
            try:
                yield lambda records, points, **kw: self._write(conn, records, points, **kw)
            finally:
                if raw is not None:
                    raw.execute(f"PRAGMA synchronous={before[0]}")
                    raw.execute(f"PRAGMA cache_size={before[1]}")

    def _write(self, conn: sa.Connection, records: Sequence[tuple], points: Iterable[Measurement], *,
               export_key: str, done: int, finished: bool = False) -> int:
        points = list(points)
        with conn.execution_options(**{WRITE: True}).begin():
            new = 0
            if records and self.dialect == "postgresql":
                new = self._copy_in(conn, records)
            elif records:
                new = self._insert_sqlite(conn, records)
            if new:
                # In the batch's transaction, like every event: at least once per stored batch.
                append_events(conn, [Event(
                    kind=MEASUREMENT_STORED,
                    key=f"{MEASUREMENT_STORED}:{self.person}:health:{export_key}:{done}",
                    person=self.person,
                    payload={"source": "apple_health", "export": export_key, "count": new,
                             "kinds": sorted({k for k in map(self._kinds.get, {r[2] for r in records if r[6] is not None})
                                              if k})},
                )])
            if points:
                conn.execute(
                    upsert_insert(conn, measurements).on_conflict_do_nothing(
                        index_elements=["person_id", "kind", "time_utc", "source"]
                    ),
                    [rows.measurement_row(m, person_id=self.person_id, file_sha256=None) for m in points],
                )
            self._save_checkpoint(conn, export_key, done, finished)
        return new

    def _insert_sqlite(self, conn: sa.Connection, records: Sequence[tuple]) -> int:
        """SQLite: INSERTs of :data:`ROWS_PER_INSERT` rows each on the raw cursor.

        SQLAlchemy's executemany would wrap every row first; the driver's executemany
        steps (and drops and retakes the GIL) once per row, which costs more than the
        insert itself here and starves a writer thread of the GIL.
        """
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            new = 0
            whole = len(records) - len(records) % ROWS_PER_INSERT
            for at in range(0, whole, ROWS_PER_INSERT):
                cursor.execute(self._sql_many, list(chain.from_iterable(records[at:at + ROWS_PER_INSERT])))
                new += max(cursor.rowcount, 0)
            if whole < len(records):
                cursor.executemany(self._sql, records[whole:])
                new += max(cursor.rowcount, 0)
            return new
        finally:
            cursor.close()

    def _copy_in(self, conn: sa.Connection, records: Sequence[tuple]) -> int:
        """PostgreSQL: COPY the batch into a temporary table, then one INSERT ... SELECT
        ON CONFLICT DO NOTHING. Several times faster than executemany, which sends one
        statement per row."""
        cols = ", ".join(RECORD_COLUMNS)
        with conn.connection.dbapi_connection.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS health_records_load (person_id integer, identity bytea, "
                "type_id integer, source_id integer, value double precision, text_value text, "
                "kind_value double precision, start_s bigint, end_s bigint, utc_offset_s integer, "
                "metadata text) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY health_records_load ({cols}) FROM STDIN") as copy:
                for row in records:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO health_records ({cols}) SELECT {cols} FROM health_records_load "
                "ON CONFLICT (person_id, identity) DO NOTHING"
            )
            return max(cur.rowcount, 0)

    def _save_checkpoint(self, conn: sa.Connection, export_key: str, done: int, finished: bool) -> None:
        now = datetime.now(timezone.utc)
        stmt = upsert_insert(conn, health_imports).values(
            person_id=self.person_id, export_key=export_key, records_done=done, finished=finished, updated_at=now
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["person_id", "export_key"],
                set_={"records_done": done, "finished": finished, "updated_at": now},
            )
        )


# -- reading --------------------------------------------------------------------------------------------


def key_hour(t: datetime | float) -> bytes:
    """The first 4 bytes of the identity of a record starting in the UTC hour of ``t``
    (a datetime or epoch seconds): hours since 1970 as a big-endian number, so byte
    order is time order and an hour range is a range of the records' primary key."""
    seconds = t.timestamp() if isinstance(t, datetime) else t
    return (int(seconds) // 3600 & 0xFFFFFFFF).to_bytes(4, "big")


def samples_between(engine: sa.Engine, person_id_: int, kind: str, start: datetime, end: datetime) -> list[tuple[datetime, float, str]]:
    """(time, value in the kind's unit, source name) of point records of ``kind`` in [start, end]."""
    first, last = start.timestamp(), end.timestamp()
    query = (
        sa.select(health_records.c.start_s, health_records.c.kind_value, health_sources.c.name)
        .join(health_sources, health_sources.c.id == health_records.c.source_id)
        .join(health_types, health_types.c.id == health_records.c.type_id)
        .where(
            health_records.c.person_id == person_id_,
            # The key range of the hours concerned (see key_hour); the columns decide exactly.
            health_records.c.identity >= key_hour(first),
            health_records.c.identity < key_hour(last + 3600),
            health_types.c.kind == kind,
            health_records.c.start_s >= first,
            health_records.c.start_s <= last,
            health_records.c.kind_value.is_not(None),
        )
        .order_by(health_records.c.start_s, health_sources.c.name)
    )
    with engine.connect() as conn:
        return [(datetime.fromtimestamp(r[0], timezone.utc), float(r[1]), r[2]) for r in conn.execute(query)]


def count_records(engine: sa.Engine, person: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(health_records)
    if person is not None:
        query = query.join(persons, persons.c.id == health_records.c.person_id).where(persons.c.name == person)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def default_rank(name: str, device: str) -> int:
    """The Health app's default order: a watch above a phone above everything else."""
    text = f"{name} {device}".lower()
    if "watch" in text:
        return 0
    if "iphone" in text or "phone" in text:
        return 1
    return 2


def priorities(engine: sa.Engine, person: str) -> list[tuple[str, int, bool]]:
    """(source name, rank, explicitly set) for every source of ``person``'s records, best first."""
    with engine.connect() as conn:
        pid = conn.execute(sa.select(persons.c.id).where(persons.c.name == person)).scalar_one_or_none()
        if pid is None:
            return []
        return _ranking(conn, pid)


def _ranking(conn: sa.Connection, pid: int) -> list[tuple[str, int, bool]]:
    explicit = dict(
        conn.execute(
            sa.select(health_source_priority.c.source_name, health_source_priority.c.rank).where(
                health_source_priority.c.person_id == pid
            )
        ).all()
    )
    used = conn.execute(
        sa.select(health_sources.c.name, health_sources.c.device)
        .where(health_sources.c.id.in_(sa.select(health_records.c.source_id).where(health_records.c.person_id == pid).distinct()))
    ).all()
    ranks: dict[str, tuple[int, bool]] = {}
    for name, device in used:
        rank = default_rank(name, device) + 1000  # explicit ranks always come first
        if name not in ranks or rank < ranks[name][0]:
            ranks[name] = (rank, False)
    for name, rank in explicit.items():
        ranks[name] = (int(rank), True)
    return sorted(((n, r, e) for n, (r, e) in ranks.items()), key=lambda x: (x[1], x[0]))


def set_priority(engine: sa.Engine, person: str, ordered_sources: Sequence[str]) -> None:
    """Make ``ordered_sources`` (best first) the explicit order for ``person``; replaces any earlier order."""
    pid = person_id(engine, person)
    with engine.connect() as conn:
        with conn.execution_options(**{WRITE: True}).begin():
            conn.execute(sa.delete(health_source_priority).where(health_source_priority.c.person_id == pid))
            if ordered_sources:
                conn.execute(
                    health_source_priority.insert(),
                    [{"person_id": pid, "source_name": s, "rank": i} for i, s in enumerate(ordered_sources)],
                )


@dataclass(frozen=True)
class Piece:
    start: float  # epoch seconds
    end: float
    value: float
    offset_s: int
    rank: int


def daily_totals(engine: sa.Engine, person: str, kind: str, first: date | None = None,
                 last: date | None = None) -> dict[date, float]:
    """Deduplicated totals of an additive ``kind`` per local day, ``first``..``last`` inclusive."""
    with engine.connect() as conn:
        pid = conn.execute(sa.select(persons.c.id).where(persons.c.name == person)).scalar_one_or_none()
        if pid is None:
            return {}
        rank_of = {name: rank for name, rank, _ in _ranking(conn, pid)}
        query = (
            sa.select(health_records.c.start_s, health_records.c.end_s, health_records.c.kind_value,
                      health_records.c.utc_offset_s, health_sources.c.name)
            .join(health_sources, health_sources.c.id == health_records.c.source_id)
            .join(health_types, health_types.c.id == health_records.c.type_id)
            .where(health_records.c.person_id == pid, health_types.c.kind == kind,
                   health_records.c.kind_value.is_not(None))
        )
        # A day of local time lies within UTC-14 .. UTC+14 of its UTC date.
        if first is not None:
            since = datetime.combine(first, datetime.min.time(), timezone.utc) - timedelta(hours=15)
            query = query.where(health_records.c.end_s >= since.timestamp())
        if last is not None:
            # On a whole hour, so the key bound (see key_hour) is exact; the lower bound
            # stays on end_s alone: a record may start long before it ends.
            bound = (datetime.combine(last, datetime.min.time(), timezone.utc) + timedelta(hours=39)).timestamp()
            query = query.where(health_records.c.identity < key_hour(bound), health_records.c.start_s < bound)
        pieces = [
            Piece(float(s), float(e), float(v), int(off or 0), rank_of.get(name, 10_000))
            for s, e, v, off, name in conn.execute(query)
        ]
    totals = resolve_daily(pieces)
    return {d: v for d, v in sorted(totals.items()) if (first is None or d >= first) and (last is None or d <= last)}


def resolve_daily(pieces: list[Piece]) -> dict[date, float]:
    """Pure core of :func:`daily_totals`: priority resolution, then split into local days."""
    totals: dict[date, float] = {}
    covered: list[tuple[float, float]] = []  # merged intervals of all better ranks, sorted
    for rank in sorted({p.rank for p in pieces}):
        mine = [p for p in pieces if p.rank == rank]
        for p in mine:
            if p.end <= p.start:  # an instant: counts unless a better source covers it
                if not _inside(covered, p.start):
                    _add_day(totals, p.start, p.offset_s, p.value)
                continue
            density = p.value / (p.end - p.start)
            for a, b in _uncovered(covered, p.start, p.end):
                _split_days(totals, a, b, p.offset_s, density)
        covered = _merge(covered + [(p.start, p.end) for p in mine if p.end > p.start])
    return totals


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _inside(covered: list[tuple[float, float]], t: float) -> bool:
    i = bisect.bisect_right(covered, (t, float("inf"))) - 1
    return i >= 0 and covered[i][0] <= t < covered[i][1]


def _uncovered(covered: list[tuple[float, float]], a: float, b: float) -> list[tuple[float, float]]:
    """Parts of [a, b) outside the merged intervals."""
    out = []
    i = max(bisect.bisect_right(covered, (a, float("inf"))) - 1, 0)
    cursor = a
    while i < len(covered) and covered[i][0] < b:
        s, e = covered[i]
        if e > cursor:
            if s > cursor:
                out.append((cursor, min(s, b)))
            cursor = max(cursor, e)
        i += 1
    if cursor < b:
        out.append((cursor, b))
    return out


def _local_day(t: float, offset_s: int) -> date:
    return datetime.fromtimestamp(t + offset_s, timezone.utc).date()


def _add_day(totals: dict[date, float], t: float, offset_s: int, value: float) -> None:
    day = _local_day(t, offset_s)
    totals[day] = totals.get(day, 0.0) + value


def _split_days(totals: dict[date, float], a: float, b: float, offset_s: int, density: float) -> None:
    while a < b:
        day = _local_day(a, offset_s)
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), timezone.utc).timestamp() - offset_s
        end = min(b, midnight)
        totals[day] = totals.get(day, 0.0) + density * (end - a)
        a = end


def metadata_json(entries: dict[str, str] | None) -> str | None:
    return json.dumps(entries, ensure_ascii=False, sort_keys=True) if entries else None


__all__ = ["RECORD_COLUMNS", "Piece", "RecordWriter", "count_records", "daily_totals", "default_rank", "key_hour",
           "person_id", "priorities", "resolve_daily", "samples_between", "set_priority"]

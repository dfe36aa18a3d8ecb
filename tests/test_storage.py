"""The Store against SQLite and the real PostgreSQL (every db_url test runs on both)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import multiprocessing
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.errors import NotFound, StorageError
from hub.model import (
    Activity,
    Device,
    Lap,
    Measurement,
    Provenance,
    SampleStream,
    StrengthSet,
    SwimLength,
)
from hub.storage import Store
from hub.storage.archive import RawArchive
from hub.storage.engine import normalise_url
from hub.storage.migrate import head_revision
from hub.storage.schema import metadata

UTC = timezone.utc
CEST = timezone(timedelta(hours=2))
T0 = datetime(2024, 6, 1, 7, 30, 0, 125000, tzinfo=UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prov(data: bytes, name: str = "ride.fit") -> Provenance:
    return Provenance(source="file:fit", sha256=sha(data), received_at=T0 + timedelta(hours=3), name=name)


def rich_activity(data: bytes, *, index: int = 0, person: str = "alice") -> Activity:
    """An activity using every field the model has, including awkward values."""
    start = T0 + timedelta(hours=index)
    n = 50
    samples = SampleStream(
        offsets_s=[i * 1.0 + 0.001 * (i % 3) for i in range(n)],
        columns={
            "lat_deg": [47.376887123456789 + i * 1e-7 for i in range(n)],
            "lon_deg": [8.541694987654321 - i * 1e-7 for i in range(n)],
            "hr_bpm": [None if i % 10 == 3 else 120.0 + i for i in range(n)],
            "power_w": [None] * 5 + [float(200 + i) for i in range(n - 5)],
            "Stryd Leg Spring": [9.5 + i / 100 for i in range(n)],
        },
        units={"Stryd Leg Spring": "kN/m"},
    )
    return Activity(
        person=person,
        sport="cycling" if index == 0 else "running",
        sub_sport="road",
        start=start,
        utc_offset_s=7200,
        elapsed_s=3600.5,
        moving_s=3500.25,
        distance_m=30123.4,
        ascent_m=345.6,
        descent_m=340.1,
        energy_j=2.5e6,
        avg_hr_bpm=141.0,
        max_hr_bpm=178.0,
        avg_power_w=215.3,
        max_power_w=802.0,
        avg_cadence_rpm=88.0,
        max_cadence_rpm=120.0,
        avg_speed_mps=8.37,
        max_speed_mps=15.1,
        name="Morning ride",
        device=Device(manufacturer="garmin", product="edge_530", serial_number=3_987_654_321, software_version="9.75"),
        laps=(
            Lap(start=start, elapsed_s=1800.0, distance_m=15000.0, avg_hr_bpm=139.0, trigger="distance"),
            Lap(start=start + timedelta(seconds=1800), elapsed_s=1800.5, max_power_w=802.0, trigger="session_end"),
        ),
        lengths=(
            SwimLength(start=start, elapsed_s=31.2, strokes=18, stroke="freestyle"),
            SwimLength(start=start + timedelta(seconds=31.2), elapsed_s=20.0, length_type="idle"),
            SwimLength(start=start + timedelta(seconds=51.2), elapsed_s=33.9, strokes=22, stroke="breaststroke"),
        ),
        sets=(
            StrengthSet(start=start, duration_s=40.0, category="squat", reps=8, weight_kg=82.5),
            StrengthSet(duration_s=90.0, set_type="rest"),
        ),
        samples=samples,
        hrv_rr_s=(0.812, 0.809, 0.7995, 0.8201),
        source_id=f"fit:1:garmin:3987654321:1022937600:{index}",
        multisport_group="fit:garmin:3987654321:1022937600",
        multisport_index=index,
        # Given in local time on purpose: the model normalises, storage must keep it.
        provenance=Provenance(
            source="file:fit", sha256=sha(data), received_at=datetime(2024, 6, 1, 12, 0, tzinfo=CEST), name="ride.fit"
        ),
        warnings=("lap 2: power meter dropped out", "unicode ok: Zürich"),
    )


def save(store: Store, data: bytes, activities=(), measurements=(), *, person: str = "alice", name: str = "ride.fit"):
    return store.save_file(
        data=data,
        sha256=sha(data),
        name=name,
        fmt="fit",
        source="folder:/watch",
        person=person,
        received_at=T0 + timedelta(hours=3),
        activities=list(activities),
        measurements=list(measurements),
    )


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    opened = Store(db_url, tmp_path / "home")
    yield opened
    opened.close()


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


# -- round trip ----------------------------------------------------------------


def test_save_and_get_round_trip_every_field(store: Store) -> None:
    data = b"\x0e\x10FIT bytes of a multisport file"
    first, second = rich_activity(data, index=0), rich_activity(data, index=1)
    result = save(store, data, [first, second])

    assert result.duplicate is False
    assert len(result.activity_ids) == 2
    for activity_id, original in zip(result.activity_ids, (first, second)):
        stored = store.get_activity(activity_id)
        assert stored.activity == original
        assert stored.id == activity_id
        assert stored.sample_count == 50
        assert stored.file_sha256 == sha(data)
    got = store.get_activity(result.activity_ids[0]).activity
    # Spot checks that equality above did not hide a representation change.
    assert got.start.tzinfo == UTC and got.start.microsecond == 125000
    assert got.provenance.received_at == datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    assert got.samples.columns["hr_bpm"][3] is None
    assert got.samples.columns["lat_deg"][0] == 47.376887123456789
    assert got.samples.unit("Stryd Leg Spring") == "kN/m"
    assert got.lengths[1].length_type == "idle" and got.sets[1].start is None
    assert got.device.serial_number == 3_987_654_321  # beyond a signed 32-bit column
    assert store.raw_bytes(sha(data)) == data
    assert store.persons() == ["alice"]


def test_minimal_activity_round_trip(store: Store) -> None:
    data = b"minimal"
    bare = Activity(start=T0)  # default person, no provenance, no device, no samples
    (activity_id,) = save(store, data, [bare], person="default").activity_ids
    assert store.get_activity(activity_id).activity == bare
    assert store.get_activity(activity_id).sample_count == 0


def test_nan_summary_values_come_back_as_unknown_on_every_backend(store: Store) -> None:
    data = b"nan summary"
    odd = Activity(start=T0, avg_power_w=math.nan, laps=(Lap(start=T0, max_hr_bpm=math.nan, distance_m=5.0),))
    (activity_id,) = save(store, data, [odd]).activity_ids
    got = store.get_activity(activity_id).activity
    assert got.avg_power_w is None and got.laps[0].max_hr_bpm is None and got.laps[0].distance_m == 5.0


def test_nan_measurement_is_refused_and_nothing_is_saved(store: Store) -> None:
    data = b"broken scale"
    broken = Measurement(kind="weight_kg", time=T0, value=math.nan)
    with pytest.raises(ValueError, match="weight_kg"):
        save(store, data, [Activity(start=T0)], [broken])
    assert not store.has_file(sha(data)) and store.activity_ids() == [] and store.persons() == []


def test_files_and_sources_describe_the_raw_file(store: Store) -> None:
    data = b"the original bytes"
    before = datetime.now(UTC)
    (activity_id,) = save(store, data, [rich_activity(data)], person="bob", name="2024-06-01-07-30-00.fit").activity_ids
    after = datetime.now(UTC)
    (record,) = store.files()
    assert record.sha256 == sha(data)
    assert record.name == "2024-06-01-07-30-00.fit"
    assert (record.fmt, record.source, record.size, record.person) == ("fit", "folder:/watch", len(data), "bob")
    assert record.received_at == T0 + timedelta(hours=3)
    assert before - timedelta(seconds=1) <= record.imported_at <= after + timedelta(seconds=1)
    assert store.sources(activity_id) == [record]
    assert store.has_file(sha(data)) and not store.has_file(sha(b"other"))
    # the file's person and the activity's person both exist
    assert store.persons() == ["alice", "bob"]


def test_unknown_ids_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="4242"):
        store.get_activity(4242)
    with pytest.raises(NotFound):
        store.sources(4242)
    with pytest.raises(NotFound):
        store.raw_bytes(sha(b"never stored"))


# -- duplicates and concurrency -----------------------------------------------------


def test_same_bytes_twice_is_a_duplicate_and_adds_nothing(store: Store) -> None:
    data = b"same file"
    weight = Measurement(person="alice", kind="weight_kg", time=T0, value=70.5, provenance=prov(data))
    first = save(store, data, [rich_activity(data)], [weight])
    second = save(store, data, [rich_activity(data)], [weight])
    assert first.duplicate is False and len(first.activity_ids) == 1
    assert second.duplicate is True and second.activity_ids == []
    assert store.activity_ids() == first.activity_ids
    assert len(store.files()) == 1
    assert count(store, "laps") == 2 and count(store, "measurements") == 1


def _save_worker(url: str, home: str, data: bytes, barrier, results) -> None:
    # Runs in a separate process: opens its own Store (on a possibly empty database,
    # so the migrations race too), then saves the same bytes as its siblings.
    try:
        barrier.wait(timeout=60)
        store = Store(url, Path(home))
        barrier.wait(timeout=60)
        result = save(store, data, [rich_activity(data, index=0), rich_activity(data, index=1)])
        store.close()
        results.put(("ok", result.duplicate, result.activity_ids))
    except Exception as exc:  # report to the parent instead of dying silently
        results.put(("error", repr(exc), []))


def test_processes_saving_the_same_file_at_once(db_url: str, tmp_path: Path) -> None:
    workers = 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    data = b"one file, many importers" * 100
    home = tmp_path / "home"
    procs = [ctx.Process(target=_save_worker, args=(db_url, str(home), data, barrier, results)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    assert [o for o in outcomes if o[0] == "error"] == []
    winners = [o for o in outcomes if o[1] is False]
    assert len(winners) == 1, outcomes
    assert all(o[1] is True and o[2] == [] for o in outcomes if o is not winners[0])
    with Store(db_url, home) as store:
        assert len(store.files()) == 1
        assert store.activity_ids() == sorted(winners[0][2])
        assert count(store, "laps") == 4
        assert store.raw_bytes(sha(data)) == data


# -- listing ---------------------------------------------------------------------


def test_list_activities_filters_and_orders(store: Store) -> None:
    specs = [  # (person, sport, start) saved out of order on purpose
        ("bob", "running", datetime(2024, 3, 5, 6, 0, tzinfo=UTC)),
        ("alice", "cycling", datetime(2024, 3, 1, 18, 0, tzinfo=UTC)),
        ("alice", "running", datetime(2024, 3, 3, 7, 0, tzinfo=UTC)),
        ("alice", "running", datetime(2024, 2, 28, 23, 59, 59, tzinfo=UTC)),
    ]
    ids = {}
    for i, (person, sport, start) in enumerate(specs):
        data = f"file {i}".encode()
        activity = dataclasses.replace(rich_activity(data, person=person), sport=sport, start=start)
        ids[i] = save(store, data, [activity], person=person).activity_ids[0]

    listed = store.list_activities()
    assert [s.activity.start for s in listed] == sorted(start for _, _, start in specs)
    assert [s.id for s in listed] == [ids[3], ids[1], ids[2], ids[0]]
    summary = listed[0]
    # summaries: no samples, laps, lengths, sets or hrv loaded, but the count is known
    assert summary.sample_count == 50 and len(summary.activity.samples) == 0
    assert summary.activity.laps == () and summary.activity.sets == () and summary.activity.hrv_rr_s == ()
    full = store.get_activity(summary.id).activity
    assert summary.activity == dataclasses.replace(
        full, samples=SampleStream(), laps=(), lengths=(), sets=(), hrv_rr_s=()
    )

    assert [s.id for s in store.list_activities(person="alice")] == [ids[3], ids[1], ids[2]]
    assert [s.id for s in store.list_activities(sport="running")] == [ids[3], ids[2], ids[0]]
    assert [s.id for s in store.list_activities(person="alice", sport="running")] == [ids[3], ids[2]]
    assert store.list_activities(person="nobody") == []
    # start_from inclusive, start_to exclusive; bounds in any time zone
    window = store.list_activities(
        start_from=datetime(2024, 3, 1, 20, 0, tzinfo=CEST),  # == 18:00 UTC, the cycling start
        start_to=datetime(2024, 3, 5, 6, 0, tzinfo=UTC),
    )
    assert [s.id for s in window] == [ids[1], ids[2]]
    with pytest.raises(ValueError, match="timezone-aware"):
        store.list_activities(start_from=datetime(2024, 3, 1))


# -- measurements --------------------------------------------------------------------


def test_measurements_redelivered_are_skipped(store: Store) -> None:
    scale1, scale2 = b"scale export 1", b"scale export 2 overlapping"

    def m(kind: str, hour: int, value: float, data: bytes, person: str = "alice") -> Measurement:
        at = T0 + timedelta(hours=hour)
        return Measurement(person=person, kind=kind, time=at, value=value, provenance=prov(data))

    save(store, scale1, [], [m("weight_kg", 0, 70.1, scale1), m("body_fat_pct", 0, 18.5, scale1)])
    # the second export repeats the weight at hour 0 and adds new values
    second = [
        m("weight_kg", 0, 70.1, scale2),
        m("weight_kg", 24, 69.8, scale2),
        m("weight_kg", 24, 80.0, scale2, "bob"),
    ]
    assert save(store, scale2, [], second).duplicate is False
    # no provenance at all: re-delivery still collides (source "" in the key)
    bare = Measurement(person="alice", kind="resting_hr_bpm", time=T0, value=52.0)
    save(store, b"bare 1", [], [bare])
    save(store, b"bare 2", [], [bare])

    weights = store.measurements(person="alice", kind="weight_kg")
    assert [(w.time, w.value) for w in weights] == [(T0, 70.1), (T0 + timedelta(hours=24), 69.8)]
    assert weights[0].provenance == prov(scale1)  # the first delivery is kept
    assert weights[1] == second[1]
    assert [x.person for x in store.measurements(kind="weight_kg")] == ["alice", "alice", "bob"]
    assert store.measurements(kind="resting_hr_bpm") == [bare]
    assert len(store.measurements()) == 5


# -- reprocess --------------------------------------------------------------------------


def test_replace_file_records_swaps_only_that_files_records(store: Store) -> None:
    data, other = b"file to reprocess", b"an unrelated file"
    old = save(store, data, [rich_activity(data, index=0), rich_activity(data, index=1)],
               [Measurement(person="alice", kind="weight_kg", time=T0, value=71.0, provenance=prov(data))])  # fmt: skip
    # A different workout (a week later, another recording): the reprocessed file's
    # versions must not touch it.
    unrelated = dataclasses.replace(rich_activity(other), start=T0 + timedelta(days=7), source_id="fit:other")
    kept = save(store, other, [unrelated], [])

    better = dataclasses.replace(rich_activity(data, index=0), distance_m=30200.0, laps=(), sets=(), person="carol")
    new_weight = Measurement(person="carol", kind="weight_kg", time=T0, value=60.0, provenance=prov(data))
    new_ids = store.replace_file_records(sha(data), [better], [new_weight])

    assert len(new_ids) == 1 and set(new_ids).isdisjoint(old.activity_ids)
    for gone in old.activity_ids:
        with pytest.raises(NotFound):
            store.get_activity(gone)
    assert store.get_activity(new_ids[0]).activity == better
    assert store.get_activity(kept.activity_ids[0]).activity == unrelated
    assert sorted(store.activity_ids()) == sorted(new_ids + kept.activity_ids)
    # children of the old activities went with them (ON DELETE CASCADE)
    assert count(store, "laps") == 2  # only the unrelated file's two laps
    assert count(store, "swim_lengths") == 3 + 3
    assert store.measurements() == [new_weight]
    assert len(store.files()) == 2 and store.raw_bytes(sha(data)) == data
    with pytest.raises(NotFound):
        store.replace_file_records(sha(b"never stored"), [], [])


# -- raw archive -----------------------------------------------------------------------------


def test_raw_archive_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "raw")
    data = os.urandom(100_000)
    digest = sha(data)
    path = archive.write(digest, data)
    assert path == tmp_path / "raw" / digest[:2] / digest[2:]
    assert path.read_bytes() == data and archive.read(digest) == data
    stat = path.stat()
    assert archive.write(digest, data) == path
    assert path.stat().st_ino == stat.st_ino and path.stat().st_mtime_ns == stat.st_mtime_ns  # not rewritten
    assert [p.name for p in path.parent.iterdir()] == [digest[2:]]  # no temp files left behind


def test_raw_archive_repairs_a_truncated_file_atomically(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "raw")
    data = b"complete content"
    path = archive.path(sha(data))
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:5])  # e.g. left by a tool that is not fithub
    old_inode = path.stat().st_ino
    archive.write(sha(data), data)
    assert path.read_bytes() == data
    assert path.stat().st_ino != old_inode  # replaced by rename, not rewritten in place


def test_raw_archive_refuses_wrong_hash_and_bad_names(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "raw")
    with pytest.raises(StorageError, match="hashes to"):
        archive.write(sha(b"a"), b"b")
    assert not (tmp_path / "raw").exists()
    for bad in ("../../etc/passwd", sha(b"a").upper(), sha(b"a")[:-1]):
        with pytest.raises(ValueError):
            archive.path(bad)
    with pytest.raises(NotFound):
        archive.read(sha(b"missing"))


def test_archive_write_failure_rolls_the_database_back(store: Store) -> None:
    data = b"cannot be archived"
    store.archive.root.mkdir(parents=True, exist_ok=True)
    (store.archive.root / sha(data)[:2]).write_bytes(b"a file where the folder should be")
    with pytest.raises(StorageError, match="raw archive"):
        save(store, data, [rich_activity(data)])
    assert not store.has_file(sha(data))
    assert store.activity_ids() == [] and store.persons() == []


# -- schema and connection ------------------------------------------------------------------------


def test_migrated_schema_matches_metadata(store: Store, db_url: str, tmp_path: Path) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == head_revision()
        tables = set(sa.inspect(conn).get_table_names())
    assert tables == set(metadata.tables) | {"alembic_version"}
    # reopening an up-to-date database changes nothing
    Store(db_url, tmp_path / "home").close()
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]


def test_unknown_schema_revision_is_a_storage_error(store: Store, db_url: str, tmp_path: Path) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(StorageError, match="schema upgrade failed"):
        Store(db_url, tmp_path / "home")


def test_sqlite_pragmas_are_on_for_every_connection(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'db' / 'fithub.db'}", tmp_path) as store:
        assert store.dialect == "sqlite"
        conns = [store.engine.connect() for _ in range(3)]  # distinct pooled connections
        for conn in conns:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        for conn in conns:
            conn.close()
        # foreign keys are enforced, not just reported
        with pytest.raises(sa.exc.IntegrityError):
            with store.engine.begin() as conn:
                conn.execute(sa.text(
                    "INSERT INTO raw_files (sha256, size, name, format, source, person_id, received_at, imported_at)"
                    " VALUES ('x', 1, 'n', 'fit', 's', 999, '2024-01-01 00:00:00', '2024-01-01 00:00:00')"
                ))  # fmt: skip


def test_postgres_url_gets_the_psycopg_driver() -> None:
    assert normalise_url("postgresql://u:p@db.lan:5433/fit").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@db.lan/fit").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@db.lan/fit").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(StorageError, match="only sqlite"):
        normalise_url("mysql://u@db.lan/fit")


def test_store_on_postgresql_reports_its_dialect(tmp_path: Path, pg_server_url: str) -> None:
    bare = pg_server_url.replace("postgresql+psycopg://", "postgresql://")
    with Store(bare, tmp_path) as store:
        assert store.dialect == "postgresql" and store.url.startswith("postgresql+psycopg://")
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    engine = sa.create_engine(pg_server_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def test_unreachable_database_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="127.0.0.1:1") as caught:
        Store("postgresql://nobody:secret@127.0.0.1:1/fit", tmp_path)
    assert "secret" not in str(caught.value)  # the password never reaches a log line
    assert caught.value.__cause__ is not None

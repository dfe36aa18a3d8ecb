"""Workouts: one canonical activity per real workout, on SQLite and the real PostgreSQL.

The activities here are synthetic on purpose: every sample value is a known
function of its absolute time, so a merged stream can be checked point by point
against that function, independently of how the merge aligned anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import multiprocessing
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from hub.errors import FithubError, NotFound
from hub.model import Activity, Device, Lap, Provenance, SampleStream
from hub.storage import Store
from hub.storage.migrate import _config, head_revision
from hub.storage.samples import encode_samples

UTC = timezone.utc
T0 = datetime(2024, 5, 4, 6, 0, 0, tzinfo=UTC)
STEP_S = 5  # one sample every 5 s
LAT0, LON0 = 46.5, 7.5


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Known functions of absolute time (seconds since T0): the ground truth.
def hr_at(t: float) -> float:
    return 120.0 + (t // STEP_S) % 40


def power_at(t: float) -> float:
    return 180.0 + (t // STEP_S) % 70


def lat_at(t: float) -> float:
    return LAT0 + t * 1e-5


def ride(
    data: bytes,
    *,
    start: datetime = T0,
    cut_s: float = 0.0,
    duration_s: float = 3600.0,
    channels: tuple[str, ...] = ("position", "hr_bpm"),
    person: str = "alice",
    fmt: str = "fit",
    source_id: str | None = None,
    shift_s: int = 0,
    laps: bool = False,
) -> Activity:
    """One ride covering [start + cut_s, start + duration_s), sampled every STEP_S.

    ``shift_s`` moves the recorded times (a copy whose clock is off by a time zone)
    while the values still follow the true time.
    """
    true_times = [t for t in range(int(cut_s), int(duration_s), STEP_S)]
    first = true_times[0]
    columns: dict[str, list[float | None]] = {}
    if "position" in channels:
        columns["lat_deg"] = [lat_at(t) for t in true_times]
        columns["lon_deg"] = [LON0 for _ in true_times]
    if "hr_bpm" in channels:
        columns["hr_bpm"] = [hr_at(t) for t in true_times]
    if "power_w" in channels:
        columns["power_w"] = [power_at(t) for t in true_times]
    begin = start + timedelta(seconds=first + shift_s)
    elapsed = float(true_times[-1] - first)
    return Activity(
        person=person,
        sport="cycling",
        start=begin,
        elapsed_s=elapsed,
        distance_m=elapsed * 7.0,
        device=Device(manufacturer="garmin", product="edge_530") if fmt == "fit" else None,
        laps=(Lap(start=begin, elapsed_s=elapsed, distance_m=elapsed * 7.0),) if laps else (),
        samples=SampleStream(offsets_s=[float(t - first) for t in true_times], columns=columns),
        source_id=source_id,
        provenance=Provenance(source=f"file:{fmt}", sha256=sha(data), received_at=T0 + timedelta(days=1)),
    )


def save(store: Store, data: bytes, activities, *, person: str = "alice", name: str | None = None):
    return store.save_file(
        data=data,
        sha256=sha(data),
        name=name or f"{sha(data)[:8]}.fit",
        fmt="fit",
        source="folder:/watch",
        person=person,
        received_at=T0 + timedelta(days=1),
        activities=list(activities),
        measurements=[],
    )


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    opened = Store(db_url, tmp_path / "home")
    yield opened
    opened.close()


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


WATCH, PHONE = b"watch FIT: position and heart rate", b"phone export: position and power, first 5 min cut"


def watch_and_phone(store: Store):
    watch = ride(WATCH, laps=True)
    phone = ride(PHONE, cut_s=300, channels=("position", "power_w"), fmt="gpx")
    first = save(store, WATCH, [watch], name="watch.fit")
    second = save(store, PHONE, [phone], name="phone.gpx")
    return watch, phone, first, second


# -- saving ----------------------------------------------------------------------


def test_second_file_of_a_workout_joins_it_and_the_stream_has_both(store: Store) -> None:
    watch, phone, first, second = watch_and_phone(store)
    (workout,) = first.activity_ids
    assert (first.merged_ids, second.activity_ids, second.merged_ids) == ([], [], [workout])
    assert store.activity_ids() == [workout]
    assert len(store.list_activities()) == 1

    stored = store.get_activity(workout)
    merged = stored.activity
    watch_key, phone_key = f"{sha(WATCH)}:0", f"{sha(PHONE)}:0"
    assert {"lat_deg", "lon_deg", "hr_bpm", "power_w"} <= set(merged.samples.columns)
    assert stored.channel_sources["hr_bpm"] == watch_key and stored.channel_sources["power_w"] == phone_key
    assert merged.start == T0 and merged.laps == watch.laps
    # Every merged value is what the source recorded at that absolute instant.
    power, hr = merged.samples.columns["power_w"], merged.samples.columns["hr_bpm"]
    checked = 0
    for i, offset in enumerate(merged.samples.offsets_s):
        t = (merged.start - T0).total_seconds() + offset
        assert hr[i] == hr_at(t)
        if t >= 300:  # the phone's recording starts 5 minutes in
            assert power[i] == power_at(t)
            checked += 1
        else:
            assert power[i] is None
    assert checked == (3600 - 300) // STEP_S

    records = store.versions(workout)
    assert [(r.key, r.name, r.shift_s, r.primary) for r in records] == [
        (watch_key, "watch.fit", 0, True),
        (phone_key, "phone.gpx", 0, False),
    ]
    assert "hr_bpm" in records[0].channels and "power_w" not in records[0].channels
    assert "power_w" in records[1].channels and "hr_bpm" not in records[1].channels
    assert (records[1].start, records[1].elapsed_s, records[1].sample_count) == (
        phone.start, phone.elapsed_s, len(phone.samples)
    )  # fmt: skip
    assert {f.sha256 for f in store.sources(workout)} == {sha(WATCH), sha(PHONE)}
    # each version stays exactly as decoded
    assert store.get_version(phone_key).activity == phone
    assert store.get_version(watch_key).activity == watch
    assert store.get_version(phone_key).id == workout
    assert count(store, "versions") == 2 and count(store, "workouts") == 1


@pytest.mark.parametrize("watch_first", [True, False], ids=["watch-first", "copy-first"])
def test_a_copy_shifted_by_a_time_zone_keeps_the_watch_clock(store: Store, watch_first: bool) -> None:
    watch = ride(WATCH)
    shifted = ride(PHONE, channels=("position", "power_w"), shift_s=2 * 3600, fmt="gpx")
    arrivals = [(WATCH, watch), (PHONE, shifted)]
    first, second = (save(store, data, [a]) for data, a in (arrivals if watch_first else arrivals[::-1]))
    (workout,) = first.activity_ids
    assert second.merged_ids == [workout] and store.activity_ids() == [workout]
    by_key = {r.key: r for r in store.versions(workout)}
    # The device's own file is the primary, so its clock wins whichever came first.
    assert by_key[f"{sha(WATCH)}:0"].shift_s == 0 and by_key[f"{sha(WATCH)}:0"].primary
    assert by_key[f"{sha(PHONE)}:0"].shift_s == 2 * 3600
    assert by_key[f"{sha(PHONE)}:0"].start == T0 + timedelta(hours=2)  # kept as decoded
    merged = store.get_activity(workout).activity
    assert merged.start == T0
    power = merged.samples.columns["power_w"]
    offsets = merged.samples.offsets_s
    assert [power[i] for i in (0, 100, 500)] == [power_at(offsets[i]) for i in (0, 100, 500)]


def test_a_version_matching_two_workouts_joins_them_in_any_arrival_order(store: Store) -> None:
    """A cropped positions-only GPX and a TCX seven hours off do not match each other
    (no overlap; not the same length, so not the time-zone bug), but the watch's FIT
    matches both: every arrival order must end as one workout on the watch's clock."""
    results = []
    for n, order in enumerate(itertools.permutations(["gpx", "tcx", "fit"])):
        person = f"p{n}"
        made = {
            "gpx": (f"{person} gpx".encode(), dict(cut_s=300, channels=("position",), fmt="gpx")),
            "tcx": (f"{person} tcx".encode(), dict(channels=("power_w",), fmt="tcx", shift_s=-7 * 3600)),
            "fit": (f"{person} fit".encode(), dict(channels=("hr_bpm",), fmt="fit")),
        }
        saved = {}
        for fmt in order:
            data, kw = made[fmt]
            saved[fmt] = save(store, data, [ride(data, person=person, **kw)], person=person)
        (workout,) = [s.id for s in store.list_activities(person=person)]
        if order[-1] == "fit":  # the last file bridged the two workouts the others made
            assert saved["fit"].merged_ids and saved["fit"].absorbed_ids, saved["fit"]
        name_of = {f"{sha(data)}:0": fmt for fmt, (data, _) in made.items()}
        shifts = {name_of[r.key]: r.shift_s for r in store.versions(workout)}
        assert shifts == {"fit": 0, "gpx": 0, "tcx": -7 * 3600}, order
        merged = store.get_activity(workout)
        assert merged.activity.start == T0 and set(merged.activity.samples.columns) >= {"lat_deg", "hr_bpm", "power_w"}
        results.append(dataclasses.replace(merged.activity, person="", provenance=None))
    assert all(r == results[0] for r in results[1:])  # identical whatever the order


def test_a_split_is_not_undone_by_a_copy_matching_both_halves(store: Store) -> None:
    _, _, first, _ = watch_and_phone(store)
    (workout,) = first.activity_ids
    alone = store.split(workout, "phone.gpx")
    third = save(store, b"third copy", [ride(b"third copy", cut_s=60, channels=("position",), fmt="tcx")])
    assert third.merged_ids and third.absorbed_ids == []
    assert sorted(store.activity_ids()) == sorted([workout, alone])


def test_unrelated_activities_stay_apart(store: Store) -> None:
    a = save(store, b"morning", [ride(b"morning")])
    # (an evening ride of exactly the same length starting exactly 11 h later would
    # look like the time-zone bug, so this one is a real other ride)
    b = save(store, b"evening", [ride(b"evening", start=T0 + timedelta(hours=11, minutes=17), duration_s=2700)])
    c = save(store, b"bob's", [ride(b"bob's", person="bob")], person="bob")
    # Legs of one file (identical times on purpose) never merge with each other.
    legs = save(store, b"two legs", [ride(b"two legs", start=T0 + timedelta(days=3))] * 2)
    assert [len(r.activity_ids) for r in (a, b, c, legs)] == [1, 1, 1, 2]
    assert all(r.merged_ids == [] for r in (a, b, c, legs))
    assert len(store.activity_ids()) == 5


# -- manual decisions ------------------------------------------------------------------


def test_split_and_merge_survive_reprocessing(store: Store) -> None:
    watch, phone, first, _ = watch_and_phone(store)
    (workout,) = first.activity_ids
    phone_key = f"{sha(PHONE)}:0"

    alone = store.split(workout, "phone.gpx")
    assert alone != workout and sorted(store.activity_ids()) == sorted([workout, alone])
    assert store.get_activity(workout).activity == watch  # a single version is itself again
    assert store.get_activity(alone).activity == phone
    assert [r.key for r in store.versions(alone)] == [phone_key]

    # Reprocessing both files: the split holds, whichever file comes first.
    for data, activity in ((PHONE, phone), (WATCH, watch), (PHONE, phone)):
        (landed,) = store.replace_file_records(sha(data), [activity], [])
        assert len(store.activity_ids()) == 2
        assert len(store.versions(landed)) == 1
    assert count(store, "workouts") == 2 and count(store, "versions") == 2

    # A manual merge joins them again and outlives reprocessing too.
    watch_id, phone_id = (store.get_version(f"{sha(d)}:0").id for d in (WATCH, PHONE))
    assert store.merge_workouts(watch_id, phone_id) == watch_id
    with pytest.raises(NotFound):
        store.get_activity(phone_id)
    assert set(store.get_activity(watch_id).activity.samples.columns) >= {"hr_bpm", "power_w"}
    (landed,) = store.replace_file_records(sha(PHONE), [phone], [])
    assert landed == watch_id and store.activity_ids() == [watch_id]
    assert [r.key for r in store.versions(watch_id)] == [f"{sha(WATCH)}:0", phone_key]
    # and the split can be repeated, by SHA-256 prefix this time
    again = store.split(watch_id, sha(PHONE)[:10])
    assert [r.key for r in store.versions(again)] == [phone_key]


def test_manual_merge_of_far_apart_workouts_is_kept_on_reprocess(store: Store) -> None:
    morning = ride(b"morning")
    evening = ride(b"evening", start=T0 + timedelta(days=2), channels=("power_w",))
    (a,) = save(store, b"morning", [morning]).activity_ids
    (b,) = save(store, b"evening", [evening]).activity_ids
    store.merge_workouts(a, b)
    # Two days apart: outside any match window, so only the decision brings it back.
    (landed,) = store.replace_file_records(sha(b"evening"), [evening], [])
    assert landed == a and store.activity_ids() == [a]
    (landed,) = store.replace_file_records(sha(b"morning"), [morning], [])
    assert landed == a and len(store.versions(a)) == 2


def test_reprocessing_removes_versions_and_empty_workouts(store: Store) -> None:
    watch, _, first, _ = watch_and_phone(store)
    (workout,) = first.activity_ids
    assert store.replace_file_records(sha(PHONE), [], []) == []
    stored = store.get_activity(workout)
    assert stored.activity == watch and "power_w" not in stored.channel_sources
    assert store.replace_file_records(sha(WATCH), [], []) == []
    assert store.activity_ids() == [] and count(store, "workout_laps") == 0
    assert len(store.files()) == 2  # the raw files are kept


def test_split_and_merge_refuse_what_makes_no_sense(store: Store) -> None:
    _, _, first, _ = watch_and_phone(store)
    (workout,) = first.activity_ids
    (single,) = save(store, b"another day", [ride(b"another day", start=T0 + timedelta(days=5))]).activity_ids
    (bobs,) = save(store, b"bob", [ride(b"bob", person="bob")], person="bob").activity_ids
    with pytest.raises(NotFound, match="no version 'nope.fit'.*watch.fit"):
        store.split(workout, "nope.fit")
    both = sha(WATCH)[:1] if sha(WATCH)[0] == sha(PHONE)[0] else None
    if both:  # a prefix shared by both files is ambiguous
        with pytest.raises(FithubError, match="2 versions"):
            store.split(workout, both)
    with pytest.raises(FithubError, match="single version"):
        store.split(single, f"{sha(b'another day')}:0")
    with pytest.raises(NotFound):
        store.split(4242, "watch.fit")
    with pytest.raises(FithubError, match="different persons"):
        store.merge_workouts(workout, bobs)
    with pytest.raises(FithubError, match="itself"):
        store.merge_workouts(workout, workout)
    with pytest.raises(NotFound):
        store.merge_workouts(workout, 4242)
    assert store.find_version(workout, "phone.gpx") == f"{sha(PHONE)}:0"
    assert len(store.versions(workout)) == 2  # nothing changed


def test_ambiguous_source_names_every_match(store: Store) -> None:
    # Two files under one name (re-exported), both versions of one workout.
    save(store, b"export 1", [ride(b"export 1")], name="ride.gpx")
    (workout,) = save(store, b"export 2", [ride(b"export 2", cut_s=60)], name="ride.gpx").merged_ids
    with pytest.raises(FithubError, match="'ride.gpx' names 2 versions"):
        store.split(workout, "ride.gpx")


# -- migration from 0001 ------------------------------------------------------------------


def _ts(dialect: str, value: datetime):
    # What 0001-era code wrote: SQLite keeps naive UTC text, PostgreSQL timestamptz.
    return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds") if dialect == "sqlite" else value


def test_migration_from_0001_turns_activities_into_workouts(db_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0001")
    dialect = engine.dialect.name
    multi, single = sha(b"old multisport"), sha(b"old single")
    stream = SampleStream(offsets_s=[0.0, 5.0, 10.0], columns={"lat_deg": [1.0, 1.1, 1.2], "lon_deg": [2.0, 2.1, 2.2],
                                                               "hr_bpm": [100.0, None, 102.0]})  # fmt: skip
    with engine.begin() as conn:
        run = lambda sql, **kw: conn.execute(sa.text(sql), kw)
        run("INSERT INTO persons (id, name) VALUES (1, 'alice')")
        for digest in (multi, single):
            run("INSERT INTO raw_files VALUES (:s, 10, :n, 'fit', 'folder:/w', 1, :t, :t)",
                s=digest, n=f"{digest[:6]}.fit", t=_ts(dialect, T0))  # fmt: skip
        rows = [  # (id, file, sport, start, elapsed, samples)
            (7, multi, "swimming", T0, 1800.0, None),
            (9, multi, "cycling", T0 + timedelta(hours=1), 3600.0, encode_samples(stream)),
            (12, single, "running", T0 + timedelta(days=1), 2400.0, None),
        ]
        for id_, digest, sport, start, elapsed, blob in rows:
            run("INSERT INTO activities (id, person_id, file_sha256, sport, start_utc, elapsed_s, distance_m, "
                "sample_count, sample_channels, samples, warnings, device_manufacturer) "
                "VALUES (:id, 1, :f, :sport, :start, :e, :d, :n, :ch, :blob, '[]', 'garmin')",
                id=id_, f=digest, sport=sport, start=_ts(dialect, start), e=elapsed, d=elapsed * 3,
                n=3 if blob else 0, ch='["lat_deg", "lon_deg", "hr_bpm"]' if blob else "[]", blob=blob)  # fmt: skip
        run("INSERT INTO laps (activity_id, idx, start_utc, distance_m) VALUES (9, 0, :t, 5000.0)",
            t=_ts(dialect, T0 + timedelta(hours=1)))  # fmt: skip
        run("INSERT INTO laps (activity_id, idx, start_utc, distance_m) VALUES (9, 1, :t, 6000.0)",
            t=_ts(dialect, T0 + timedelta(hours=1, minutes=30)))  # fmt: skip
    engine.dispose()

    with Store(db_url, tmp_path / "home") as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head_revision()
        assert store.activity_ids() == [7, 9, 12]  # ids users have seen still work
        assert [(r.id, r.activity.sport, r.activity.start) for r in store.list_activities()] == [
            (7, "swimming", T0), (9, "cycling", T0 + timedelta(hours=1)), (12, "running", T0 + timedelta(days=1)),
        ]  # fmt: skip
        ride9 = store.get_activity(9)
        assert ride9.activity.samples == stream and ride9.file_sha256 == multi
        assert [lap.distance_m for lap in ride9.activity.laps] == [5000.0, 6000.0]
        assert ride9.activity.device == Device(manufacturer="garmin")
        assert ride9.channel_sources["position"] == ride9.channel_sources["laps"] == f"{multi}:1"
        assert ride9.channel_sources["hr_bpm"] == f"{multi}:1"
        # version keys follow the order of the activities within their file
        assert [r.key for r in store.versions(7)] == [f"{multi}:0"]
        assert [r.key for r in store.versions(12)] == [f"{single}:0"]
        assert store.get_version(f"{multi}:1").activity == ride9.activity
        assert count(store, "laps") == 2 and count(store, "workout_laps") == 2
        with store.engine.connect() as conn:
            end = conn.execute(sa.text("SELECT end_utc FROM workouts WHERE id = 12")).scalar_one()
        assert str(end).startswith("2024-05-05 06:40:00")
        # Migrated workouts take part in dedupe, and new ids continue after the old.
        copy = ride(b"copy", start=T0 + timedelta(days=1), duration_s=2400)
        copy = dataclasses.replace(copy, sport="running", distance_m=2400 * 3.0)
        assert save(store, b"copy", [copy]).merged_ids == [12]
        (new,) = save(store, b"new", [ride(b"new", start=T0 + timedelta(days=9))]).activity_ids
        assert new > 12


# -- race safety and speed ------------------------------------------------------------------


def _import_worker(url: str, home: str, which: int, rounds: int, barrier, results) -> None:
    # A separate importer process: each round it saves its own file of that round's
    # workout at the same moment as its sibling saves the other file.
    try:
        store = Store(url, Path(home))
        for r in range(rounds):
            data = f"round {r} file {which}".encode()
            start = T0 + timedelta(days=r)
            activity = ride(data, start=start, cut_s=60 * which, channels=("position", "hr_bpm", "power_w")[: 2 + which])
            barrier.wait(timeout=60)
            result = save(store, data, [activity])
            results.put(("ok", which, r, result.activity_ids, result.merged_ids))
        store.close()
    except Exception as exc:  # report to the parent instead of dying silently
        results.put(("error", which, repr(exc), [], []))


def test_two_importers_of_one_workout_make_one_workout(db_url: str, tmp_path: Path) -> None:
    rounds = 12
    Store(db_url, tmp_path / "home").close()  # schema first; the race is about the import
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_import_worker, args=(db_url, str(tmp_path / "home"), which, rounds, barrier, results))
        for which in (0, 1)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in range(2 * rounds)]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert [o for o in outcomes if o[0] == "error"] == []
    with Store(db_url, tmp_path / "home") as store:
        workouts = store.activity_ids()
        assert len(workouts) == rounds
        for r in range(rounds):
            created = [o for o in outcomes if o[2] == r and o[3]]
            joined = [o for o in outcomes if o[2] == r and o[4]]
            assert len(created) == 1 and len(joined) == 1  # one created it, the other joined
            (workout,) = created[0][3]
            assert joined[0][4] == [workout]
            assert len(store.versions(workout)) == 2
            assert "power_w" in store.get_activity(workout).activity.samples.columns


def test_matching_against_100000_workouts_is_one_indexed_query(store: Store) -> None:
    n = 100_000
    every = timedelta(hours=3)  # ~10 workouts within any +-14 h window
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO persons (name) VALUES ('alice')"))
        person_id = conn.execute(sa.text("SELECT id FROM persons")).scalar_one()
        common = {"person_id": person_id, "sport": "cycling", "elapsed_s": 3000.0, "distance_m": 20000.0,
                  "sample_count": 0, "sample_channels": "[]", "warnings": "[]"}  # fmt: skip
        from hub.storage.schema import versions, workouts

        conn.execute(workouts.insert(), [
            {**common, "id": i, "start_utc": T0 + i * every, "end_utc": T0 + i * every + timedelta(seconds=3000),
             "channel_sources": "{}", "primary_version": f"bulk:{i}"}
            for i in range(1, n + 1)
        ])  # fmt: skip
        conn.execute(versions.insert(), [
            {**common, "workout_id": i, "version_key": f"bulk:{i}", "start_utc": T0 + i * every}
            for i in range(1, n + 1)
        ])  # fmt: skip
        if store.dialect == "postgresql":
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('workouts', 'id'), :n)"), {"n": n})
            conn.execute(sa.text("ANALYZE"))
        else:
            conn.execute(sa.text("ANALYZE"))

    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    target = 54_321
    copy = dataclasses.replace(
        ride(b"copy of a bulk workout", start=T0 + target * every + timedelta(seconds=40), duration_s=3000),
        distance_m=20000.0,
    )
    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        began = time.perf_counter()
        result = save(store, b"copy of a bulk workout", [copy])
        took = time.perf_counter() - began
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    assert result.merged_ids == [target]
    assert took < 1.0, f"save with matching took {took:.3f} s"

    reads = [s for s in statements if s[0].lstrip().upper().startswith("SELECT")]
    ranged = [s for s in reads if "start_utc >=" in s[0] and "versions" in s[0]]
    assert len(ranged) == 1  # one candidate query, however many workouts are near
    statement, parameters = ranged[0]
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
        else:
            plan = " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
    assert "ix_versions_person_id_start_utc" in plan, plan
    assert "ix_versions_workout_id" in plan, plan
    # reads in the whole save stay a small constant (no query per candidate)
    assert len(reads) <= 12, [s[0][:80] for s in reads]

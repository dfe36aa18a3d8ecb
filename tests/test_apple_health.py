"""Apple Health import: real samples, generated exports with ground truth, attacks, resume."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.apple_health import IMPORTER, decode_workout
from connectors.apple_health.importer import BATCH
from connectors.apple_health.records import DateParser, identity, map_value, normalise_device
from connectors.apple_health.stream import strip_doctype
from hub.errors import DecodeError
from hub.model import Provenance
from hub.storage import Store, health
from hub.storage.schema import health_records, health_sources, health_types

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_apple_health", ROOT / "fixtures" / "make_apple_health.py")
gen = importlib.util.module_from_spec(_spec)
sys.modules["make_apple_health"] = gen
_spec.loader.exec_module(gen)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'fithub.db'}", tmp_path / "home")
    yield s
    s.close()


@pytest.fixture
def any_store(db_url: str, tmp_path: Path):
    s = Store(db_url, tmp_path / "home")
    yield s
    s.close()


@pytest.fixture(scope="module")
def export10(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("ah") / "export.zip"
    truth = gen.write_export(path, days=10, macosx=True)
    return path, truth.as_json()


def _records(store: Store, rtype: str | None = None) -> list[dict]:
    """Stored records with their type, unit, kind and source named, and the times as datetimes."""
    query = (
        sa.select(health_records, health_types.c.type, health_types.c.unit, health_types.c.kind,
                  health_sources.c.name.label("source"))
        .join(health_sources, health_sources.c.id == health_records.c.source_id)
        .join(health_types, health_types.c.id == health_records.c.type_id)
        .order_by(health_records.c.start_s, health_records.c.identity)
    )
    if rtype:
        query = query.where(health_types.c.type == rtype)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for r in rows:
        r["start_utc"] = datetime.fromtimestamp(r["start_s"], timezone.utc)
        r["end_utc"] = datetime.fromtimestamp(r["end_s"], timezone.utc)
    return rows


def _snapshot(store: Store) -> dict:
    """Everything an import stores, in a form two databases can be compared by."""
    recs = sorted(
        (bytes(r["identity"]).hex(), r["type"], r["unit"], r["kind"], r["value"], r["text_value"], r["kind_value"],
         r["start_s"], r["end_s"], r["utc_offset_s"], r["metadata"], r["source"])
        for r in _records(store)
    )
    acts = sorted(
        (a.activity.sport, a.activity.start.isoformat(), a.activity.distance_m, a.sample_count) for a in store.list_activities()
    )
    meas = sorted((m.kind, m.time.isoformat(), m.value) for m in store.measurements())
    return {"records": recs, "activities": acts, "measurements": meas}


def _events(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT kind, count(*) FROM outbox_events GROUP BY kind")).all())


# -- pure parts ----------------------------------------------------------------------------------------


def test_dates_become_utc_plus_offset() -> None:
    dp = DateParser()
    assert dp.parse("2024-10-25 07:04:44 -0500") == ("2024-10-25 12:04:44", -18000)
    assert dp.parse("2024-01-01 00:30:00 +0100") == ("2023-12-31 23:30:00", 3600)
    assert dp.parse("2024-01-01 00:30:15 +0530") == ("2023-12-31 19:00:15", 19800)  # minute-level offset
    assert dp.parse("2024-03-01T10:00:00+00:00") == ("2024-03-01 10:00:00", 0)  # ISO variant, slow path
    for bad in ("2024-13-01 10:00:00 +0000", "yesterday", "2024-01-01 10:00:00 +9999", "2024-01-01 10:00:00"):
        with pytest.raises(ValueError):
            dp.parse(bad)


def test_identity_ignores_device_and_creation_but_not_value() -> None:
    start = int(datetime(2024, 1, 1, 10, tzinfo=timezone.utc).timestamp())
    a = identity("HKQuantityTypeIdentifierStepCount", "iPhone", start, start + 600, "100")
    assert a == identity("HKQuantityTypeIdentifierStepCount", "iPhone", start, start + 600, "100")
    assert a != identity("HKQuantityTypeIdentifierStepCount", "iPhone", start, start + 600, "101")
    assert a != identity("HKQuantityTypeIdentifierStepCount", "Watch", start, start + 600, "100")
    assert a != identity("HKQuantityTypeIdentifierStepCount", "iPhone", start, start + 601, "100")
    # The first 4 bytes are the start's UTC hour: the key range the time queries use.
    assert a[:4] == health.key_hour(datetime(2024, 1, 1, 10, 59, 59, tzinfo=timezone.utc)) == health.key_hour(start)
    assert health.key_hour(start - 1) < a < health.key_hour(start + 3600)
    assert normalise_device("<<HKDevice: 0x28a3f>, name:iPhone>") == normalise_device("<<HKDevice: 0x99999>, name:iPhone>")


def test_units_become_si_kinds() -> None:
    assert map_value("HKQuantityTypeIdentifierBodyMass", "lb", "150") == ("weight_kg", 150.0, None, pytest.approx(68.0388555))
    assert map_value("HKQuantityTypeIdentifierBodyFatPercentage", "%", "0.18")[3] == pytest.approx(18.0)
    assert map_value("HKQuantityTypeIdentifierDistanceWalkingRunning", "mi", "1")[3] == pytest.approx(1609.344)
    assert map_value("HKQuantityTypeIdentifierActiveEnergyBurned", "kcal", "2")[3] == pytest.approx(8368.0)
    assert map_value("HKCategoryTypeIdentifierSleepAnalysis", None, "HKCategoryValueSleepAnalysisAsleepREM", 600.0) == (
        "sleep_s", None, "HKCategoryValueSleepAnalysisAsleepREM", 600.0)
    assert map_value("HKCategoryTypeIdentifierSleepAnalysis", None, "HKCategoryValueSleepAnalysisInBed", 600.0)[0] is None
    # Unknown types are kept generically: no kind, value as given.
    assert map_value("HKQuantityTypeIdentifierEnvironmentalAudioExposure", "dBASPL", "61.2") == (None, 61.2, None, None)
    # A known type in a unit fithub cannot convert keeps its kind but gets no SI value.
    assert map_value("HKQuantityTypeIdentifierStepCount", "furlongs", "3") == ("steps", 3.0, None, None)


def test_priority_resolution_is_proportional_to_overlap() -> None:
    day = datetime(2024, 5, 1, 10, tzinfo=timezone.utc).timestamp()
    watch, phone = 0, 1
    pieces = [
        health.Piece(day, day + 600, 100.0, 0, phone),  # 10 min, 100 steps
        health.Piece(day + 300, day + 600, 60.0, 0, watch),  # watch covers the second half
        health.Piece(day + 1200, day + 1800, 50.0, 0, phone),  # phone alone
        health.Piece(day + 1500, day + 1500, 7.0, 0, phone),  # an instant, inside the phone's own record: counts
        health.Piece(day + 400, day + 400, 9.0, 0, phone),  # an instant the watch covers: dropped
    ]
    assert health.resolve_daily(pieces) == {date(2024, 5, 1): pytest.approx(60 + 50 + 50 + 7)}
    # A record across local midnight is split by its own offset (UTC+2 here).
    late = datetime(2024, 5, 1, 21, 30, tzinfo=timezone.utc).timestamp()  # 23:30 local
    split = health.resolve_daily([health.Piece(late, late + 3600, 120.0, 7200, watch)])
    assert split == {date(2024, 5, 1): pytest.approx(60.0), date(2024, 5, 2): pytest.approx(60.0)}


def test_doctype_is_cut_out_keeping_line_numbers() -> None:
    text = b'<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n<!ELEMENT a EMPTY>\n<!ATTLIST broken\n]>\n<HealthData/>\n'
    out, complete = strip_doctype(text, "x")
    assert complete and b"DOCTYPE" not in out and out.count(b"\n") == text.count(b"\n")
    with pytest.raises(DecodeError, match="entities"):
        strip_doctype(b'<!DOCTYPE HealthData [<!ENTITY a "b">]><HealthData/>', "x")


# -- the real samples ----------------------------------------------------------------------------------


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_real_export_matches_upstream_expected_csvs(shared: Path, store: Store) -> None:
    folder = shared / "apple_health" / "applehealthdata"
    report = IMPORTER.import_path(folder / "export6s3sample.xml", store, person="njr")
    assert report.warnings == []
    for name, rtype in (("StepCount", "HKQuantityTypeIdentifierStepCount"),
                        ("DistanceWalkingRunning", "HKQuantityTypeIdentifierDistanceWalkingRunning")):
        expected = _csv(folder / "expected" / f"{name}.csv")
        got = _records(store, rtype)
        assert len(got) == len(expected)
        for row, rec in zip(sorted(expected, key=lambda r: r["startDate"]), got):
            start, offset = datetime.strptime(row["startDate"], "%Y-%m-%d %H:%M:%S %z"), None
            assert rec["start_utc"] == start.astimezone(timezone.utc)
            assert rec["utc_offset_s"] == start.utcoffset().total_seconds()
            assert rec["value"] == pytest.approx(float(row["value"]))
            assert rec["unit"] == row["unit"] and rec["source"] == row["sourceName"]
    summaries = _records(store, "ActivitySummary")
    expected = _csv(folder / "expected" / "ActivitySummary.csv")
    assert [json.loads(r["metadata"])["activeEnergyBurned"] for r in summaries] == [e["activeEnergyBurned"] for e in expected]
    (workout,) = _csv(folder / "expected" / "Workout.csv")
    (stored,) = store.list_activities(person="njr")
    a = stored.activity
    assert a.sport == "generic"  # HKWorkoutActivityTypeOther
    assert a.start == datetime.strptime(workout["startDate"], "%Y-%m-%d %H:%M:%S %z")
    assert a.moving_s == pytest.approx(float(workout["duration"]) * 60)
    assert a.energy_j == pytest.approx(float(workout["totalEnergyBurned"]) * 4184)
    assert a.distance_m == 0
    # Distance daily total: a single source, so the plain sum.
    totals = health.daily_totals(store.engine, "njr", "distance_walking_running_m")
    assert totals == {date(2014, 9, 20): pytest.approx(sum(float(r["value"]) for r in _csv(folder / "expected" / "DistanceWalkingRunning.csv")) * 1000)}


@pytest.mark.parametrize("name", ["export.zip", "export_es-locale_exportar.zip", "apple_health_export/export.xml"])
def test_real_zips_any_locale_with_route_file(shared: Path, store: Store, name: str) -> None:
    path = shared / "apple_health" / "healthkit-to-sqlite" / name
    report = IMPORTER.import_path(path, store, person="simon")
    assert report.measurements == 4  # BMI, heart rate, two activity summaries
    assert [r["type"] for r in _records(store) if r["type"] != "ActivitySummary"] == [
        "HKQuantityTypeIdentifierBodyMassIndex", "HKQuantityTypeIdentifierHeartRate"]
    (stored,) = store.list_activities(person="simon")
    a = store.get_activity(stored.id).activity
    assert a.sport == "running"
    assert a.distance_m == pytest.approx(0.4971749504535062 * 1609.344)
    assert a.utc_offset_s == -7 * 3600
    # The route file's three points (they lie outside the workout's time: the upstream
    # fixture pairs an unrelated route), dropped with a warning rather than mis-placed.
    assert any("outside the workout" in w for w in report.warnings)
    weights = store.measurements(person="simon", kind="bmi_kg_m2")
    assert [m.value for m in weights] == [pytest.approx(22.5312)]


def test_real_inline_route_and_macos_rezip(shared: Path, store: Store) -> None:
    report = IMPORTER.import_path(shared / "apple_health" / "healthkit-to-sqlite" / "export.xml", store, person="simon")
    (stored,) = store.list_activities(person="simon")
    a = store.get_activity(stored.id).activity
    # Old-style inline <Location>s: two fixes in the same second are one sample (the first wins).
    assert a.samples.values("lat_deg") == [pytest.approx(37.7777)]
    assert a.samples.values("altitude_m") == [pytest.approx(21.2694)]
    assert report.measurements == 4

    report = IMPORTER.import_path(shared / "apple_health" / "apple-health-parser" / "export.zip", store, person="alex")
    assert report.measurements == 8 and report.warnings == []
    sleep = _records(store, "HKCategoryTypeIdentifierSleepAnalysis")
    # Both are of the sleep type; only the asleep stage has a value of sleep (in bed is not sleep).
    assert [(r["text_value"], r["kind"], r["kind_value"]) for r in sleep] == [
        ("HKCategoryValueSleepAnalysisInBed", "sleep_s", None), ("HKCategoryValueSleepAnalysisAsleepCore", "sleep_s", 12 * 60 + 30)]
    hr = _records(store, "HKQuantityTypeIdentifierHeartRate")
    assert json.loads(hr[0]["metadata"]) == {"HKMetadataKeyHeartRateMotionContext": "0"}
    # The bare XML of the same export adds nothing new.
    again = IMPORTER.import_path(shared / "apple_health" / "apple-health-parser" / "export.xml", store, person="alex")
    assert again.measurements == 0 and again.skipped == 8


# -- generated exports with ground truth -----------------------------------------------------------------


def test_generated_export_totals_match_ground_truth(export10, any_store: Store) -> None:
    path, truth = export10
    report = IMPORTER.import_path(path, any_store, person="ann")
    store = any_store
    expected_rows = truth["records"] + truth["correlations"] + truth["activity_summaries"]
    assert report.measurements == expected_rows == health.count_records(store.engine, "ann")
    steps = health.daily_totals(store.engine, "ann", "steps")
    assert {d.isoformat(): v for d, v in steps.items()} == pytest.approx(truth["steps_daily"])
    assert steps != pytest.approx({date.fromisoformat(k): v for k, v in truth["naive_steps_daily"].items()})
    flights = health.daily_totals(store.engine, "ann", "flights_climbed")
    assert {d.isoformat(): v for d, v in flights.items()} == pytest.approx(truth["flights_daily"])
    dist = health.daily_totals(store.engine, "ann", "distance_walking_running_m")
    assert {d.isoformat(): v for d, v in dist.items()} == pytest.approx(truth["distance_daily_m"])
    # A date range selects local days.
    some = health.daily_totals(store.engine, "ann", "steps", date(2024, 1, 3), date(2024, 1, 4))
    assert list(some) == [date(2024, 1, 3), date(2024, 1, 4)]
    # The children of a correlation are not counted twice.
    assert len(_records(store, "HKQuantityTypeIdentifierBloodPressureSystolic")) == truth["by_type"]["HKQuantityTypeIdentifierBloodPressureSystolic"]
    # Point kinds land in the measurements table too.
    assert len(store.measurements(person="ann", kind="weight_kg")) == truth["by_type"]["HKQuantityTypeIdentifierBodyMass"]

    # Workouts -> activities, with route, HR channel and totals.
    stored = store.list_activities(person="ann")
    assert len(stored) == truth["workouts"]
    for s, w in zip(stored, truth["workout_list"]):
        a = store.get_activity(s.id).activity
        assert a.start.isoformat() == w["start_utc"] and a.sport == w["sport"]
        assert a.elapsed_s == w["elapsed_s"] and a.distance_m == pytest.approx(w["distance_m"])
        assert a.energy_j == pytest.approx(w["energy_j"])
        assert a.moving_s == pytest.approx(w["elapsed_s"] - w["pause_s"], abs=1)
        assert len(a.samples.values("hr_bpm")) == w["hr_samples"] and a.max_hr_bpm == w["max_hr"]
        assert len(a.samples.values("lat_deg")) == w["route_points"]
        assert a.sub_sport == ("indoor_cycling" if w["indoor"] else None)
        assert (a.ascent_m is not None) == (not w["indoor"])
        assert len(a.laps) == 1 and a.laps[0].trigger == "segment"


def test_priority_is_stored_and_changes_totals(export10, store: Store) -> None:
    path, truth = export10
    IMPORTER.import_path(path, store, person="ann")
    assert [name for name, _, explicit in health.priorities(store.engine, "ann")][:2] == ["Ann’s Apple Watch", "Ann’s iPhone"]
    health.set_priority(store.engine, "ann", ["Ann’s iPhone", "Ann’s Apple Watch"])
    assert health.priorities(store.engine, "ann")[0] == ("Ann’s iPhone", 0, True)
    steps = health.daily_totals(store.engine, "ann", "steps")
    assert {d.isoformat(): v for d, v in steps.items()} == pytest.approx(truth["phone_steps_daily"])


def test_reimport_adds_nothing_and_overlapping_export_adds_only_the_new_part(any_store: Store, tmp_path: Path) -> None:
    store = any_store
    older, newer, whole = tmp_path / "older.zip", tmp_path / "newer.zip", tmp_path / "whole.zip"
    gen.write_export(older, first_day=0, days=6)
    gen.write_export(newer, first_day=3, days=6)  # days 3..8: 3..5 shared
    t_whole = gen.write_export(whole, first_day=0, days=9)
    first = IMPORTER.import_path(older, store, person="ann")
    before = _snapshot(store)
    events = _events(store)
    assert events["measurement.stored"] >= 1 and events["activity.stored"] == len(first.activity_ids)
    again = IMPORTER.import_path(older, store, person="ann")
    assert again.measurements == 0 and again.activity_ids == [] and _snapshot(store) == before
    assert _events(store) == events  # nothing new, nothing announced
    IMPORTER.import_path(newer, store, person="ann")
    assert health.count_records(store.engine) == t_whole.records + t_whole.correlations + t_whole.activity_summaries
    assert len(store.list_activities()) == t_whole.workouts
    assert first.measurements < health.count_records(store.engine)
    steps = health.daily_totals(store.engine, "ann", "steps")
    assert {d.isoformat(): v for d, v in steps.items()} == pytest.approx(t_whole.steps_daily)


def test_ios16_dtd_and_stray_control_characters(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "export.xml"
    truth = gen.write_export(path, days=2, dtd="ios16", with_routes=False)
    import pyexpat

    with pytest.raises(pyexpat.ExpatError):  # the fixture really is broken for a plain parser
        pyexpat.ParserCreate().Parse(path.read_bytes(), True)
    report = IMPORTER.import_path(path, store, person="ann")
    assert report.measurements == truth.records + truth.correlations + truth.activity_summaries
    (weight,) = _records(store, "HKQuantityTypeIdentifierBodyMass")
    assert json.loads(weight["metadata"])["Withings User Identifier"] == "12345"  # the \x0b removed


def test_unzipped_folder_and_spanish_name(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "apple_health_export.zip"
    truth = gen.write_export(path, days=4, main_name="exportar.xml", macosx=True)
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
    assert IMPORTER.claims(path, path.read_bytes()[:64]) and IMPORTER.claims(folder / "apple_health_export", b"")
    report = IMPORTER.import_path(folder / "apple_health_export", store, person="ann")
    assert len(report.activity_ids) == truth.workouts
    assert sum(1 for a in store.list_activities() if store.get_activity(a.id).activity.samples.values("lat_deg")) == truth.routes
    assert not IMPORTER.claims(ROOT / "fixtures" / "samples" / "morning_run.gpx", b"<?xml version='1.0'?><gpx")


# -- attacks and broken input ---------------------------------------------------------------------------


def test_entity_expansion_and_external_entities_are_refused(tmp_path: Path, store: Store) -> None:
    laughs, external = tmp_path / "laughs.xml", tmp_path / "external.xml"
    gen.write_entity_attack(laughs)
    gen.write_external_entity_attack(external)
    for path in (laughs, external):
        with pytest.raises(DecodeError, match="entit"):
            IMPORTER.import_path(path, store, person="ann")
    # An entity reference without any declaration is an error too, not an expansion.
    bare = tmp_path / "bare.xml"
    bare.write_text('<HealthData locale="x"><Record type="T" sourceName="&lol;" startDate="2024-01-01 00:00:00 +0000" '
                    'endDate="2024-01-01 00:00:00 +0000"/></HealthData>')
    with pytest.raises(DecodeError, match="undefined entity"):
        IMPORTER.import_path(bare, store, person="ann")
    assert health.count_records(store.engine) == 0


def test_zip_bomb_and_traversal_are_refused(tmp_path: Path, store: Store) -> None:
    bomb, climb = tmp_path / "bomb.zip", tmp_path / "climb.zip"
    gen.write_zip_bomb(bomb, size_mb=64)
    assert bomb.stat().st_size < 1_000_000
    assert IMPORTER.claims(bomb, bomb.read_bytes()[:64])  # claimed, so refused here with the reason
    with pytest.raises(DecodeError, match="zip bomb"):
        IMPORTER.import_path(bomb, store, person="ann")
    gen.write_traversal_zip(climb)
    with pytest.raises(DecodeError, match="refused"):
        IMPORTER.import_path(climb, store, person="ann")
    # A route reference that climbs out of the export folder is not followed.
    xml = tmp_path / "export.xml"
    gen.write_export(xml, days=2, with_routes=False)
    text = xml.read_text().replace("</Workout>", '<WorkoutRoute sourceName="x" startDate="2024-01-01 00:00:00 +0000" '
                                   'endDate="2024-01-01 00:00:00 +0000"><FileReference path="/../../etc/passwd"/></WorkoutRoute></Workout>')
    xml.write_text(text)
    report = IMPORTER.import_path(xml, store, person="ann")
    assert any("leaves the export folder" in w for w in report.warnings)


def test_truncated_and_garbage_input(tmp_path: Path, store: Store) -> None:
    whole = tmp_path / "whole.xml"
    gen.write_export(whole, days=3, with_routes=False)
    data = whole.read_bytes()
    cut = tmp_path / "cut.xml"
    cut.write_bytes(data[: len(data) // 2])
    report = IMPORTER.import_path(cut, store, person="ann")
    assert any("damaged" in w and ("truncated" in w or "not well-formed" in w) for w in report.warnings)
    partial = health.count_records(store.engine)
    assert partial == report.measurements
    # The whole export afterwards completes it, with no duplicates.
    IMPORTER.import_path(whole, store, person="ann")
    clean = Store(f"sqlite:///{tmp_path / 'clean.db'}", tmp_path / "clean")
    IMPORTER.import_path(whole, clean, person="ann")
    assert 0 < partial < health.count_records(store.engine)
    assert _snapshot(store)["records"] == _snapshot(clean)["records"]
    clean.close()
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04" + os.urandom(200))
    with pytest.raises(DecodeError):
        IMPORTER.import_path(junk, store, person="ann")
    bad_dates = tmp_path / "dates.xml"
    bad_dates.write_text('<HealthData locale="x"><Record type="T" sourceName="s" startDate="soon" endDate="later" value="1"/>'
                         '<Record type="T" sourceName="s" startDate="2024-01-01 00:00:00 +0000" endDate="2024-01-01 00:00:00 +0000" value="2"/>'
                         '</HealthData>')
    report = IMPORTER.import_path(bad_dates, store, person="bob")
    assert report.measurements == 1 and any("unreadable date" in w for w in report.warnings)
    # Digits where the minutes and seconds go, but out of range: rejected, not stored as a wrong time.
    odd = tmp_path / "odd.xml"
    odd.write_text('<HealthData locale="x"><Record type="T" sourceName="s" startDate="2024-01-01 10:75:99 +0100" '
                   'endDate="2024-01-01 10:00:00 +0100" value="1"/></HealthData>')
    report = IMPORTER.import_path(odd, store, person="carl")
    assert report.measurements == 0 and any("unreadable date" in w for w in report.warnings)


def test_workout_blob_decodes_alone_for_reprocessing(export10, store: Store) -> None:
    path, _ = export10
    IMPORTER.import_path(path, store, person="ann")
    record = next(f for f in store.files() if f.fmt == "apple_health_workout")
    origin = Provenance(source=record.source, sha256=record.sha256, received_at=record.received_at, name=record.name)
    decoded = decode_workout(store.raw_bytes(record.sha256), origin)
    (stored,) = [a for a in store.list_activities() if a.file_sha256 == record.sha256]
    assert decoded.activities[0].distance_m == stored.activity.distance_m
    with pytest.raises(DecodeError):
        decode_workout(b"<AppleHealthWorkout><Workout startDate='never'/></AppleHealthWorkout>", origin)


# -- processes: SIGKILL mid-import, memory bound, CLI --------------------------------------------------------

_RUN = """
import sys, resource
def peak_kb():
    # VmHWM is this process's own peak; ru_maxrss would include the parent's RSS at
    # fork time (Linux carries it across exec), i.e. the generator's or pytest's.
    try:
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


from pathlib import Path
from hub.storage import Store
from connectors.apple_health.importer import AppleHealthImporter
store = Store(sys.argv[2], Path(sys.argv[3]))
report = AppleHealthImporter(batch_size=int(sys.argv[4])).import_path(Path(sys.argv[1]), store, person="ann")
print(report.measurements, len(report.activity_ids), peak_kb())
"""


def _run(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _RUN, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_mid_import_then_rerun_equals_one_clean_run(tmp_path: Path) -> None:
    export = tmp_path / "export.zip"
    truth = gen.write_export(export, days=40)
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    engine = sa.create_engine(url)
    proc = _run(export, url, tmp_path / "killed", 500)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with engine.connect() as conn:
                done = conn.execute(sa.text("SELECT coalesce(max(records_done), 0) FROM health_imports")).scalar()
        except sa.exc.OperationalError:
            done = 0  # not migrated yet
        if done >= 20000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"import finished before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reaps it and closes its pipes
    with engine.connect() as conn:
        committed = conn.execute(sa.text("SELECT count(*) FROM health_records")).scalar()
        checkpoint = conn.execute(sa.text("SELECT max(records_done) FROM health_imports")).scalar()
    engine.dispose()
    assert committed == checkpoint > 0  # the checkpoint commits with its batch
    rerun = _run(export, url, tmp_path / "killed", 500)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    total = truth.records + truth.correlations + truth.activity_summaries
    assert int(out.split()[0]) == total - committed  # the rerun inserts only what was missing
    killed = Store(url, tmp_path / "killed")
    clean = Store(f"sqlite:///{tmp_path / 'clean.db'}", tmp_path / "clean")
    IMPORTER.import_path(export, clean, person="ann")
    assert _snapshot(killed) == _snapshot(clean)
    killed.close()
    clean.close()


def test_memory_stays_bounded_on_a_100mb_export(tmp_path: Path) -> None:
    export = tmp_path / "export.xml"
    truth = gen.write_export(export, mb=100, with_routes=False, hr_every_s=60)
    assert export.stat().st_size > 95_000_000
    proc = _run(export, f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "home", BATCH)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    new, workouts, maxrss_kb = map(int, out.split())
    print(f"100 MB export: peak RSS {maxrss_kb / 1024:.0f} MB")
    assert new == truth.records + truth.correlations + truth.activity_summaries and workouts == truth.workouts
    assert maxrss_kb < 150 * 1024, f"peak RSS {maxrss_kb / 1024:.0f} MB"


def test_cli_daily_and_priority(export10, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    path, truth = export10
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    imported = runner.invoke(app, ["--db", db, "--home", str(tmp_path / "home"), "import", str(path), "--person", "ann", "--json"])
    assert imported.exit_code == 0, imported.output
    counts = json.loads(imported.output)
    assert counts["activities"] == truth["workouts"]
    assert counts["measurements"] == truth["records"] + truth["correlations"] + truth["activity_summaries"]
    base = ["--db", db, "--home", str(tmp_path / "home"), "measurements"]
    result = runner.invoke(app, [*base, "daily", "--type", "steps", "--person", "ann", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == pytest.approx(truth["steps_daily"])
    result = runner.invoke(app, [*base, "daily", "--type", "steps", "--person", "ann", "--from", "2024-01-02", "--to", "2024-01-02", "--json"])
    assert list(json.loads(result.output)) == ["2024-01-02"]
    result = runner.invoke(app, [*base, "daily", "--type", "nonsense"])
    assert result.exit_code == 1 and "unknown --type" in result.output
    result = runner.invoke(app, [*base, "priority", "--person", "ann", "Ann’s iPhone"])
    assert result.exit_code == 0 and result.output.splitlines()[0] == "1. Ann’s iPhone"
    result = runner.invoke(app, [*base, "daily", "--type", "steps", "--person", "ann", "--json"])
    assert json.loads(result.output) == pytest.approx(truth["phone_steps_daily"])
    result = runner.invoke(app, [*base, "--kind", "weight_kg", "--json"])  # the old listing still works
    assert result.exit_code == 0 and len(json.loads(result.output)) == truth["by_type"]["HKQuantityTypeIdentifierBodyMass"]


def test_workout_merges_with_the_watch_fit_file_of_the_same_run(export10, store: Store) -> None:
    """A FIT file of the same run (here written by fithub's own FIT export from another
    decode of it) joins the Apple workout as a second version instead of a new activity."""
    from connectors.export import export as write
    from connectors.files import decoders, sniff
    from hub.pipeline import Imported, ingest

    path, truth = export10
    IMPORTER.import_path(path, store, person="ann")
    first = store.list_activities(person="ann")[0]
    activity = store.get_activity(first.id).activity
    fit = write(activity, "fit")
    outcome = ingest(store, fit, name="watch.fit", decoders=decoders(), sniff=sniff, person="ann")
    assert isinstance(outcome, Imported) and outcome.merged_ids == [first.id] and outcome.activity_ids == []
    assert len(store.list_activities(person="ann")) == truth["workouts"]
    assert len(store.versions(first.id)) == 2
    # Importing the export again still adds nothing, with the FIT version in place.
    again = IMPORTER.import_path(path, store, person="ann")
    assert again.activity_ids == [] and again.merged_ids == [] and again.measurements == 0


def test_progress_reports_bytes_of_the_compressed_input(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "export.zip"
    gen.write_export(path, days=40, with_routes=False)  # a few MB of XML: several chunks
    seen: list[tuple[int, int]] = []
    IMPORTER.import_path(path, store, person="ann", progress=lambda done, total: seen.append((done, total)))
    size = path.stat().st_size
    assert len(seen) > 2 and all(total == size for _, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == size
    assert 0 < seen[0][0] < size


def test_route_reader_fast_path_equals_the_xml_parser(shared: Path) -> None:
    from connectors.apple_health.workouts import _parse_route_xml, parse_route

    real = (shared / "apple_health" / "healthkit-to-sqlite" / "apple_health_export" / "workout-routes"
            / "route_2019-06-11_3.00pm.gpx").read_bytes()
    points = parse_route(real, "route.gpx")
    assert points == _parse_route_xml(real, "route.gpx", collect=True)
    assert [p[1]["lat_deg"] for p in points] == [37.781672, 37.78167, 37.78167]
    assert points[0][0] == datetime(2019, 6, 11, 22, 0, 42, tzinfo=timezone.utc) and points[0][1]["speed_mps"] == 0.180883
    # Another writer's shape (lat before lon) is read by the XML parser, same values.
    swapped = real.replace(b'lon="-122.396397" lat="37.781672"', b'lat="37.781672" lon="-122.396397"')
    assert parse_route(swapped, "route.gpx") == points
    with pytest.raises(DecodeError, match="refused"):
        parse_route(b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY a "b">]><gpx>&a;</gpx>', "evil.gpx")
    with pytest.raises(DecodeError, match="not well-formed"):
        parse_route(real[:-40], "cut.gpx")


def test_the_same_record_twice_in_one_batch_is_stored_once(any_store: Store, tmp_path: Path) -> None:
    record = ('<Record type="HKQuantityTypeIdentifierStepCount" sourceName="Phone" unit="count" '
              'startDate="2024-02-01 10:00:00 +0100" endDate="2024-02-01 10:10:00 +0100" value="{v}"/>')
    path = tmp_path / "export.xml"
    path.write_text('<HealthData locale="en_US"><ExportDate value="2024-02-02 10:00:00 +0100"/>'
                    + record.format(v=100) + record.format(v=100) + record.format(v=101) + "</HealthData>")
    report = IMPORTER.import_path(path, any_store, person="ann")
    assert report.measurements == 2 and report.skipped == 1
    assert health.daily_totals(any_store.engine, "ann", "steps") == {date(2024, 2, 1): 201.0}


def test_exports_without_export_date_are_never_skipped_by_position(store: Store, tmp_path: Path) -> None:
    """Two hand-made files of the same size and locale and no ExportDate must not be
    mistaken for a resumed import of one another."""
    rec = ('<Record type="HKQuantityTypeIdentifierBodyMass" sourceName="Scale" unit="kg" '
           'startDate="2024-02-01 07:00:00 +0100" endDate="2024-02-01 07:00:00 +0100" value="{v}"/>')
    first, second = tmp_path / "a.xml", tmp_path / "b.xml"
    first.write_text('<HealthData locale="en_US">' + rec.format(v="70.1") + "</HealthData>")
    second.write_text('<HealthData locale="en_US">' + rec.format(v="70.2") + "</HealthData>")
    assert first.stat().st_size == second.stat().st_size
    assert IMPORTER.import_path(first, store, person="ann").measurements == 1
    assert IMPORTER.import_path(second, store, person="ann").measurements == 1
    assert sorted(r["value"] for r in _records(store, "HKQuantityTypeIdentifierBodyMass")) == [70.1, 70.2]


def test_the_inlined_hot_path_agrees_with_the_exact_functions(store: Store, tmp_path: Path) -> None:
    """The importer computes dates, identities and SI values inline (cached per local
    hour); every shape of date and value must come out as the plain functions say."""
    dates = [
        ("2024-03-31 01:59:59 +0100", "2024-03-31 03:00:01 +0200"),  # across a DST switch
        ("2024-06-01 10:29:59 +0530", "2024-06-01 10:30:00 +0530"),  # minute offset: two UTC hours in one local hour
        ("2024-06-01 10:59:00 +0545", "2024-06-01 11:01:00 +0545"),
        ("2024-12-31 23:59:59 -0500", "2025-01-01 00:00:00 -0500"),  # across a year in UTC
        ("2024-01-01T10:00:00Z", "2024-01-01T10:05:00+00:00"),  # ISO shapes: the slow path
        ("2024-02-29 12:00:00 +0000", "2024-02-29 12:00:00 +0000"),  # an instant
    ]
    values = [("HKQuantityTypeIdentifierBodyMass", "lb", "150"), ("HKQuantityTypeIdentifierStepCount", "count", "12"),
              ("HKQuantityTypeIdentifierOxygenSaturation", "%", "97"), ("HKQuantityTypeIdentifierBodyMass", "furlong", "1"),
              ("HKQuantityTypeIdentifierHeartRate", "count/min", "NaN"), ("HKQuantityTypeIdentifierWalkingSpeed", "km/hr", "4.2"),
              ("HKCategoryTypeIdentifierSleepAnalysis", None, "HKCategoryValueSleepAnalysisAsleepREM")]
    lines, expected = [], []
    dp = DateParser()
    for i, (start, end) in enumerate(dates):
        # The same hour twice, so the second record of each pair comes from the cache.
        for rtype, unit, value in values:
            for again in (0, 1):
                src = f"Src{again}"
                unit_attr = f' unit="{unit}"' if unit else ""
                lines.append(f'<Record type="{rtype}" sourceName="{src}"{unit_attr} startDate="{start}" endDate="{end}" value="{value}"/>')
                s_utc, offset = dp.parse(start)
                s = int(datetime.strptime(s_utc, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
                e_utc, _ = dp.parse(end)
                e = int(datetime.strptime(e_utc, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
                kind, number, text, kind_value = map_value(rtype, unit, value, float(e - s))
                expected.append((identity(rtype, src, s, e, value).hex(), rtype, number, text, kind_value, s, e, offset))
    path = tmp_path / "export.xml"
    path.write_text('<HealthData locale="en_US">\n' + "\n".join(lines) + "\n</HealthData>\n")
    report = IMPORTER.import_path(path, store, person="ann")
    assert report.warnings == [] and report.measurements == len(expected)

    def same(a, b) -> bool:
        return a == b or (isinstance(a, float) and isinstance(b, float) and a == pytest.approx(b))

    got = sorted((bytes(r["identity"]).hex(), r["type"], r["value"], r["text_value"], r["kind_value"], r["start_s"],
                  r["end_s"], r["utc_offset_s"]) for r in _records(store))
    for g, x in zip(got, sorted(expected)):
        assert all(same(a, b) for a, b in zip(g, x)), (g, x)
    assert len(got) == len(expected)


def test_writer_counts_only_new_rows_across_multi_row_statements(any_store: Store) -> None:
    """Batches are written as a few long INSERTs (SQLite) or one COPY (PostgreSQL):
    duplicates inside one statement, and rows already stored, are not counted or stored twice."""
    writer = health.RecordWriter(any_store.engine, "ann")
    type_id = writer.type_id("HKQuantityTypeIdentifierStepCount", "count", "steps")
    source_id = writer.source_id("Phone", "1", None)
    base = int(datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp())

    def row(i: int) -> tuple:
        return (writer.person_id, identity("HKQuantityTypeIdentifierStepCount", "Phone", base + i, base + i + 60, str(i)),
                type_id, source_id, float(i), None, float(i), base + i, base + i + 60, 0, None)

    n = health.ROWS_PER_INSERT + 7
    first = [row(i) for i in range(n)] + [row(3), row(n - 1)]  # a repeat inside the first statement, one in the tail
    assert writer.write(first, [], export_key="k", done=len(first)) == n
    again = [row(i) for i in range(n - 5, n + 10)]  # 5 stored already, 10 new
    assert writer.write(again, [], export_key="k", done=len(first) + len(again)) == 10
    assert health.count_records(any_store.engine, "ann") == n + 10
    assert sum(health.daily_totals(any_store.engine, "ann", "steps").values()) == sum(range(n + 10))

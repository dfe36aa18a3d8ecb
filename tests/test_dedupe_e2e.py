"""End-to-end dedupe: copies of real workouts imported through the `fithub` command line.

Every scenario starts from a real corpus file and makes the copies that reach a hub
in practice (see ``copies.py``): fithub's own GPX/TCX export, GPSBabel's
conversion, a clock off by whole hours, a cropped copy, positions and heart rate
recorded by different devices. Each runs on SQLite and on the real PostgreSQL.

Truth comes from outside the code under test: the corpus file read with fitdecode
(start time, per-record heart rate and position), the copies' known construction
(which files are the same workout), and, for order independence, the result of
the same set of files imported in another order.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fitdecode
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import copies
from cli import app

ROOT = Path(__file__).resolve().parents[1]

RUN = "fit/runpandas__fr645m-run.fit"  # a 53-minute run, 1,202 records, GPS and HR
RIDE_FIT = "fit/agpl/sportslib__edge1000-ride_3939576645.fit"
RIDE_GPX = "gpx/agpl/sportslib__edge1000-ride_3939576645.gpx"  # the same ride from Garmin Connect
# The evening ride is the morning's shifted by a time that is not whole hours, so
# it cannot pass for a timezone-bug copy.
EVENING_S = 9 * 3600 + 13 * 60 + 27


# --------------------------------------------------------------------------- the copies


@pytest.fixture(scope="session")
def made(shared, tmp_path_factory) -> dict[str, Path]:
    """Every copy of the run, by file name, built once per session."""
    out = tmp_path_factory.mktemp("copies")
    src = shared / RUN
    run = copies.decode_one(src)
    # The original itself, under a short name the scenarios can refer to.
    made = {"run.fit": out / "run.fit"}
    made["run.fit"].write_bytes(src.read_bytes())

    def put(name: str, activity) -> None:
        made[name] = copies.write(activity, out / name)

    put("fithub.gpx", run)
    put("fithub.tcx", run)
    # Timezone-bug copies: every time moved by whole hours, by text edit or by export.
    for name in ("plus1h.gpx", "plus1h.tcx"):
        made[name] = out / name
        made[name].write_text(copies.shift_xml_times(made[f"fithub{made[name].suffix}"].read_text(), 3600))
    put("minus7h.tcx", copies.shifted(run, -7 * 3600))
    put("trim.tcx", copies.trimmed(run, 300, 300))
    put("positions.gpx", copies.only_channels(run, {"lat_deg", "lon_deg", "altitude_m"}))
    put("hr.fit", copies.only_channels(run, {"hr_bpm"}))
    put("evening.gpx", copies.shifted(run, EVENING_S))
    first, second = copies.halves(run)
    put("first_half.tcx", first)
    put("second_half.tcx", second)
    if copies.gpsbabel_available():
        made["babel.gpx"] = copies.gpsbabel(src, out / "babel.gpx")
        made["babel.tcx"] = copies.gpsbabel(src, out / "babel.tcx", sport="running")
        made["evening_babel.tcx"] = out / "evening_babel.tcx"
        made["evening_babel.tcx"].write_text(copies.shift_xml_times(made["babel.tcx"].read_text(), EVENING_S))
    return made


def need_gpsbabel() -> None:
    if not copies.gpsbabel_available():
        pytest.skip("gpsbabel is not installed (Debian package gpsbabel): no independent converter")


def fitdecode_truth(path: Path) -> dict:
    """Session start and per-record values of a FIT file, read directly with fitdecode."""
    records: dict[datetime, dict] = {}
    start = None
    with fitdecode.FitReader(str(path)) as reader:
        for frame in reader:
            if not isinstance(frame, fitdecode.FitDataMessage):
                continue
            if frame.name == "session" and start is None:
                start = frame.get_value("start_time")
            elif frame.name == "record":
                def value(name):
                    return frame.get_value(name) if frame.has_field(name) else None

                lat, lon = value("position_lat"), value("position_long")
                records[value("timestamp")] = {
                    "hr": value("heart_rate"),
                    "lat": None if lat is None else lat * 180 / 2**31,
                    "lon": None if lon is None else lon * 180 / 2**31,
                }
    return {"start": start.astimezone(timezone.utc), "records": records}


# --------------------------------------------------------------------------- running the CLI


def make_cli(home: Path, url: str):
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, ["--home", str(home), "--db", url, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        return result

    return run


@pytest.fixture
def fithub(tmp_path, db_url):
    return make_cli(tmp_path / "home", db_url)


def reset(url: str, tmp_path: Path, tag: str):
    """A CLI on an empty database: a new SQLite file, or the PostgreSQL schema emptied."""
    if url.startswith("sqlite"):
        return make_cli(tmp_path / f"home-{tag}", f"sqlite:///{tmp_path / f'fithub-{tag}.db'}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return make_cli(tmp_path / f"home-{tag}", url)


def js(result) -> object:
    return json.loads(result.stdout)


def imported(fithub, *paths: Path, person: str | None = None) -> dict:
    extra = ["--person", person] if person else []
    return js(fithub("import", *extra, *map(str, paths), "--json"))


def workouts(fithub) -> list[dict]:
    return js(fithub("activities", "list", "--json"))


def show(fithub, workout_id: int) -> dict:
    return js(fithub("activities", "show", str(workout_id), "--json"))


def exported(fithub, workout_id: int) -> dict:
    return json.loads(fithub("export", str(workout_id), "--format", "json", "-o", "-").stdout)


def partition(fithub) -> list[frozenset[str]]:
    """Which imported files ended up in which workout (file names only), sorted."""
    groups = [frozenset(Path(s["name"]).name for s in show(fithub, w["id"])["sources"]) for w in workouts(fithub)]
    return sorted(groups, key=sorted)


def rounded(value):
    """JSON data with floats rounded to 1 um / 1 us, for comparing results of two runs."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- one workout, many roads


def test_converted_copies_are_one_workout(fithub, made, shared):
    need_gpsbabel()
    names = ["run.fit", "fithub.gpx", "fithub.tcx", "babel.gpx", "babel.tcx"]
    first = imported(fithub, made["run.fit"])
    assert (first["imported"], first["merged"]) == (1, 0), first
    rest = imported(fithub, *(made[n] for n in names[1:]))
    assert (rest["imported"], rest["merged"], rest["duplicates"], rest["rejected"]) == (0, 4, 0, []), rest

    [workout] = workouts(fithub)
    truth = fitdecode_truth(shared / RUN)
    # The watch's clock is the reference; the converted copies start at the first fix.
    assert datetime.fromisoformat(workout["start"]) == truth["start"]
    shown = show(fithub, workout["id"])
    assert sorted(Path(s["name"]).name for s in shown["sources"]) == sorted(names)
    assert {s["format"] for s in shown["sources"]} == {"fit", "gpx", "tcx"}
    assert len({s["sha256"] for s in shown["sources"]}) == len(names)
    assert len({s["key"] for s in shown["sources"]}) == len(names)
    # channel_sources names versions of this workout only, and every channel of the
    # merged stream that a version supplied.
    keys = {s["key"] for s in shown["sources"]}
    assert set(shown["channel_sources"].values()) <= keys
    assert {"lat_deg", "lon_deg", "hr_bpm"} <= set(shown["stream_channels"])
    # Nothing recorded is lost: the merged stream covers at least every FIT record.
    assert workout["samples"] >= len(truth["records"])


def test_real_fit_and_its_garmin_connect_gpx(fithub, shared):
    """The same ride as the Edge 1000 recorded it and as Garmin Connect exported it."""
    summary = imported(fithub, shared / RIDE_FIT, shared / RIDE_GPX)
    assert (summary["imported"], summary["merged"]) == (1, 1), summary
    [workout] = workouts(fithub)
    truth = fitdecode_truth(shared / RIDE_FIT)
    assert datetime.fromisoformat(workout["start"]) == truth["start"]
    assert workout["sport"] == "cycling"
    shown = show(fithub, workout["id"])
    assert sorted(s["format"] for s in shown["sources"]) == ["fit", "gpx"]
    assert {"lat_deg", "lon_deg", "hr_bpm", "altitude_m"} <= set(shown["stream_channels"])
    assert workout["samples"] >= len(truth["records"])


@pytest.mark.parametrize("copy", [
    "plus1h.tcx",
    "minus7h.tcx",
    # Known limitation: this GPX is both shifted and cropped (it starts at the first
    # GPS fix, 3 min 31 s in), so neither the minutes:seconds nor the duration of the
    # timezone rule line up; matching it needs sample-level evidence (positions at
    # shifted times), which the summary-only matcher does not have yet.
    pytest.param("plus1h.gpx", marks=pytest.mark.xfail(strict=True, reason="shifted AND cropped copy not recognised yet")),
])
@pytest.mark.parametrize("fit_first", [True, False], ids=["fit-first", "copy-first"])
def test_timezone_bug_copy_takes_the_device_clock(tmp_path, db_url, made, shared, copy, fit_first):
    """A copy whose clock is off by whole hours joins the workout, which keeps the watch's UTC
    time whichever file arrived first.

    The TCX copies keep every record, so they start when the watch started. The GPX
    copy starts at the first GPS fix, 3 min 31 s after the watch started (GPX holds
    positioned points only), and ends at the last fix: the timezone-bug copy a
    GPX exporter actually produces from this run.
    """
    fithub = reset(db_url, tmp_path, "tz")
    order = [made["run.fit"], made[copy]]
    for path in order if fit_first else order[::-1]:
        imported(fithub, path)
    [workout] = workouts(fithub)
    assert datetime.fromisoformat(workout["start"]) == fitdecode_truth(shared / RUN)["start"]
    assert len(show(fithub, workout["id"])["sources"]) == 2


@pytest.mark.parametrize("trim_first", [True, False], ids=["trimmed-first", "full-first"])
def test_trimmed_copy_joins_and_nothing_is_cut(fithub, made, shared, trim_first):
    order = [made["trim.tcx"], made["run.fit"]] if trim_first else [made["run.fit"], made["trim.tcx"]]
    for path in order:
        imported(fithub, path)
    [workout] = workouts(fithub)
    truth = fitdecode_truth(shared / RUN)
    assert datetime.fromisoformat(workout["start"]) == truth["start"]
    times = sorted(truth["records"])
    span = (times[-1] - times[0]).total_seconds()
    assert workout["elapsed_s"] == pytest.approx(span, abs=5.0)
    assert workout["samples"] >= len(times)


def test_positions_and_heart_rate_from_two_devices(fithub, made, shared):
    """Positions from one recorder, heart rate from another: one workout with both, each value
    where the watch recorded it."""
    summary = imported(fithub, made["positions.gpx"], made["hr.fit"])
    assert (summary["imported"], summary["merged"]) == (1, 1), summary
    [workout] = workouts(fithub)
    shown = show(fithub, workout["id"])
    assert {"lat_deg", "lon_deg", "hr_bpm"} <= set(shown["stream_channels"])
    by_name = {Path(s["name"]).name: s for s in shown["sources"]}
    assert shown["channel_sources"]["hr_bpm"] == by_name["hr.fit"]["key"]
    position = shown["channel_sources"].get("position", shown["channel_sources"].get("lat_deg"))
    assert position == by_name["positions.gpx"]["key"]
    assert "hr_bpm" in by_name["hr.fit"]["channels"]

    doc = exported(fithub, workout["id"])
    start = datetime.fromisoformat(doc["start"].replace("Z", "+00:00"))
    cols = doc["stream"]["columns"]
    truth = fitdecode_truth(shared / RUN)["records"]
    both = checked = 0
    for i, offset in enumerate(doc["stream"]["offsets_s"]):
        at = (start + timedelta(seconds=offset)).replace(microsecond=0)
        record = truth.get(at)
        hr, lat, lon = cols["hr_bpm"][i], cols["lat_deg"][i], cols["lon_deg"][i]
        if hr is not None and lat is not None:
            both += 1
        if record is None:
            continue
        checked += 1
        if hr is not None:
            assert hr == record["hr"], f"heart rate at {at}"
        if lat is None:
            continue
        if record["lat"] is not None:
            assert (lat, lon) == pytest.approx((record["lat"], record["lon"]), abs=1e-6), f"position at {at}"
        else:
            # The watch had no fix at this instant; the merge may place a fix recorded
            # within a couple of seconds (GPX cannot say "no fix here"), never another.
            near = [truth.get(at + timedelta(seconds=d)) for d in (-2, -1, 1, 2)]
            assert any(
                r and r["lat"] is not None and (lat, lon) == pytest.approx((r["lat"], r["lon"]), abs=1e-6)
                for r in near
            ), f"position at {at} matches no fix recorded within 2 s"
    truth_both = sum(1 for r in truth.values() if r["hr"] is not None and r["lat"] is not None)
    assert checked >= 0.95 * len(truth)
    assert both >= 0.95 * truth_both


# --------------------------------------------------------------------------- arrival order


SCENARIOS = {
    # one run reaching the hub four ways: watch, converter, timezone bug, cropped
    "one-run-four-roads": [["run.fit", "babel.gpx", "plus1h.tcx", "trim.tcx"]],
    # two workouts of one day, each arriving twice
    "morning-and-evening": [["run.fit", "trim.tcx"], ["evening.gpx", "evening_babel.tcx"]],
    # two recorders of one run, and a copy with its clock seven hours off
    "split-channels": [["positions.gpx", "hr.fit", "minus7h.tcx"]],
}
# Orders tried per scenario: all of them up to this many, else a fixed sample that
# always includes the given order and its reverse.
MAX_ORDERS = int(os.environ.get("FITHUB_DEDUPE_ORDERS", "12"))


def orders(names: list[str]) -> list[tuple[str, ...]]:
    every = list(itertools.permutations(names))
    if len(every) <= MAX_ORDERS:
        return every
    rest = every[1:-1]
    random.Random(20240611).shuffle(rest)
    return [every[0], every[-1], *rest[: MAX_ORDERS - 2]]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_import_order_does_not_matter(tmp_path, db_url, made, scenario):
    need_gpsbabel()
    groups = SCENARIOS[scenario]
    expected = sorted((frozenset(g) for g in groups), key=sorted)
    names = [n for g in groups for n in g]
    results: dict[tuple[str, ...], dict[frozenset[str], dict]] = {}
    for k, order in enumerate(orders(names)):
        fithub = reset(db_url, tmp_path, str(k))
        summary = imported(fithub, *(made[n] for n in order))
        # Every file is stored once; a file arriving before the copy that bridges it to
        # the others is counted as imported at its time, so the grouping is checked on
        # the final workouts below, not on the counts.
        assert summary["imported"] + summary["merged"] == len(names), (order, summary)
        assert partition(fithub) == expected, order
        streams = {}
        for w in workouts(fithub):
            group = frozenset(Path(s["name"]).name for s in show(fithub, w["id"])["sources"])
            streams[group] = rounded(exported(fithub, w["id"])["stream"])
        results[order] = streams
    reference_order, reference = next(iter(results.items()))
    for order, streams in results.items():
        for group in expected:
            assert streams[group] == reference[group], (
                f"{sorted(group)}: merged stream imported in order {order} differs from order {reference_order}"
            )


# --------------------------------------------------------------------------- what must not merge


def test_two_people_running_together(fithub, made):
    a = imported(fithub, made["run.fit"], person="alice")
    b = imported(fithub, made["fithub.tcx"], person="bob")
    assert (a["imported"], b["imported"], b["merged"]) == (1, 1, 0)
    listed = workouts(fithub)
    assert sorted(w["person"] for w in listed) == ["alice", "bob"]
    assert listed[0]["start"] == listed[1]["start"]
    assert [a["person"] for a in js(fithub("activities", "list", "--person", "bob", "--json"))] == ["bob"]


@pytest.mark.parametrize("pair", [
    ("run.fit", "evening.gpx"),  # the same route ridden again 9 h 13 min 27 s later
    ("first_half.tcx", "second_half.tcx"),  # back-to-back intervals in separate files
], ids=["morning-evening", "back-to-back"])
def test_separate_workouts_stay_apart(fithub, made, pair):
    summary = imported(fithub, *(made[n] for n in pair))
    assert (summary["imported"], summary["merged"]) == (2, 0), summary
    assert partition(fithub) == sorted((frozenset([n]) for n in pair), key=sorted)


# --------------------------------------------------------------------------- manual decisions


def _version(shown: dict, name: str) -> dict:
    [found] = [s for s in shown["sources"] if Path(s["name"]).name == name]
    return found


@pytest.mark.parametrize("how", ["key", "sha256", "name"])
def test_split_survives_reprocess_and_reimport(fithub, made, how):
    need_gpsbabel()
    imported(fithub, made["run.fit"], made["babel.gpx"])
    [workout] = workouts(fithub)
    listed = js(fithub("activities", "sources", str(workout["id"]), "--json"))
    assert sorted(Path(v["name"]).name for v in listed) == ["babel.gpx", "run.fit"]
    gpx = _version(show(fithub, workout["id"]), "babel.gpx")
    source = {"key": gpx["key"], "sha256": gpx["sha256"][:12], "name": gpx["name"]}[how]
    fithub("activities", "split", str(workout["id"]), source)
    apart = sorted([frozenset(["babel.gpx"]), frozenset(["run.fit"])], key=sorted)
    assert partition(fithub) == apart

    result = js(fithub("reprocess", "--json"))
    assert result["failed"] == []
    assert partition(fithub) == apart

    again = imported(fithub, made["run.fit"], made["babel.gpx"])
    assert again["duplicates"] == 2
    assert partition(fithub) == apart

    # A third copy joins one of the two, and the split pair stays apart.
    third = imported(fithub, made["babel.tcx"])
    assert (third["imported"], third["merged"]) == (0, 1), third
    groups = partition(fithub)
    assert len(groups) == 2 and not any({"babel.gpx", "run.fit"} <= g for g in groups), groups
    js(fithub("reprocess", "--json"))
    assert partition(fithub) == groups


def test_split_refuses_unknown_source(fithub, made):
    imported(fithub, made["run.fit"], made["fithub.gpx"])
    [workout] = workouts(fithub)
    result = fithub("activities", "split", str(workout["id"]), "no-such-file.gpx", ok=False)
    assert result.exit_code != 0
    assert "no-such-file.gpx" in result.output
    assert len(workouts(fithub)) == 1


def test_merge_by_hand_survives_reprocess_and_reimport(fithub, made):
    need_gpsbabel()
    imported(fithub, made["run.fit"], made["evening.gpx"])
    ids = [w["id"] for w in workouts(fithub)]
    assert len(ids) == 2
    fithub("activities", "merge", str(ids[0]), str(ids[1]))
    together = [frozenset(["evening.gpx", "run.fit"])]
    assert partition(fithub) == together

    assert js(fithub("reprocess", "--json"))["failed"] == []
    assert partition(fithub) == together
    assert imported(fithub, made["run.fit"], made["evening.gpx"])["duplicates"] == 2
    assert partition(fithub) == together

    # Another copy of the morning run finds the merged workout.
    later = imported(fithub, made["babel.gpx"])
    assert (later["imported"], later["merged"]) == (0, 1), later
    assert partition(fithub) == [frozenset(["babel.gpx", "evening.gpx", "run.fit"])]


# --------------------------------------------------------------------------- two importers at once


RACE_ROUNDS = int(os.environ.get("FITHUB_RACE_ROUNDS", "8"))


def _fresh_database(db_url: str, tmp_path: Path, k: int) -> tuple[str, object]:
    """A new empty database per round: its URL and a function that removes it."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / f'race-{k}.db'}", lambda: None
    base = sa.engine.make_url(db_url)
    name = f"{base.database}_race{k}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def test_two_processes_importing_copies_at_once(tmp_path, db_url, made):
    """Two importers store two different copies of one workout at the same moment: the
    database, not luck, must leave exactly one workout."""
    copy_a, copy_b = made["fithub.gpx"], made["fithub.tcx"]
    for k in range(RACE_ROUNDS):
        url, drop = _fresh_database(db_url, tmp_path, k)
        home = tmp_path / f"race-home-{k}"
        try:
            if k % 2:  # odd rounds race on an existing schema, even rounds on a brand-new database
                make_cli(home, url)("activities", "list")
            # Alternate which copy is launched first, so neither format always wins.
            order = (copy_a, copy_b) if k % 4 < 2 else (copy_b, copy_a)
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "cli", "--home", str(home), "--db", url, "import", str(p), "--json"],
                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )
                for p in order
            ]
            outputs = [p.communicate(timeout=120) for p in procs]
            for proc, (stdout, stderr) in zip(procs, outputs):
                assert proc.returncode == 0, f"round {k}: {stderr}"
            summaries = [json.loads(stdout) for stdout, _ in outputs]
            assert sorted((s["imported"], s["merged"]) for s in summaries) == [(0, 1), (1, 0)], (k, summaries)
            fithub = make_cli(home, url)
            assert partition(fithub) == [frozenset(["fithub.gpx", "fithub.tcx"])], f"round {k}"
        finally:
            drop()

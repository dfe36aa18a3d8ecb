"""End-to-end tests of the `fithub` command line, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import fitdecode
import pytest
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fithub(tmp_path, db_url):
    """Run `fithub --home H --db URL ...` in-process and return the result."""
    runner = CliRunner()
    home = tmp_path / "home"

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, ["--home", str(home), "--db", db_url, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        return result

    run.home = home
    return run


def _json(result) -> object:
    return json.loads(result.stdout)


def corpus_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in (".fit", ".gpx", ".tcx")
    )


# ---------------------------------------------------------------- the whole real corpus


def test_import_whole_corpus_then_reimport(fithub, shared):
    folders = [str(shared / d) for d in ("fit", "gpx", "tcx")]
    files = [p for d in folders for p in corpus_files(Path(d))]
    first = _json(fithub("import", *folders, "--json"))
    rejected = {r["path"]: r["reason"] for r in first["rejected"]}

    # Every file is accounted for, with the path as it was given.
    assert first["imported"] + first["merged"] + first["duplicates"] + len(rejected) == len(files)
    assert all(any(p.startswith(d + os.sep) for d in folders) for p in rejected)
    assert all(reason and "Traceback" not in reason for reason in rejected.values())

    # Every activity file outside broken/ and non_activity/ imports.
    expected_ok = [
        str(p) for p in files
        if "broken" not in p.parts and "non_activity" not in p.parts
        and not _gpx_without_track(p)
        and p.name not in PLACEHOLDER_TIMES
    ]
    assert not [p for p in expected_ok if p in rejected], {p: rejected[p] for p in expected_ok if p in rejected}

    # Non-activity FIT files are rejected, and the reason says why.
    for p in files:
        if "non_activity" in p.parts and str(p) in rejected:
            assert "not an activity" in rejected[str(p)] or "no activity" in rejected[str(p)], rejected[str(p)]
    non_activity = [p for p in files if "non_activity" in p.parts]
    assert sum(str(p) in rejected for p in non_activity) >= len(non_activity) - 1

    # GPX routes / files without timed tracks are rejected as not activities.
    route = str(shared / "gpx" / "gpxpy" / "route.gpx")
    assert route in rejected and "not an activity" in rejected[route]

    # The zero-byte file is rejected with a clear reason.
    empty = str(shared / "fit" / "broken" / "agpl" / "sportslib__empty-sessions.fit")
    assert "empty" in rejected[empty]

    # Importing everything again adds nothing.
    second = _json(fithub("import", *folders, "--json"))
    assert second["imported"] == 0
    assert second["duplicates"] == first["imported"] + first["merged"] + first["duplicates"]

    listed = _json(fithub("activities", "list", "--json"))
    assert len(listed) == first["activities"]
    for item in listed:
        assert {"id", "person", "sport", "start", "elapsed_s", "distance_m", "samples"} <= item.keys()
        assert datetime.fromisoformat(item["start"]).utcoffset().total_seconds() == 0


# Every point of this GPSBabel file is stamped 1901-12-13 (a placeholder for "no
# time"), so it is an untimed route, not a recording.
PLACEHOLDER_TIMES = {"Mojstrovka.gpx"}


def _gpx_without_track(path: Path) -> bool:
    if path.suffix.lower() != ".gpx":
        return False
    text = path.read_text(encoding="utf-8", errors="replace")
    return "<trkpt" not in text or "<time>" not in text.split("<trkpt", 1)[1]


def test_same_bytes_under_another_name_is_a_duplicate(fithub, shared, tmp_path):
    src = shared / "fit" / "fitparse__garmin-fenix-5-run.fit"
    copy = tmp_path / "renamed.bin.fit"
    copy.write_bytes(src.read_bytes())
    assert _json(fithub("import", str(src), "--json"))["imported"] == 1
    again = _json(fithub("import", str(copy), "--json"))
    assert (again["imported"], again["duplicates"]) == (0, 1)


# ---------------------------------------------------------------- values against an independent decode


def _fitdecode_session(path: Path) -> dict:
    with fitdecode.FitReader(str(path)) as reader:
        records = 0
        session = None
        hr = []
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage):
                if frame.name == "record":
                    records += 1
                    if frame.has_field("heart_rate") and frame.get_value("heart_rate") is not None:
                        hr.append(frame.get_value("heart_rate"))
                elif frame.name == "session" and session is None:
                    session = {f.name: f.value for f in frame.fields}
    return {"records": records, "session": session, "max_hr": max(hr) if hr else None}


@pytest.mark.parametrize("name", [
    "fitparse__garmin-fenix-5-run.fit",
    "fittool__palisade.fit",
    "tormoder__bpg-garmin-edge530.fit",
])
def test_show_json_matches_independent_decode(fithub, shared, name):
    path = shared / "fit" / name
    fithub("import", str(path))
    [item] = _json(fithub("activities", "list", "--json"))
    truth = _fitdecode_session(path)
    assert item["samples"] == truth["records"]
    assert item["distance_m"] == pytest.approx(truth["session"]["total_distance"], rel=1e-6)
    start = truth["session"]["start_time"]
    assert datetime.fromisoformat(item["start"]) == start.replace(tzinfo=start.tzinfo)
    shown = _json(fithub("activities", "show", str(item["id"]), "--json"))
    assert shown["max_hr_bpm"] == truth["session"].get("max_heart_rate", truth["max_hr"])
    assert len(shown["laps"]) >= 1
    assert shown["sources"][0]["name"] == str(path)


def test_show_strength_sets(fithub, shared):
    path = shared / "fit" / "fitparser-js__failed.fit"
    fithub("import", str(path))
    [item] = _json(fithub("activities", "list", "--json"))
    shown = _json(fithub("activities", "show", str(item["id"]), "--json"))
    assert len(shown["sets"]) == 1
    text = fithub("activities", "show", str(item["id"])).stdout
    assert "Strength sets" in text and "sources:" in text


# ---------------------------------------------------------------- archives, persons, filters


def test_zip_and_gzip_inputs(fithub, shared, tmp_path):
    run = shared / "fit" / "fitparse__garmin-fenix-5-run.fit"
    walk = shared / "fit" / "fitparse__garmin-fenix-5-walk.fit"
    gpx = shared / "gpx" / "gpxpy" / "track_with_speed.gpx"
    archive = tmp_path / "export.zip"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:  # Garmin-style nested upload zip
        z.writestr("uploads/walk.fit", walk.read_bytes())
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("Activity/run.fit", run.read_bytes())
        z.writestr("__MACOSX/Activity/._run.fit", b"\x00\x05\x16\x07 AppleDouble junk")
        z.writestr("UploadedFiles_Part1.zip", inner.getvalue())
        z.writestr("notes.txt", b"not an activity and not looked at")
    gz = tmp_path / "track.gpx.gz"
    gz.write_bytes(gzip.compress(gpx.read_bytes()))
    bad_gz = tmp_path / "broken.fit.gz"
    bad_gz.write_bytes(gzip.compress(run.read_bytes())[:-20])

    summary = _json(fithub("import", str(archive), str(gz), str(bad_gz), "--json"))
    assert summary["imported"] == 3, summary
    assert [r["path"] for r in summary["rejected"]] == [str(bad_gz)]
    assert "gzip" in summary["rejected"][0]["reason"]
    again = _json(fithub("import", str(archive), "--json"))
    assert again["duplicates"] == 2


def test_person_and_filters(fithub, shared):
    fithub("import", "--person", "alice", str(shared / "fit" / "fitparse__garmin-fenix-5-run.fit"))
    fithub("import", "--person", "bob", str(shared / "fit" / "fitparse__garmin-fenix-5-walk.fit"))
    fithub("import", "--person", "bob", str(shared / "fit" / "fittool__palisade.fit"))
    assert [a["person"] for a in _json(fithub("activities", "list", "--person", "alice", "--json"))] == ["alice"]
    assert len(_json(fithub("activities", "list", "--person", "bob", "--json"))) == 2
    assert [a["sport"] for a in _json(fithub("activities", "list", "--sport", "cycling", "--json"))] == ["cycling"]
    everything = _json(fithub("activities", "list", "--json"))
    first = min(datetime.fromisoformat(a["start"]) for a in everything)
    day = first.date().isoformat()
    on_day = _json(fithub("activities", "list", "--from", day, "--to", day, "--json"))
    assert on_day and all(datetime.fromisoformat(a["start"]).date() == first.date() for a in on_day)
    assert set(fithub("persons").stdout.split()) == {"alice", "bob"}


def test_rejections_name_the_path_as_given(fithub, tmp_path):
    junk = tmp_path / "notes.fit"
    junk.write_bytes(b"this is not a FIT file at all" * 4)
    missing = str(tmp_path / "nope.fit")
    summary = _json(fithub("import", str(junk), missing, "--json"))
    reasons = {r["path"]: r["reason"] for r in summary["rejected"]}
    assert set(reasons) == {str(junk), missing}
    assert "no such file" in reasons[missing]
    table = fithub("import", str(junk)).stdout
    assert "rejected" in table and str(junk) in table


def test_unknown_activity_is_a_clear_error(fithub):
    result = fithub("activities", "show", "999", ok=False)
    assert result.exit_code == 1
    assert "999" in result.output


# ---------------------------------------------------------------- round trips through export


ROUND_TRIP = [
    "fit/fitparse__garmin-fenix-5-run.fit",
    "fit/fittool__palisade.fit",  # 26 samples before the first GPS fix
    "fit/runpandas__fr645m-run.fit",
    "gpx/agpl/sportslib__mapstogpx-swim_6090674952.gpx",
    "tcx/tcxparser__test.tcx",
]


def _import_fresh(tmp_path, path):
    runner = CliRunner()
    args = ["--home", str(tmp_path / "fresh"), "--db", f"sqlite:///{tmp_path / 'fresh.db'}"]
    result = runner.invoke(app, [*args, "import", str(path), "--json"], catch_exceptions=False)
    assert json.loads(result.stdout)["imported"] == 1, result.stdout
    [back] = json.loads(runner.invoke(app, [*args, "activities", "list", "--json"]).stdout)
    return back


@pytest.mark.parametrize("relpath", ROUND_TRIP)
@pytest.mark.parametrize("fmt", ["fit", "gpx", "tcx"])
def test_export_round_trip(fithub, shared, tmp_path, relpath, fmt):
    fithub("import", str(shared / relpath))
    [original] = _json(fithub("activities", "list", "--json"))
    out = tmp_path / f"out.{fmt}"
    fithub("export", str(original["id"]), "--format", fmt, "-o", str(out))
    expected = dict(original)
    if fmt == "gpx":
        # GPX can only hold points with a position: the round trip keeps every
        # positioned sample, so the track starts at the first fix.
        stream = json.loads(fithub("export", str(original["id"]), "--format", "json", "-o", "-").stdout)["stream"]
        fixes = [t for t, lat in zip(stream["offsets_s"], stream["columns"]["lat_deg"]) if lat is not None]
        start = datetime.fromisoformat(original["start"]) + timedelta(seconds=fixes[0])
        expected.update(samples=len(fixes), start=start.isoformat().replace("+00:00", "Z"))
        expected["elapsed_s"] = fixes[-1] - fixes[0]
        assert len(fixes) >= 0.95 * original["samples"]
    back = _import_fresh(tmp_path, out)

    assert datetime.fromisoformat(back["start"]) == datetime.fromisoformat(expected["start"])
    # FIT carries total_elapsed_time; GPX and TCX only the point times, which can
    # end a few seconds before the device stopped its clock.
    assert back["elapsed_s"] == pytest.approx(expected["elapsed_s"], rel=0.005, abs=1.0)
    assert back["distance_m"] == pytest.approx(original["distance_m"], rel=0.005)
    assert back["samples"] == expected["samples"]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_json_csv(fithub, shared, tmp_path, fmt):
    path = shared / "fit" / "fitparse__garmin-fenix-5-run.fit"
    fithub("import", str(path))
    [item] = _json(fithub("activities", "list", "--json"))
    out = tmp_path / f"a.{fmt}"
    fithub("export", str(item["id"]), "--format", fmt, "-o", str(out))
    if fmt == "json":
        doc = json.loads(out.read_text())
        assert len(doc["stream"]["offsets_s"]) == item["samples"]
    else:
        lines = out.read_text().splitlines()
        assert lines[0].startswith("time,offset_s")
        assert len(lines) == item["samples"] + 1


def test_export_all(fithub, shared, tmp_path):
    fithub("import", str(shared / "fit" / "fitparse__garmin-fenix-5-run.fit"),
           str(shared / "fit" / "fitparse__garmin-fenix-5-walk.fit"))
    out = tmp_path / "backup"
    fithub("export", "--all", "--format", "gpx", str(out))
    assert len(list(out.glob("*.gpx"))) == 2


def test_reprocess_keeps_everything(fithub, shared):
    fithub("import", str(shared / "fit" / "fitparse__garmin-fenix-5-run.fit"), str(shared / "tcx" / "tcxparser__test.tcx"))
    before = _json(fithub("activities", "list", "--json"))
    result = _json(fithub("reprocess", "--json"))
    assert result["files"] == 2 and result["failed"] == []
    after = _json(fithub("activities", "list", "--json"))
    strip = lambda rows: sorted((r["start"], r["distance_m"], r["samples"]) for r in rows)  # noqa: E731
    assert strip(after) == strip(before)


# ---------------------------------------------------------------- the installed command


def test_console_script_help():
    exe = Path(sys.executable).with_name("fithub")
    if not exe.exists():
        pytest.skip("fithub console script not installed in this environment")
    for args in ([], ["import"], ["activities", "list"], ["activities", "show"], ["export"], ["reprocess"]):
        proc = subprocess.run([str(exe), *args, "--help"], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "Example" in proc.stdout or "fithub" in proc.stdout

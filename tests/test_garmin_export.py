"""The Garmin Connect account export (connectors/garmin/connect_export.py): a zip
generated from real FIT files (fixtures/make_garmin_export.py), on SQLite and the
real PostgreSQL."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

import hub.inputs
from connectors.garmin import CONNECT_EXPORT, SUMMARY, connect_export
from connectors.garmin.formats import decoders
from hub.errors import DecodeError
from hub.plugins import Hub, StreamImporter, discover
from hub.reprocess import reprocess_all
from hub.storage import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import make_garmin_export as gx  # noqa: E402


@pytest.fixture
def export(tmp_path: Path, shared: Path) -> Path:
    return gx.build_export(shared / "fit", tmp_path / "garmin_export.zip")


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    with Store(db_url, tmp_path / "home") as s:
        yield s


def head(path: Path) -> bytes:
    return path.read_bytes()[:65536]


def test_registered_as_stream_importer() -> None:
    assert isinstance(CONNECT_EXPORT, StreamImporter)
    assert discover("decoders")["garmin_connect_export"].loaded is CONNECT_EXPORT


def test_claims_only_connect_exports(export: Path, tmp_path: Path, shared: Path) -> None:
    assert CONNECT_EXPORT.claims(export, head(export))
    plain = tmp_path / "rides.zip"
    with zipfile.ZipFile(plain, "w") as z:
        z.write(shared / "fit" / "fit4s__610464.fit", "ride.fit")
    assert not CONNECT_EXPORT.claims(plain, head(plain))
    fit = shared / "fit" / "fit4s__610464.fit"
    assert not CONNECT_EXPORT.claims(fit, head(fit))


def test_import_counts_and_reimport_adds_nothing(store: Store, export: Path) -> None:
    done: list[tuple[int, int]] = []
    report = CONNECT_EXPORT.import_path(export, store, person="alice", source="cli", progress=lambda d, t: done.append((d, t)))
    e = gx.EXPECTED
    assert len(report.activity_ids) == e.uploads + e.summary_only
    assert len(report.merged_ids) == e.summary_merges
    assert len(report.warnings) == e.warnings and "no startTimeGmt" in report.warnings[0]
    assert done and done[-1][0] == done[-1][1]
    workouts = store.list_activities()
    assert len(workouts) == e.workouts
    assert {w.activity.person for w in workouts} == {"alice"}
    # The FIT-backed workouts carry both versions: the FIT file and the summary entry.
    by_sources = sorted(len(store.sources(w.id)) for w in workouts)
    assert by_sources == [1, 1, 1, 2, 2]
    formats = sorted(f.fmt for f in store.files())
    assert formats == ["fit"] * 3 + ["garmin_summary"] * 4

    again = CONNECT_EXPORT.import_path(export, store, person="alice", source="cli")
    assert (again.activity_ids, again.merged_ids, again.skipped) == ([], [], e.uploads + e.summary_merges + e.summary_only)
    assert len(store.list_activities()) == e.workouts
    assert len(store.files()) == 7


def test_summary_only_entry_in_si_units(store: Store, export: Path) -> None:
    CONNECT_EXPORT.import_path(export, store, person="alice", source="cli")
    [run] = [w.activity for w in store.list_activities() if w.activity.start == gx.MANUAL_RUN["start"]]
    assert (run.sport, run.sub_sport) == ("running", "treadmill")
    assert run.utc_offset_s == 3600
    assert run.elapsed_s == pytest.approx(1650.0) and run.moving_s == pytest.approx(1640.0)
    assert run.distance_m == pytest.approx(5000.0)
    assert run.avg_speed_mps == pytest.approx(5000.0 / 1650.0)
    assert run.energy_j == pytest.approx(410.0 * 4184.0)
    assert (run.avg_hr_bpm, run.max_hr_bpm) == (151, 172)
    assert run.name == "Treadmill 5k"


def test_merged_summary_keeps_the_fit_samples(store: Store, export: Path) -> None:
    CONNECT_EXPORT.import_path(export, store, person="alice", source="cli")
    ride = next(w for w in store.list_activities() if w.activity.sport == "cycling")
    full = store.get_activity(ride.id)
    assert full.sample_count > 100  # the FIT file's records, not the summary's none
    assert full.activity.start == datetime(2015, 10, 13, 15, 43, 15, tzinfo=timezone.utc)


def test_through_a_watch_folder(db_url: str, tmp_path: Path, export: Path) -> None:
    from connectors.files.watch import WatchFolder

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    export.rename(inbox / export.name)
    with Store(db_url, tmp_path / "home") as store:
        source = WatchFolder("inbox", {"path": str(inbox), "settle_s": 0}, Hub(store=store, home=tmp_path / "home"), importers=[CONNECT_EXPORT])
        assert source.poll() == 1
        assert len(store.list_activities()) == gx.EXPECTED.workouts


def test_reprocess_finds_the_summary_decoder(store: Store, export: Path) -> None:
    CONNECT_EXPORT.import_path(export, store, person="alice", source="cli")
    result = reprocess_all(store, decoders())
    assert result["failed"] == [] and result["files"] == 7
    assert len(store.list_activities()) == gx.EXPECTED.workouts
    assert SUMMARY.format == "garmin_summary"


def test_not_a_zip_is_a_decode_error(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "export.zip"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(DecodeError, match="export.zip"):
        CONNECT_EXPORT.import_path(bad, store, person="alice", source="cli")


def _export_with(tmp_path: Path, members: dict[str, bytes], summaries: bytes) -> Path:
    out = tmp_path / "hostile.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("DI_CONNECT/DI-Connect-Fitness/x_summarizedActivities.json", summaries)
        for name, data in members.items():
            z.writestr(name, data)
    return out


def _nested(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def test_bombs_and_traversal_are_refused_and_the_rest_imports(store: Store, tmp_path: Path, shared: Path, monkeypatch) -> None:
    # Small limits stand in for the real ones (8 GiB nested, 256 MiB per member).
    monkeypatch.setattr(connect_export, "MAX_NESTED_BYTES", 2 * 2**20)
    monkeypatch.setattr(hub.inputs, "MAX_MEMBER_BYTES", 2**20)
    ride = (shared / "fit" / "fitparse__2015-10-13-08-43-15.fit").read_bytes()
    summaries = gx.summaries(shared / "fit")

    hostile = _export_with(
        tmp_path,
        {
            # A nested part (stored, so the outer zip squeezes it) that inflates past the nested limit.
            "DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip": _nested({"a.fit": b"\0" * (3 * 2**20)}, zipfile.ZIP_STORED),
            # A good part with one member that inflates past the member limit.
            "DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part2.zip": _nested({"ride.fit": ride, "bomb.fit": b"\0" * (2 * 2**20)}),
            "../../etc/UploadedFiles_evil.zip": _nested({"ride.fit": ride}),
        },
        json.dumps([{"summarizedActivitiesExport": summaries}]).encode(),
    )
    report = CONNECT_EXPORT.import_path(hostile, store, person="alice", source="cli")
    text = "\n".join(report.warnings)
    assert "Part1.zip: cannot read nested zip: member is 3145" in text and "over the 2 MiB limit" in text
    [bomb] = [w for w in report.warnings if "bomb.fit" in w]
    assert "over the 1 MiB limit" in bomb
    assert "../../etc/UploadedFiles_evil.zip: unsafe member name refused" in text
    # The good ride and the summaries still made it: ride (FIT, merged with its
    # summary), the run summary (its FIT was in the refused part), manual run, yoga.
    assert len(store.list_activities()) == 4


def test_cli_import_of_the_export(db_url: str, tmp_path: Path, export: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    def run(*args: str) -> dict:
        result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "--db", db_url, "import", "--json", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    first = run(str(export))
    e = gx.EXPECTED
    assert (first["imported"], first["activities"], first["merged_activities"]) == (1, e.uploads + e.summary_only, e.summary_merges)
    again = run(str(export))
    assert (again["imported"], again["duplicates"], again["activities"]) == (0, 1, 0)

"""The decoder registry: built-in formats, plugin formats found through entry
points, and plugins that refine a built-in format (Garmin monitoring/sleep FIT)."""

from __future__ import annotations

from pathlib import Path

from hub.decoding import registry
from hub.pipeline import Imported, Rejected, ingest
from hub.storage import Store


def test_registry_routes_by_content(own: Path, shared: Path) -> None:
    reg = registry()
    assert {"fit", "gpx", "tcx", "garmin_json", "garmin_monitoring", "garmin_sleep"} <= set(reg.decoders)
    monitor = (own / "garmin" / "monitor_b.fit").read_bytes()
    sleep = (own / "garmin" / "sleep.fit").read_bytes()
    assert reg.sniff("x.fit", monitor) == "garmin_monitoring"
    assert reg.sniff("x.fit", sleep) == "garmin_sleep"
    assert reg.sniff("run.fit", (own / "samples" / "strength_sets.fit").read_bytes()) == "fit"
    assert reg.sniff("run.gpx", (own / "samples" / "morning_run.gpx").read_bytes()) == "gpx"
    detail = next(shared.joinpath("garmin").rglob("*.json"))
    assert reg.sniff(detail.name, detail.read_bytes()) in ("garmin_json", None)
    assert reg.sniff("notes.txt", b"hello") is None
    assert [s.format for s in reg.streams] and all(hasattr(s, "import_path") for s in reg.streams)


def test_monitoring_file_through_the_pipeline_becomes_measurements(own: Path, tmp_path: Path) -> None:
    reg = registry()
    with Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path) as store:
        data = (own / "garmin" / "monitor_b.fit").read_bytes()
        outcome = ingest(store, data, name="Monitor/M1.fit", decoders=reg.decoders, sniff=reg.sniff)
        assert isinstance(outcome, Imported) and outcome.measurements > 0 and not outcome.activity_ids
        kinds = {m.kind for m in store.measurements()}
        assert "steps" in kinds
    # The built-in decoders alone refuse it: the plugin is what makes it work.
    builtin = registry(plugins=False)
    with Store(f"sqlite:///{tmp_path / 'other.sqlite'}", tmp_path / "other") as store:
        again = ingest(store, data, name="M1.fit", decoders=builtin.decoders, sniff=builtin.sniff)
        assert isinstance(again, Rejected)

"""The Garmin USB source (connectors/garmin/usb.py) on a watch-like folder built from
real FIT files of the corpus plus the synthetic monitoring and sleep files, on
SQLite and the real PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.garmin.usb import GarminUsb
from hub.errors import SourceUnavailable
from hub.plugins import Hub
from hub.storage import Store
from hub.storage.schema import ingest_state, raw_files

# Three small, unrelated real activities (different days, devices, sports).
ACTIVITIES = [
    "fit/fitparse__garmin-fenix-5-run.fit",
    "fit/fit4s__610464.fit",
    "fit/fitparse__2015-10-13-08-43-15.fit",
]
MONITOR_MEASUREMENTS = 23  # 7 intervals + 2 day totals + 10 HR + 3 stress + 1 resting HR
SLEEP_MEASUREMENTS = 5


@pytest.fixture
def hub(db_url: str, tmp_path: Path):
    store = Store(db_url, tmp_path / "home")
    yield Hub(store=store, home=tmp_path / "home")
    store.close()


def build_watch(mount: Path, shared: Path, own: Path, *, garmin: str = "GARMIN", names=("Activity", "Monitor", "Sleep")) -> Path:
    """A watch's USB drive: activities, one monitoring file, one sleep file."""
    activity, monitor, sleep = (mount / garmin / n for n in names)
    for folder in (activity, monitor, sleep, mount / garmin / "Settings"):
        folder.mkdir(parents=True)
    for i, rel in enumerate(ACTIVITIES):
        shutil.copyfile(shared / rel, activity / f"2024-01-0{i + 1}-10-00-00.fit")
    shutil.copyfile(own / "garmin" / "monitor_b.fit", monitor / "A4A10000.FIT")
    shutil.copyfile(own / "garmin" / "sleep.fit", sleep / "2024-04-11-05-00-00.fit")
    # Not imported: settings are not in the configured folders.
    shutil.copyfile(shared / "fit/non_activity/fitparse__Settings.fit", mount / garmin / "Settings" / "Settings.fit")
    return mount


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_first_poll_imports_all_second_nothing(hub: Hub, tmp_path: Path, shared: Path, own: Path) -> None:
    mount = build_watch(tmp_path / "watch", shared, own)
    before = snapshot(mount)
    source = GarminUsb("fenix", {"path": str(mount)}, hub)

    assert source.poll() == 5
    assert len(hub.store.list_activities()) == 3
    assert len(hub.store.measurements(kind="steps")) == 7
    assert len(hub.store.measurements()) == MONITOR_MEASUREMENTS + SLEEP_MEASUREMENTS
    formats = sorted(f.fmt for f in hub.store.files())
    assert formats == ["fit", "fit", "fit", "garmin_monitoring", "garmin_sleep"]
    assert count(hub.store, ingest_state) == 5

    assert source.poll() == 0
    assert count(hub.store, raw_files) == 5
    assert snapshot(mount) == before  # the watch's files are never touched


def test_second_poll_does_not_read_unchanged_files(hub: Hub, tmp_path: Path, shared: Path, own: Path) -> None:
    mount = build_watch(tmp_path / "watch", shared, own)
    source = GarminUsb("fenix", {"path": str(mount)}, hub)
    assert source.poll() == 5
    # Replace an activity's bytes with another real activity of the same size...
    target = mount / "GARMIN" / "Activity" / "2024-01-01-10-00-00.fit"
    st = target.stat()
    other = (shared / "fit/fitparse__garmin-fenix-5-bike.fit").read_bytes()
    other = (other + b"\0" * st.st_size)[: st.st_size]
    target.write_bytes(other)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    # ...keeping size and mtime: a poll that re-hashed would notice and import it.
    assert source.poll() == 0
    assert count(hub.store, raw_files) == 5


def test_a_new_file_alone_is_imported(hub: Hub, tmp_path: Path, shared: Path, own: Path) -> None:
    mount = build_watch(tmp_path / "watch", shared, own)
    source = GarminUsb("fenix", {"path": str(mount)}, hub)
    assert source.poll() == 5
    shutil.copyfile(shared / "fit/fitparse__garmin-fenix-5-walk.fit", mount / "GARMIN" / "Activity" / "2024-02-01-07-00-00.fit")
    assert source.poll() == 1
    assert len(hub.store.list_activities()) == 4
    with hub.store.engine.connect() as conn:
        paths = set(conn.execute(sa.select(ingest_state.c.path).where(ingest_state.c.source == "garmin_usb:fenix")).scalars())
    assert "GARMIN/Activity/2024-02-01-07-00-00.fit" in paths and len(paths) == 6
    assert source.poll() == 0


def test_known_bytes_under_a_new_name_are_not_imported_again(hub: Hub, tmp_path: Path, shared: Path, own: Path) -> None:
    mount = build_watch(tmp_path / "watch", shared, own)
    source = GarminUsb("fenix", {"path": str(mount)}, hub)
    assert source.poll() == 5
    activity = mount / "GARMIN" / "Activity"
    shutil.copyfile(activity / "2024-01-01-10-00-00.fit", activity / "copy.fit")
    assert source.poll() == 0
    assert count(hub.store, raw_files) == 5


@pytest.mark.parametrize(
    "garmin,names",
    [
        ("garmin", ("activity", "monitor", "sleep")),
        ("Garmin", ("ACTIVITY", "MONITOR", "SLEEP")),
        ("Primary/GARMIN", ("Activity", "Monitor", "Sleep")),
        ("primary/garmin", ("Activity", "MONITOR", "sleep")),
    ],
)
def test_folder_name_variants(hub: Hub, tmp_path: Path, shared: Path, own: Path, garmin: str, names) -> None:
    mount = build_watch(tmp_path / "watch", shared, own, garmin=garmin, names=names)
    assert GarminUsb("fenix", {"path": str(mount)}, hub).poll() == 5


def test_only_configured_folders(hub: Hub, tmp_path: Path, shared: Path, own: Path) -> None:
    mount = build_watch(tmp_path / "watch", shared, own)
    source = GarminUsb("fenix", {"path": str(mount), "folders": ["activity"], "person": "alice"}, hub)
    assert source.poll() == 3
    assert hub.store.measurements() == []
    assert {a.activity.person for a in hub.store.list_activities()} == {"alice"}


def test_unmounted_watch_is_source_unavailable(hub: Hub, tmp_path: Path) -> None:
    gone = tmp_path / "media" / "GARMIN"
    with pytest.raises(SourceUnavailable, match=str(gone)):
        GarminUsb("fenix", {"path": str(gone)}, hub).poll()
    empty = tmp_path / "mnt"  # an empty mount point: the watch is not plugged in
    empty.mkdir()
    with pytest.raises(SourceUnavailable, match="no GARMIN folder"):
        GarminUsb("fenix", {"path": str(empty)}, hub).poll()


def test_damaged_file_is_rejected_once_and_others_import(hub: Hub, tmp_path: Path, shared: Path, own: Path) -> None:
    mount = build_watch(tmp_path / "watch", shared, own)
    (mount / "GARMIN" / "Activity" / "broken.fit").write_bytes(b"\x0e\x10" + b"\0" * 30)
    source = GarminUsb("fenix", {"path": str(mount)}, hub)
    assert source.poll() == 5
    assert source.stats["rejected"] == 1
    with hub.store.engine.connect() as conn:
        states = dict(conn.execute(sa.select(ingest_state.c.path, ingest_state.c.state)).all())
    assert states["GARMIN/Activity/broken.fit"] == "rejected"
    assert source.poll() == 0 and source.stats["rejected"] == 1  # not tried again


def test_path_option_is_required(hub: Hub) -> None:
    with pytest.raises(ValueError, match="path"):
        GarminUsb("fenix", {}, hub)
    assert GarminUsb.OPTIONS["path"].required
    assert GarminUsb.OPTIONS["interval_s"].default == 60


def test_growing_monitoring_file_adds_only_new_measurements(hub: Hub, tmp_path: Path, own: Path) -> None:
    import sys

    sys.path.insert(0, str(own))
    import make_garmin_fit as fx

    monitor = tmp_path / "watch" / "GARMIN" / "Monitor"
    monitor.mkdir(parents=True)
    target = monitor / "A4A10000.FIT"
    target.write_bytes(fx.monitor_b(until=fx._t(19, 45)))
    source = GarminUsb("fenix", {"path": str(tmp_path / "watch")}, hub)
    assert source.poll() == 1
    early = hub.store.measurements()
    assert {m.time: m.value for m in early if m.kind == "steps"} == {
        t: v for t, v in fx.EXPECTED_STEP_INTERVALS.items() if t <= fx._t(19, 45)
    }
    target.write_bytes(fx.monitor_b())  # the watch rewrote the day's file, longer
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    assert source.poll() == 1
    steps = hub.store.measurements(kind="steps")
    assert {m.time: m.value for m in steps} == fx.EXPECTED_STEP_INTERVALS  # none doubled
    # Everything of the full file once, plus the early file's running total at 19:30.
    assert len(hub.store.measurements()) == MONITOR_MEASUREMENTS + 1

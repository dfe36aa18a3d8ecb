"""Watch folders (connectors/files/watch.py) on real files, real processes and both
databases: stability, archive/keep/quarantine, and finishing after a crash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.files import decoders, sniff
from connectors.files.stability import FileSig, SettleTracker, open_for_writing, proc_available
from connectors.files.watch import WatchFolder
from hub.errors import DecodeError, SourceUnavailable
from hub.pipeline import ingest
from hub.plugins import Hub, StreamReport
from hub.storage import Store
from hub.storage.daemon_rows import IngestMark
from hub.storage.schema import ingest_state, raw_files, workouts

RUN_FIT = "fit/fit4s__610464.fit"  # Forerunner 235, a small clean activity
RIDE_FIT = "fit/fitparse__2015-10-13-08-43-15.fit"  # Edge 200 ride
SETTINGS_FIT = "fit/non_activity/fitparse__Settings.fit"  # valid FIT, not an activity


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def rows(store: Store, table: sa.Table) -> list:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(table)).all()


def count(store: Store, table: sa.Table) -> int:
    return len(rows(store, table))


def state_of(store: Store, digest: str):
    with store.engine.connect() as conn:
        return conn.execute(sa.select(ingest_state).where(ingest_state.c.sha256 == digest)).first()


def files_under(folder: Path) -> list[str]:
    # os.walk, not rglob: the watch removes emptied sub-folders while we look, and
    # os.walk skips a folder that vanished instead of raising.
    return sorted(
        (Path(root) / name).relative_to(folder).as_posix() for root, _, names in os.walk(folder) for name in names
    )


@pytest.fixture
def hub_at(tmp_path):
    """Make a Hub on a database URL with its home in tmp_path/home; closes stores."""
    stores = []

    def make(url: str) -> Hub:
        home = tmp_path / "home"
        store = Store(url, home)
        stores.append(store)
        return Hub(store=store, home=home)

    yield make
    for store in stores:
        store.close()


def watch(hub: Hub, importers=(), **options) -> WatchFolder:
    options.setdefault("settle_s", 0)
    return WatchFolder("inbox", options, hub, importers=list(importers))


def drop(src: Path, inbox: Path, rel: str | None = None) -> Path:
    dest = inbox / (rel or src.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


# -- stability -------------------------------------------------------------------


def test_settle_tracker_waits_for_unchanged_size_and_mtime():
    now = [100.0]
    tracker = SettleTracker(5, clock=lambda: now[0])
    assert tracker.update({"a": FileSig(10, 1)}) == []
    now[0] += 4.9
    assert tracker.update({"a": FileSig(10, 1)}) == []
    now[0] += 0.2
    assert tracker.update({"a": FileSig(10, 1)}) == ["a"]
    # Growing again restarts the clock; a vanished path is forgotten.
    assert tracker.update({"a": FileSig(20, 2)}) == []
    now[0] += 5
    assert tracker.update({}) == []
    assert tracker.update({"a": FileSig(20, 2)}) == []


def test_file_written_slowly_in_chunks_is_not_taken_until_stable(shared, tmp_path, hub_at):
    hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")
    folder = watch(hub, settle_s=0.6)
    data = (shared / RIDE_FIT).read_bytes()
    target = folder.root / "slow.fit"
    done = threading.Event()

    def writer():
        # Reopened for every chunk, so only the settle time (not /proc) can tell
        # the file is unfinished between chunks.
        for i in range(0, len(data), 512):
            with open(target, "ab") as fh:
                fh.write(data[i : i + 512])
            time.sleep(0.05)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    polls = 0
    while not done.is_set():
        assert folder.poll() == 0, "took a file that was still being written"
        polls += 1
        time.sleep(0.1)
    thread.join()
    assert polls >= 5
    assert folder.poll() == 0  # complete now, but not yet settled
    time.sleep(0.7)
    assert folder.poll() == 1
    assert folder.stats["imported"] == 1
    assert (folder.archive_dir / "slow.fit").read_bytes() == data
    assert count(hub.store, workouts) == 1


@pytest.mark.skipif(not proc_available(), reason="needs Linux /proc to see other processes' open files")
def test_file_held_open_for_writing_by_another_process_is_not_taken(shared, tmp_path, hub_at):
    hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")
    folder = watch(hub)
    target = folder.root / "held.fit"
    data = (shared / RUN_FIT).read_bytes()
    # A separate process writes the whole file, flushes, and keeps it open (as a
    # copier that has not closed yet), until told to finish.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; f = open(sys.argv[1], 'wb'); f.write(sys.stdin.buffer.read(int(sys.argv[2]))); f.flush(); print('ok', flush=True); sys.stdin.readline(); f.close()", str(target), str(len(data))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        holder.stdin.write(data)
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == b"ok"
        assert open_for_writing([str(target)]) == {str(target)}
        for _ in range(3):
            assert folder.poll() == 0
            time.sleep(0.05)
        assert target.exists()
        holder.stdin.write(b"\n")
        holder.stdin.flush()
        assert holder.wait(10) == 0
    finally:
        holder.kill()
        holder.wait()
    assert open_for_writing([str(target)]) == set()
    assert folder.poll() == 1
    assert (folder.archive_dir / "held.fit").read_bytes() == data


def test_open_for_reading_does_not_block(tmp_path):
    target = tmp_path / "x.fit"
    target.write_bytes(b"abc")
    with open(target, "rb"):
        assert open_for_writing([str(target)]) == set()
    with open(target, "ab"):
        assert open_for_writing([str(target)]) == ({str(target)} if proc_available() else set())


def test_without_proc_the_settle_time_decides(shared, tmp_path, hub_at):
    hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")
    folder = WatchFolder("inbox", {"settle_s": 0}, hub, importers=[], proc=str(tmp_path / "no-proc"))
    target = drop(shared / RUN_FIT, folder.root)
    with open(target, "ab"):  # invisible without /proc
        assert folder.poll() == 1


def test_hidden_partial_and_nested_archive_files_are_ignored(shared, tmp_path, hub_at):
    hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")
    root = tmp_path / "watched"
    root.mkdir()
    folder = watch(hub, path=str(root), archive_dir=str(root / "done"), quarantine_dir=str(root / "bad"))
    (root / "done").mkdir()
    (root / "bad").mkdir()
    for name in (".hidden.fit", "ride.fit.part", "ride.fit.tmp", "ride.fit.crdownload", "done/old.fit", "bad/x.fit", ".sync/ride.fit"):
        drop(shared / RUN_FIT, root, name)
    assert folder.poll() == 0
    assert folder.stats == dict.fromkeys(folder.stats, 0)
    drop(shared / RUN_FIT, root, "sub/ride.fit")
    assert folder.poll() == 1
    assert (root / "done" / "sub" / "ride.fit").exists()
    assert not (root / "sub").exists()  # emptied sub-folder removed


# -- archive, keep, quarantine ---------------------------------------------------------


def test_archive_mode_imports_moves_and_records(shared, db_url, hub_at):
    hub = hub_at(db_url)
    folder = watch(hub)
    drop(shared / RUN_FIT, folder.root, "2024/june/run.fit")
    drop(shared / RIDE_FIT, folder.root, "ride.fit")
    drop(shared / SETTINGS_FIT, folder.root, "2024/settings.fit")
    assert folder.poll() == 3
    assert folder.stats == {"imported": 2, "merged": 0, "duplicates": 0, "rejected": 1, "errors": 0}
    assert files_under(folder.archive_dir) == ["2024/june/run.fit", "ride.fit"]
    assert files_under(folder.quarantine_dir) == ["2024/settings.fit", "2024/settings.fit.reason"]
    assert files_under(folder.root) == [] and list(folder.root.iterdir()) == []
    assert count(hub.store, workouts) == 2
    run = state_of(hub.store, sha(shared / RUN_FIT))
    assert (run.state, run.source, run.path) == ("stored", "watch:inbox", "2024/june/run.fit")
    assert run.size == (shared / RUN_FIT).stat().st_size and run.mtime_ns
    bad = state_of(hub.store, sha(shared / SETTINGS_FIT))
    assert bad.state == "rejected" and "not an activity" in bad.reason
    # Nothing more to do on the next poll.
    assert folder.poll() == 0


def test_quarantine_reason_file(shared, db_url, hub_at):
    hub = hub_at(db_url)
    folder = watch(hub)
    drop(shared / SETTINGS_FIT, folder.root, "Settings.fit")
    (folder.root / "notes.txt").write_text("not a workout\n")
    (folder.root / "empty.fit").write_bytes(b"")
    assert folder.poll() == 3
    assert folder.stats["rejected"] == 3
    reason = (folder.quarantine_dir / "Settings.fit.reason").read_text()
    fields = dict(line.split(": ", 1) for line in reason.splitlines())
    assert "settings" in fields["reason"] and "not an activity" in fields["reason"]
    assert fields["sha256"] == sha(shared / SETTINGS_FIT)
    assert fields["source"] == "watch:inbox"
    assert fields["time"].endswith("Z")
    assert "unrecognised" in (folder.quarantine_dir / "notes.txt.reason").read_text()
    assert "empty file" in (folder.quarantine_dir / "empty.fit.reason").read_text()
    assert count(hub.store, raw_files) == 0


def test_keep_mode_leaves_files_and_does_not_read_them_again(shared, db_url, hub_at):
    hub = hub_at(db_url)
    watched = hub.home / "watch-device"
    watched.mkdir(parents=True)
    run = drop(shared / RUN_FIT, watched, "Activity/run.fit")
    drop(shared / SETTINGS_FIT, watched, "Settings/settings.fit")
    folder = watch(hub, path=str(watched), after="keep")
    assert folder.poll() == 2
    assert run.exists()  # kept in place
    assert files_under(folder.quarantine_dir) == ["Settings/settings.fit", "Settings/settings.fit.reason"]  # rejected: moved in both modes
    before = rows(hub.store, ingest_state)

    # Replace the bytes but keep size and mtime: a reader would see new content
    # and import or reject it; a skip by (path, size, mtime) never opens the file.
    st = run.stat()
    run.write_bytes(b"\0" * st.st_size)
    os.utime(run, ns=(st.st_atime_ns, st.st_mtime_ns))
    for fresh in (folder, watch(hub, path=str(watched), after="keep")):  # this run, and after a restart
        stats = dict(fresh.stats)
        assert fresh.poll() == 0
        assert fresh.stats == stats
    assert rows(hub.store, ingest_state) == before
    assert run.exists() and count(hub.store, raw_files) == 1

    # A real change (new mtime) is read again.
    os.utime(run, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert folder.poll() == 1
    assert folder.stats["rejected"] == 2  # the zeroed file is not a FIT file


# -- crash safety ---------------------------------------------------------------------


def test_crash_between_commit_and_move_finishes_without_second_import(shared, db_url, hub_at):
    hub = hub_at(db_url)
    folder = watch(hub)
    path = drop(shared / RUN_FIT, folder.root, "sub/run.fit")
    st = path.stat()
    data = path.read_bytes()
    # What a poll does up to its commit, then "crashes" before moving the file.
    outcome = ingest(
        hub.store, data, name="sub/run.fit", decoders=decoders(), sniff=sniff, source="watch:inbox",
        ingest_mark=IngestMark("watch:inbox", "sub/run.fit", st.st_size, st.st_mtime_ns),
    )
    assert outcome.activity_ids
    assert state_of(hub.store, sha(path)).state == "stored"
    events = count(hub.store, sa.Table("outbox_events", sa.MetaData(), autoload_with=hub.store.engine))

    restarted = watch(hub)
    assert restarted.poll() == 1
    assert restarted.stats["duplicates"] == 1 and restarted.stats["imported"] == 0
    assert files_under(restarted.archive_dir) == ["sub/run.fit"]
    assert not (restarted.root / "sub").exists()
    assert count(hub.store, raw_files) == 1 and count(hub.store, workouts) == 1
    assert count(hub.store, sa.Table("outbox_events", sa.MetaData(), autoload_with=hub.store.engine)) == events


def test_crash_after_rejection_commit_finishes_the_quarantine(shared, db_url, hub_at):
    from hub.importer import record

    hub = hub_at(db_url)
    folder = watch(hub)
    path = drop(shared / SETTINGS_FIT, folder.root)
    record(hub.store, sha(path), "rejected", IngestMark("watch:inbox", path.name, path.stat().st_size, None), "decided before the crash")
    # The recorded decision is used as it is: the file is not decoded again.
    assert watch(hub).poll() == 1
    assert "reason: decided before the crash" in (folder.quarantine_dir / (path.name + ".reason")).read_text()
    assert not path.exists()


def test_crash_halfway_through_a_zip_imports_the_rest_once(shared, db_url, hub_at, tmp_path):
    hub = hub_at(db_url)
    folder = watch(hub)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(shared / RUN_FIT, "a/run.fit")
        zf.write(shared / RIDE_FIT, "b/ride.fit")
    # The first member was committed before the crash (no state for the zip yet).
    ingest(hub.store, (shared / RUN_FIT).read_bytes(), name="export.zip!a/run.fit", decoders=decoders(), sniff=sniff)
    drop(archive, folder.root)
    assert folder.poll() == 1
    assert folder.stats["imported"] == 1
    assert count(hub.store, raw_files) == 2 and count(hub.store, workouts) == 2
    assert state_of(hub.store, sha(archive)).state == "stored"
    assert files_under(folder.archive_dir) == ["export.zip"]


def test_file_already_imported_by_the_cli_is_archived_not_duplicated(shared, db_url, hub_at):
    hub = hub_at(db_url)
    # As `fithub import` does it: no ingest mark.
    ingest(hub.store, (shared / RUN_FIT).read_bytes(), name=str(shared / RUN_FIT), decoders=decoders(), sniff=sniff)
    folder = watch(hub)
    drop(shared / RUN_FIT, folder.root, "copy.fit")
    assert folder.poll() == 1
    assert folder.stats["duplicates"] == 1
    assert files_under(folder.archive_dir) == ["copy.fit"]
    assert count(hub.store, raw_files) == 1 and count(hub.store, workouts) == 1
    recorded = state_of(hub.store, sha(shared / RUN_FIT))
    assert (recorded.state, recorded.path) == ("stored", "copy.fit")


# -- zips, clashes, unavailable folders, plugins --------------------------------------------


def test_zip_dropped_in_the_inbox(shared, db_url, hub_at, tmp_path):
    hub = hub_at(db_url)
    folder = watch(hub)
    good = tmp_path / "rides.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.write(shared / RUN_FIT, "GARMIN/Activity/run.fit")
        zf.write(shared / RIDE_FIT, "GARMIN/Activity/ride.fit")
        zf.write(shared / SETTINGS_FIT, "GARMIN/Settings/settings.fit")
    bad = tmp_path / "junk.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.write(shared / SETTINGS_FIT, "settings.fit")
    drop(good, folder.root)
    drop(bad, folder.root)
    (folder.root / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    assert folder.poll() == 3
    assert folder.stats["imported"] == 1 and folder.stats["rejected"] == 2
    assert count(hub.store, workouts) == 2
    names = {r.name for r in rows(hub.store, raw_files)}
    assert names == {"rides.zip!GARMIN/Activity/run.fit", "rides.zip!GARMIN/Activity/ride.fit"}
    assert files_under(folder.archive_dir) == ["rides.zip"]
    assert files_under(folder.quarantine_dir) == ["broken.zip", "broken.zip.reason", "junk.zip", "junk.zip.reason"]
    assert "corrupt zip" in (folder.quarantine_dir / "broken.zip.reason").read_text()
    assert state_of(hub.store, sha(good)).state == "stored"


def test_name_clash_in_the_archive(shared, db_url, hub_at):
    hub = hub_at(db_url)
    folder = watch(hub)
    (folder.archive_dir / "ride.fit").write_bytes(b"an older, different file")
    drop(shared / RUN_FIT, folder.root, "ride.fit")
    assert folder.poll() == 1
    digest = sha(shared / RUN_FIT)
    assert (folder.archive_dir / f"ride-{digest[:8]}.fit").read_bytes() == (shared / RUN_FIT).read_bytes()
    assert (folder.archive_dir / "ride.fit").read_bytes() == b"an older, different file"
    # The same bytes arrive again under the same name: already archived, so the
    # inbox copy goes and no third copy appears.
    drop(shared / RUN_FIT, folder.root, "ride.fit")
    assert folder.poll() == 1
    assert files_under(folder.archive_dir) == ["ride-" + digest[:8] + ".fit", "ride.fit"]
    assert files_under(folder.root) == []
    assert count(hub.store, raw_files) == 1


def test_unmounted_folder_raises_and_recovers(shared, tmp_path, hub_at):
    hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")
    mount = tmp_path / "media" / "GARMIN"
    folder = watch(hub, path=str(mount), after="keep")
    with pytest.raises(SourceUnavailable, match=str(mount)):
        folder.poll()
    assert not mount.exists()  # outside home: never created (it would hide the mount point)
    drop(shared / RUN_FIT, mount, "Activity/run.fit")
    assert folder.poll() == 1
    shutil.rmtree(mount)
    with pytest.raises(SourceUnavailable, match="not mounted"):
        folder.poll()


class _ExportImporter:
    """A minimal StreamImporter for ``*.export`` files: the plugin contract as the
    Apple Health / Garmin importers implement it."""

    format = "test_export"

    def __init__(self):
        self.calls = []

    def claims(self, path: Path, head: bytes) -> bool:
        return path.name.endswith(".export")

    def import_path(self, path, store, *, person, source, progress=None):
        self.calls.append((path.name, person, source))
        if path.read_bytes().startswith(b"bad"):
            raise DecodeError(path.name, "header says bad")
        if path.read_bytes().startswith(b"boom"):
            raise RuntimeError("plugin bug")
        return StreamReport(str(path), skipped=3)


def test_stream_importer_takes_the_files_it_claims(shared, tmp_path, hub_at):
    hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")
    plugin = _ExportImporter()
    folder = watch(hub, importers=[plugin], person="alice")
    (folder.root / "ok.export").write_bytes(b"fine")
    (folder.root / "bad.export").write_bytes(b"bad data")
    (folder.root / "crash.export").write_bytes(b"boom")
    drop(shared / RUN_FIT, folder.root)
    assert folder.poll() == 3
    assert sorted(plugin.calls) == [(n, "alice", "watch:inbox") for n in ("bad.export", "crash.export", "ok.export")]
    assert folder.stats == {"imported": 1, "merged": 0, "duplicates": 1, "rejected": 1, "errors": 1}
    assert files_under(folder.archive_dir) == ["fit4s__610464.fit", "ok.export"]
    assert "header says bad" in (folder.quarantine_dir / "bad.export.reason").read_text()
    # The file that hit a plugin bug stays, and is not retried until it changes.
    assert files_under(folder.root) == ["crash.export"]
    assert folder.poll() == 0 and len(plugin.calls) == 3
    (folder.root / "crash.export").write_bytes(b"fine now")
    assert folder.poll() == 1 and files_under(folder.root) == []


# -- SIGKILL at random moments ----------------------------------------------------------

_RUNNER = """
import sys, time
from pathlib import Path
from hub.plugins import Hub
from hub.storage import Store
from connectors.files.watch import WatchFolder
url, home = sys.argv[1], Path(sys.argv[2])
store = Store(url, home)
folder = WatchFolder("inbox", {"settle_s": 0}, Hub(store=store, home=home), importers=[])
while True:
    if folder.poll() == 0 and not any(p.is_file() for p in folder.root.rglob("*")):
        print("done", flush=True)
        break
"""


def _corpus(shared: Path) -> list[Path]:
    fits = sorted((shared / "fit").glob("*.fit"))[:14]
    return [*fits, *sorted((shared / "fit" / "non_activity").glob("*.fit"))[:3], *sorted((shared / "fit" / "broken").glob("*.fit"))[:3]]


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(shared, db_url, tmp_path):
    import random

    corpus = _corpus(shared)
    home = tmp_path / "home"
    inbox = home / "inbox"
    for i, src in enumerate(corpus):
        drop(src, inbox, f"d{i % 3}/{src.name}")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(4)
    kills = 0
    remaining_at_kill = []
    for attempt in range(40):
        proc = subprocess.Popen([sys.executable, "-c", _RUNNER, db_url, str(home)], env=env, stdout=subprocess.PIPE)
        if kills < 8:
            # Kill once it has finished one or two more files, plus a random few
            # milliseconds: lands inside decoding, the commit or the move of the
            # next file, however fast this machine imports.
            before, wanted = len(files_under(inbox)), rng.randint(1, 2)
            while proc.poll() is None:
                if before - len(files_under(inbox)) >= wanted:
                    time.sleep(rng.uniform(0, 0.05))
                    proc.kill()  # SIGKILL: no cleanup of any kind
                    proc.wait()
                    kills += 1
                    remaining_at_kill.append(len(files_under(inbox)))
                    break
                time.sleep(0.002)
        out, _ = proc.communicate(timeout=120)
        if b"done" in out:
            break
    assert kills >= 5, "the importer finished too fast to be interrupted; use more files"
    # Killed in the middle of the work, not only before it started.
    assert len({n for n in remaining_at_kill if 0 < n < len(corpus)}) >= 2, remaining_at_kill
    assert files_under(inbox) == []

    # Reference: the same files imported once, undisturbed.
    ref_home = tmp_path / "ref"
    ref_url = f"sqlite:///{ref_home / 'db.sqlite'}"
    for i, src in enumerate(corpus):
        drop(src, ref_home / "inbox", f"d{i % 3}/{src.name}")
    with Store(ref_url, ref_home) as ref_store:
        WatchFolder("inbox", {"settle_s": 0}, Hub(store=ref_store, home=ref_home), importers=[]).poll()
        expected_files = {r.sha256 for r in rows(ref_store, raw_files)}
        expected_workouts = count(ref_store, workouts)

    with Store(db_url, home) as store:
        assert {r.sha256 for r in rows(store, raw_files)} == expected_files
        assert count(store, workouts) == expected_workouts
        decided = {r.sha256: r.state for r in rows(store, ingest_state)}
        archived = {sha(p) for p in (home / "archive").rglob("*") if p.is_file()}
        quarantined = {sha(p) for p in (home / "quarantine").rglob("*") if p.is_file() and not p.name.endswith(".reason")}
        everything = {sha(src) for src in corpus}
        assert archived | quarantined == everything and not archived & quarantined
        assert {s for s in everything if decided[s] == "stored"} == archived
        assert archived == expected_files
        for p in (home / "quarantine").rglob("*.fit"):
            assert p.with_name(p.name + ".reason").is_file()


def test_archive_on_another_filesystem_is_copied_then_removed(shared, tmp_path, hub_at):
    import tempfile

    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm to serve as a second filesystem")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the test's tmp_path")
        hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")
        folder = watch(hub, archive_dir=other)
        drop(shared / RUN_FIT, folder.root, "sub/run.fit")
        assert folder.poll() == 1
        assert files_under(Path(other)) == ["sub/run.fit"]  # no temporary copy left behind
        assert (Path(other) / "sub" / "run.fit").read_bytes() == (shared / RUN_FIT).read_bytes()
        assert files_under(folder.root) == []


def test_file_rewritten_during_import_is_not_archived_unread(shared, tmp_path, hub_at):
    """The bytes decided about are the bytes moved: a file replaced between the
    read and the move stays for the next poll (and is then taken on its own)."""
    hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")

    class Rewriter(_ExportImporter):
        def import_path(self, path, store, *, person, source, progress=None):
            report = super().import_path(path, store, person=person, source=source)
            if len(self.calls) == 1:
                path.write_bytes(b"a different, longer content")  # someone saves over it meanwhile
            return report

    plugin = Rewriter()
    folder = watch(hub, importers=[plugin])
    (folder.root / "x.export").write_bytes(b"fine")
    assert folder.poll() == 1
    assert files_under(folder.root) == ["x.export"] and files_under(folder.archive_dir) == []
    assert folder.poll() == 1
    assert len(plugin.calls) == 2  # the new content was imported in its own right
    assert (folder.archive_dir / "x.export").read_bytes() == b"a different, longer content"


def test_installed_stream_importers_are_discovered_for_an_apple_health_export(shared, tmp_path, hub_at):
    from hub.importer import stream_importers

    if not any(getattr(i, "format", None) == "apple_health" for i in stream_importers()):
        pytest.skip("the apple_health importer plugin is not installed")
    hub = hub_at(f"sqlite:///{tmp_path / 'db.sqlite'}")
    folder = WatchFolder("inbox", {"settle_s": 0}, hub)  # importers found through entry points
    export = shared / "apple_health" / "healthkit-to-sqlite" / "export.zip"
    drop(export, folder.root)
    assert folder.poll() == 1
    assert folder.stats["imported"] == 1
    assert files_under(folder.archive_dir) == ["export.zip"]
    assert state_of(hub.store, sha(export)).state == "stored"
    drop(export, folder.root, "again/export.zip")  # the same export a second time
    assert folder.poll() == 1
    assert folder.stats["duplicates"] == 1
    assert files_under(folder.archive_dir) == ["again/export.zip", "export.zip"]
    assert files_under(folder.root) == []

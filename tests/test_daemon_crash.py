"""Crash safety: 300 files dropped into the inbox, the daemon SIGKILLed at random
moments at least 10 times during the import and restarted each time. At the end the
database equals one clean import of the same files: every valid file stored exactly
once (or merged into its workout), every broken file in quarantine, nothing left
half-done, every event delivered to the webhook."""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path

import pytest

from daemon_util import (
    DaemonProcess, Receiver, db_counts, db_query, files_under, fithub_cmd, wait_for, write_config,
)

N_FILES = int(os.environ.get("FITHUB_CRASH_FILES", "300"))
KILLS = int(os.environ.get("FITHUB_CRASH_KILLS", "10"))
_YEAR = re.compile(rb"(<(?:time|Time|Id|StartTime)[^>]*>)(\d{4})-")


def _shifted(data: bytes, years: int) -> bytes:
    """The same track some years later: a different workout with the same shape."""
    return _YEAR.sub(lambda m: m.group(1) + str(int(m.group(2)) + years).encode() + b"-", data)


def _corpus(shared: Path, dest: Path, n: int) -> None:
    """``n`` files: the real FIT/GPX/TCX corpus (its broken files included), time-shifted
    copies of the real GPX/TCX tracks, a few truncated copies and byte-identical twins."""
    real = sorted(p for ext in ("fit", "gpx", "tcx") for p in shared.joinpath(ext).rglob(f"*.{ext}"))
    files: dict[str, bytes] = {f"real/{p.parent.name}__{p.name}": p.read_bytes() for p in real}
    tracks = [p for p in real if p.suffix in (".gpx", ".tcx") and "broken" not in p.parts]
    rnd = random.Random(7)
    years = 1
    while len(files) < n - 12:
        for p in tracks:
            if len(files) >= n - 12:
                break
            files[f"shifted/{years:02d}_{p.name}"] = _shifted(p.read_bytes(), years)
        years += 1
    for i in range(6):  # truncated: broken
        p = rnd.choice([t for t in real if t.suffix == ".fit" and "broken" not in t.parts])
        files[f"cut/{i}_{p.name}"] = p.read_bytes()[: rnd.randint(20, 120)]
    for i in range(n - len(files)):  # identical bytes under another name: one stored file
        name, data = rnd.choice(sorted(files.items()))
        files[f"twin/{i}_{Path(name).name}"] = data
    for name, data in files.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _baseline(src: Path, home: Path) -> dict:
    """One clean, uninterrupted import of the same files with `fithub import`."""
    out = subprocess.run(
        [*fithub_cmd(), "--home", str(home), "import", "--json", str(src)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "FITHUB_HOME": str(home)},
    )
    assert out.returncode in (0, 1), out.stderr[-3000:]
    return _state(home / "fithub.db")


def _state(db: Path) -> dict:
    return {
        "files": {r[0] for r in db_query(db, "SELECT sha256 FROM raw_files")},
        "workouts": db_counts(db)["workouts"],
        "versions": db_counts(db)["versions"],
        # each workout's versions, by file: the grouping dedupe chose
        "groups": sorted(
            tuple(sorted(v for v in r[0].split(","))) for r in db_query(
                db, "SELECT group_concat(version_key) FROM versions GROUP BY workout_id")
        ),
    }


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(shared: Path, tmp_path: Path) -> None:
    source = tmp_path / "files"
    _corpus(shared, source, N_FILES)
    dropped = sorted(p.relative_to(source) for p in files_under(source))
    assert len(dropped) == N_FILES

    expected = _baseline(source, tmp_path / "baseline")
    assert expected["workouts"] > 150  # most of the corpus is valid

    home = tmp_path / "home"
    receiver = Receiver(delay_s=0.01)
    cfg = write_config(home, f"""
[hub]
log_format = "json"
[http]
port = 0
[outbox]
interval_s = 0.2
retry_base_s = 0.2
retry_max_s = 1
[sources.inbox]
type = "watch"
interval_s = 0.2
settle_s = 0.2
[notifiers.hook]
type = "webhook"
url = "{receiver.url}"
""")
    inbox = home / "inbox"
    for rel in dropped:
        target = inbox / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((source / rel).read_bytes())

    rnd = random.Random(int(os.environ.get("FITHUB_CRASH_SEED", "1")))
    kills = 0
    daemon = None
    try:
        while kills < KILLS:
            daemon = DaemonProcess(home, cfg).start()
            daemon.wait_ready(60)
            # Kill once it has handled one or two more files, plus a random few
            # milliseconds: lands in decoding, the commit or the move of the next
            # file however fast this machine imports, and always during the import.
            before, wanted = len(files_under(inbox)), rnd.randint(1, 2)
            wait_for(lambda: before - len(files_under(inbox)) >= wanted or not files_under(inbox), 120,
                     "the daemon to make progress", daemon, interval=0.01)
            time.sleep(rnd.uniform(0, 0.3))
            if not files_under(inbox):
                break  # finished before we could kill it again
            daemon.kill()
            kills += 1
        assert kills >= KILLS, f"the import finished after only {kills} kills; use more files"
        daemon = DaemonProcess(home, cfg).start()
        daemon.wait_ready(60)
        wait_for(lambda: not files_under(inbox), 600, "the inbox to empty", daemon, interval=0.5)
        db = home / "fithub.db"
        wait_for(
            lambda: db_query(db, "SELECT count(*) FROM outbox_deliveries WHERE state != 'done'")[0][0] == 0
            and db_query(db, "SELECT count(*) FROM outbox_deliveries")[0][0] == db_counts(db)["outbox_events"],
            120, "every event to be delivered", daemon,
        )
        code, took = daemon.terminate()
        assert code == 0
    finally:
        if daemon is not None and daemon.proc.poll() is None:
            daemon.kill()
        receiver.close()

    got = _state(home / "fithub.db")
    assert got["files"] == expected["files"], "stored files differ from one clean import"
    assert got["workouts"] == expected["workouts"] and got["versions"] == expected["versions"]
    assert got["groups"] == expected["groups"], "dedupe grouped the versions differently"

    # Every dropped file is accounted for exactly once: archived or quarantined.
    archived = {p.relative_to(home / "archive") for p in files_under(home / "archive")}
    quarantined = {p.relative_to(home / "quarantine") for p in files_under(home / "quarantine") if p.suffix != ".reason"}
    assert not archived & quarantined
    assert archived | quarantined == set(dropped)
    for q in quarantined:
        assert (home / "quarantine" / f"{q}.reason").is_file()
    assert len(archived) >= len(got["files"])  # twins are archived too

    # Events: every one delivered at least once; after the receiver's dedupe, once.
    keys = {r[0] for r in db_query(home / "fithub.db", "SELECT key FROM outbox_events")}
    assert set(receiver.keys) == keys
    stored_events = [e for e in receiver.processed if e["kind"] in ("activity.stored", "activity.merged")]
    assert len({e["payload"]["activity_id"] for e in stored_events}) >= got["workouts"]

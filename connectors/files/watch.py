"""Watch folders: take finished files from a folder, import them, then tidy up.

One poll, top to bottom (:meth:`WatchFolder.poll`):

1. List candidate files (no hidden files, no partial downloads, nothing inside the
   archive/quarantine folders when they sit inside the watched one).
2. Keep those whose size and mtime have not changed for ``settle_s`` and that no
   process holds open for writing (:mod:`connectors.files.stability`).
3. Per file: ``after = "keep"`` skips files already decided at the same size and
   mtime without reading them. Otherwise hash it; bytes the database already
   knows (a crash after the commit, or an earlier ``fithub import``) are not
   imported again, only finished. New bytes are imported through
   :func:`hub.importer.import_path`, and the decision is committed in the ingest
   state (with the data for a plain file; a rejection in its own transaction).
4. Only after that commit is the file touched: moved to the archive (or left in
   place), or moved to quarantine with a ``.reason`` file beside it.

Crash safety comes from that order: the database decides, the folder follows.
Killed anywhere, the next poll finds the file still in the inbox, recognises its
hash, and completes step 4 without a second import.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from hub.decoding import registry
from hub.errors import SourceUnavailable, StorageError
from hub.importer import (
    PathResult,
    claiming,
    file_sha256,
    import_path,
    known,
    read_head,
    record,
    seen_paths,
    stream_importers,
)
from hub.model import DEFAULT_PERSON
from hub.options import Option
from hub.pipeline import Imported, Rejected
from hub.storage.daemon_rows import IngestMark

from .stability import FileSig, SettleTracker, open_for_writing

# Names a downloader or copier writes before the final rename (Firefox/wget
# ".part", Chrome ".crdownload", rsync/editors ".tmp"), and our own reason files.
SKIP_SUFFIXES = (".part", ".tmp", ".crdownload", ".reason")
STATS = ("imported", "merged", "duplicates", "rejected", "errors")


class WatchFolder:
    """A polling source (entry point ``watch``) for one folder."""

    OPTIONS: dict[str, Option] = {
        "path": Option("path", "folder to watch; empty: <home>/inbox", default="", example="/media/GARMIN/GARMIN/Activity"),
        "interval_s": Option("duration", "seconds between two looks at the folder", default=5, minimum=0.1),
        "settle_s": Option("duration", "a file is taken once its size and mtime stayed unchanged this long", default=5, minimum=0),
        "after": Option("str", "what to do with an imported file: move it to the archive, or keep it in place", default="archive", choices=("archive", "keep")),
        "archive_dir": Option("path", "where imported files are moved; empty: <home>/archive", default=""),
        "quarantine_dir": Option("path", "where rejected files go, each with a .reason file; empty: <home>/quarantine", default=""),
        "person": Option("str", "household member the files belong to; empty: the hub's default person", default=""),
        "recursive": Option("bool", "also look in sub-folders", default=True),
    }

    def __init__(self, name: str, options: dict, hub, *, importers=None, proc: str = "/proc") -> None:
        opts = {key: option.default for key, option in self.OPTIONS.items()}
        opts.update(options or {})
        self.name = name
        self.source = f"watch:{name}"
        self.hub = hub
        self.store = hub.store
        self.log = logging.getLogger(f"fithub.watch.{name}")
        home = Path(hub.home)
        self.home = home
        self.root = _folder(opts["path"], home / "inbox")
        self.archive_dir = _folder(opts["archive_dir"], home / "archive")
        self.quarantine_dir = _folder(opts["quarantine_dir"], home / "quarantine")
        self.interval_s = float(opts["interval_s"])
        self.after = str(opts["after"])
        if self.after not in ("archive", "keep"):
            raise ValueError(f"watch folder {name}: after must be 'archive' or 'keep', not {self.after!r}")
        self.person = opts["person"] or getattr(hub, "default_person", None) or DEFAULT_PERSON
        self.recursive = bool(opts["recursive"])
        self.tracker = SettleTracker(float(opts["settle_s"]))
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)
        self._proc = proc
        self._importers = importers  # None: discovered at the first poll
        # Built-in formats plus installed decoder plugins (e.g. Garmin monitoring files).
        self._registry = registry()
        # Files handled in this run that stay where they are (keep mode): skipped
        # without asking the database while their size and mtime do not change.
        self._kept: dict[str, FileSig] = {}
        # Files that failed for a reason of their own: retried once they change.
        self._failed: dict[str, FileSig] = {}
        for folder in (self.root, self.archive_dir, self.quarantine_dir):
            if _inside(folder, home):
                folder.mkdir(parents=True, exist_ok=True)

    # -- the poll ------------------------------------------------------------

    def poll(self) -> int:
        """Take every finished file; returns how many were taken (imported,
        merged, already present or rejected)."""
        self._check_folders()
        listing = self._list()
        for table in (self._kept, self._failed):
            for gone in table.keys() - listing.keys():
                del table[gone]
        pending = self._pending(self.tracker.update(listing), listing)
        if not pending:
            return 0
        busy = open_for_writing({os.path.realpath(p) for p in pending}, self._proc)
        taken = 0
        for path in pending:
            if self.hub.stopping.is_set():
                break
            sig = listing[path]
            if os.path.realpath(path) in busy:
                self.log.debug("%s: still open for writing, waiting", self._rel(path))
                self.tracker.forget(path)  # settle again once it is closed
                continue
            try:
                if self._take(Path(path), sig):
                    taken += 1
            except StorageError:
                raise  # the database, not the file: the scheduler backs off
            except FileNotFoundError:
                self.log.info("%s: vanished before it could be read; skipped", self._rel(path))
            except Exception as exc:  # one bad file must not stop the others
                self.stats["errors"] += 1
                self._failed[path] = sig
                self.log.error("%s: failed, left in place: %s: %s", self._rel(path), type(exc).__name__, exc, exc_info=not isinstance(exc, OSError))
        return taken

    def _pending(self, settled: list[str], listing: dict[str, FileSig]) -> list[str]:
        """Settled files that still need work: not failed at this size and mtime,
        and in keep mode not already decided at this size and mtime (answered
        from memory, else one query per poll; the file itself is not opened)."""
        decided = None
        pending = []
        for path in settled:
            sig = listing[path]
            if self._failed.get(path) == sig:
                continue
            if self.after == "keep":
                if self._kept.get(path) == sig:
                    continue
                if decided is None:
                    decided = seen_paths(self.store, self.source)
                if decided.get(self._rel(path)) == (sig.size, sig.mtime_ns):
                    self._kept[path] = sig
                    continue
            pending.append(path)
        return pending

    def _take(self, path: Path, sig: FileSig) -> bool:
        """Import one settled file and finish it. False when it changed under us."""
        rel = self._rel(path)
        mark = IngestMark(self.source, rel, sig.size, sig.mtime_ns)
        head = read_head(path)
        importer = claiming(self._stream_importers(), path, head)
        if importer is not None:
            data = None
            sha, size = file_sha256(path)  # too big to hold: hashed as a stream
        else:
            data = path.read_bytes()
            sha, size = hashlib.sha256(data).hexdigest(), len(data)
        if size != sig.size:  # written to since the listing: wait for it to settle again
            self.tracker.forget(str(path))
            return False

        prior = known(self.store, sha)
        if prior is not None:
            # Decided before: committed just before a crash, or imported by the CLI.
            if not prior.in_state:
                record(self.store, sha, "stored", mark)
            outcome = "rejected" if prior.state == "rejected" else "duplicates"
            where = self._finish(path, rel, sha, prior.state, prior.reason, sig)
            self._count(outcome, rel, f"already {'rejected' if prior.state == 'rejected' else 'present'}", where)
            return True

        result = import_path(
            self.store,
            path,
            name=rel,
            person=self.person,
            source=self.source,
            decoders=self._registry.decoders,
            sniff=self._registry.sniff,
            importers=[importer] if importer is not None else (),
            data=data,
            sha256=sha,
            mark=mark,
        )
        if result.rejected:
            record(self.store, sha, "rejected", mark, result.reason)
        elif not result.recorded:
            record(self.store, sha, "stored", mark)
        # Committed: only now may the file move.
        where = self._finish(path, rel, sha, result.state, result.reason, sig)
        kind, detail = _summarise(result)
        self._count(kind, rel, detail, where)
        return True

    # -- after the commit ----------------------------------------------------

    def _finish(self, path: Path, rel: str, sha: str, state: str, reason: str | None, sig: FileSig) -> str:
        """Move (or keep) a decided file; returns where it went, for the log."""
        if FileSig(*_sig(path)) != sig:
            # Rewritten while we imported it: these are not the bytes we decided
            # about. Leave it; it settles again and is taken as a new file.
            self.tracker.forget(str(path))
            return "left in place: it changed while being imported"
        if state == "rejected":
            dest = self._place(self.quarantine_dir / rel, path, sha)
            if dest is not None:
                # The reason first: a crash before the move leaves the file in the
                # inbox (finished next poll), never a quarantined file without why.
                _write_atomic(_reason_path(dest), _reason_text(reason, sha, self.source, rel))
                _move(path, dest)
            where = f"quarantined to {dest or 'the quarantine (identical copy already there)'}"
        elif self.after == "archive":
            dest = self._place(self.archive_dir / rel, path, sha)
            if dest is not None:
                _move(path, dest)
            where = f"archived to {dest or 'the archive (identical copy already there)'}"
        else:
            self._kept[str(path)] = sig
            return "kept in place"
        self._prune(path.parent)
        return where

    def _place(self, target: Path, source: Path, sha: str) -> Path | None:
        """A free name for ``source`` at ``target``; None when the same bytes are
        already there (a crash between copying and unlinking the original), in
        which case the original is simply removed."""
        for candidate in _names(target, sha):
            if not candidate.exists():
                return candidate
            try:
                same = file_sha256(candidate)[0] == sha
            except OSError:
                same = False
            if same:
                source.unlink(missing_ok=True)
                return None
        raise OSError(f"no free name for {target} in 100 tries")

    def _prune(self, folder: Path) -> None:
        """Remove sub-folders of the inbox that moving files out left empty."""
        keep = {self.root, self.archive_dir, self.quarantine_dir}
        while folder != self.root and _inside(folder, self.root) and folder not in keep:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): stop climbing
                return
            folder = folder.parent

    # -- helpers -------------------------------------------------------------

    def _check_folders(self) -> None:
        needed = [("watched folder", self.root), ("quarantine folder", self.quarantine_dir)]
        if self.after == "archive":
            needed.append(("archive folder", self.archive_dir))
        for what, folder in needed:
            if _inside(folder, self.home):
                folder.mkdir(parents=True, exist_ok=True)
            if not folder.is_dir():
                raise SourceUnavailable(f"watch folder {self.name}: {what} {folder} does not exist (not mounted?)")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceUnavailable(f"watch folder {self.name}: cannot read {self.root} (permission denied)")

    def _list(self) -> dict[str, FileSig]:
        """Candidate files -> (size, mtime), sorted by path."""
        excluded = {self.archive_dir, self.quarantine_dir}
        found: dict[str, FileSig] = {}
        for dirpath, dirs, files in os.walk(self.root):
            here = Path(dirpath)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and here / d not in excluded) if self.recursive else []
            for name in sorted(files):
                if name.startswith(".") or name.lower().endswith(SKIP_SUFFIXES):
                    continue
                path = here / name
                try:
                    st = os.lstat(path)
                except OSError:  # vanished between listing and stat
                    continue
                if stat.S_ISREG(st.st_mode):  # not symlinks, fifos, sockets
                    found[str(path)] = FileSig(st.st_size, st.st_mtime_ns)
        return found

    def _stream_importers(self):
        if self._importers is None:
            self._importers = stream_importers()
        return self._importers

    def _rel(self, path) -> str:
        return PurePosixPath(Path(path).relative_to(self.root)).as_posix()

    def _count(self, kind: str, rel: str, detail: str, where: str) -> None:
        self.stats[kind] += 1
        level = logging.WARNING if kind == "rejected" else logging.INFO
        self.log.log(level, "%s: %s; %s", rel, detail, where)


# -- pure helpers ----------------------------------------------------------------


def _folder(configured, default: Path) -> Path:
    if not configured:
        return Path(os.path.abspath(default))
    return Path(os.path.abspath(os.path.expandvars(os.path.expanduser(str(configured)))))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _sig(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _names(target: Path, sha: str, tries: int = 100):
    """``ride.fit``, then ``ride-<sha8>.fit``, then ``ride-<sha8>-2.fit``, ... (a
    ``.fit.gz`` keeps both suffixes together)."""
    yield target
    name = target.name
    ext = target.suffix
    if ext.lower() == ".gz" and Path(target.stem).suffix:
        ext = Path(target.stem).suffix + ext
    stem = name[: len(name) - len(ext)] if ext else name
    yield target.with_name(f"{stem}-{sha[:8]}{ext}")
    for n in range(2, tries):
        yield target.with_name(f"{stem}-{sha[:8]}-{n}{ext}")


def _reason_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".reason")


def _reason_text(reason: str | None, sha: str, source: str, rel: str) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"reason: {reason or 'rejected'}\n"
        f"time: {when}\n"
        f"sha256: {sha}\n"
        f"source: {source}\n"
        f"file: {rel}\n"
    )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _move(src: Path, dest: Path) -> None:
    """Rename within a filesystem; across filesystems copy, fsync, rename into
    place, then unlink the original (a crash leaves two copies, never none)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(src).st_dev == os.stat(dest.parent).st_dev:
        os.replace(src, dest)
        return
    tmp = dest.with_name(f".{dest.name}.fithub-part")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1024 * 1024)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    os.unlink(src)


def _summarise(result: PathResult) -> tuple[str, str]:
    """(stats key, log detail) for one file's result."""
    if result.rejected:
        return "rejected", f"rejected: {result.reason}"
    imported = [o for o in result.outcomes if isinstance(o, Imported)]
    new = sum(len(o.activity_ids) for o in imported)
    merged = sum(len(o.merged_ids) for o in imported)
    measurements = sum(o.measurements for o in imported)
    skipped = [o for o in result.outcomes if isinstance(o, Rejected)]
    parts = [_count(new, "new activity", "new activities"), _count(merged, "merged"), _count(measurements, "measurement", "measurements")]
    if skipped:
        parts.append(f"{len(skipped)} members rejected ({'; '.join(f'{o.path}: {o.reason}' for o in skipped)})")
    if not imported:
        return "duplicates", "already present"
    if new or measurements:
        return "imported", "imported: " + ", ".join(parts)
    if merged:
        return "merged", "merged into existing: " + ", ".join(parts)
    return "duplicates", "nothing new: " + ", ".join(parts)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 or many is None else many}"

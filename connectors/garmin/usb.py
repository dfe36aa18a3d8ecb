"""A Garmin watch mounted over USB (mass storage, or MTP through a FUSE mount).

One poll, top to bottom (:meth:`GarminUsb.poll`):

1. Find the watch's ``GARMIN`` folder under the mount point: ``GARMIN/`` or, on
   newer MTP watches, ``Primary/GARMIN/`` (names matched case-insensitively). No
   such folder means the watch is not mounted: :class:`SourceUnavailable`.
2. List the ``.fit`` files of the configured sub-folders (``Activity``,
   ``Monitor``, ``Sleep``).
3. Skip without reading every file this source already decided at the same path,
   size and mtime (the ``ingest_state`` rows of this source). A watch keeps its
   files, so this is what makes a poll of a full watch cost a directory listing.
4. Hash the rest; bytes the database already knows (imported by the CLI, another
   source, or this one under another name) only get their path recorded.
5. Import new bytes through the pipeline (activity FIT files with the file
   decoders, monitoring and sleep FIT files with :mod:`connectors.garmin.formats`),
   recording the decision in the same transaction as the data.

The watch's files are only ever read: nothing on the device is moved, renamed or
written, whatever the outcome.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path, PurePosixPath

from hub.errors import SourceUnavailable, StorageError
from hub.importer import import_path, known, record, seen_paths
from hub.model import DEFAULT_PERSON
from hub.options import Option
from hub.pipeline import Imported
from hub.storage.daemon_rows import IngestMark

from . import formats

DEFAULT_FOLDERS = ["Activity", "Monitor", "Sleep"]


class GarminUsb:
    """Polling source (entry point ``garmin_usb``) for one watch's mount point."""

    OPTIONS: dict[str, Option] = {
        "path": Option("path", "mount point of the watch (the folder that holds GARMIN/ or Primary/GARMIN/)", example="/media/alice/GARMIN"),
        "interval_s": Option("duration", "seconds between two looks at the watch", default=60, minimum=1),
        "person": Option("str", "household member who wears the watch; empty: the hub's default person", default=""),
        "folders": Option("list", "sub-folders of GARMIN/ to import (matched case-insensitively)", default=list(DEFAULT_FOLDERS)),
    }

    def __init__(self, name: str, options: dict, hub) -> None:
        opts = {key: option.default for key, option in self.OPTIONS.items() if not option.required}
        opts.update(options or {})
        if not opts.get("path"):
            raise ValueError(f"garmin_usb source {name}: 'path' (the watch's mount point) is required")
        self.name = name
        self.source = f"garmin_usb:{name}"
        self.hub = hub
        self.store = hub.store
        self.root = Path(os.path.abspath(os.path.expandvars(os.path.expanduser(str(opts["path"])))))
        self.interval_s = float(opts["interval_s"])
        self.person = opts["person"] or getattr(hub, "default_person", None) or DEFAULT_PERSON
        self.folders = [str(f) for f in opts["folders"]]
        self.log = logging.getLogger(f"fithub.garmin_usb.{name}")
        self._decoders = formats.decoders()
        self.stats = {"imported": 0, "known": 0, "rejected": 0, "errors": 0}
        self._failed: dict[str, tuple[int, int]] = {}  # rel path -> (size, mtime_ns) that failed

    # -- the poll ------------------------------------------------------------

    def poll(self) -> int:
        """Import the watch's new files; returns how many files were imported."""
        garmin = self._garmin_folder()
        listing = self._list(garmin)
        decided = seen_paths(self.store, self.source)
        imported = 0
        for rel, (path, size, mtime_ns) in listing.items():
            if self.hub.stopping.is_set():
                break
            if decided.get(rel) == (size, mtime_ns) or self._failed.get(rel) == (size, mtime_ns):
                continue
            try:
                imported += self._take(path, rel, size, mtime_ns)
            except StorageError:
                raise  # the database, not the file: the scheduler backs off
            except FileNotFoundError as exc:
                # Files do not vanish from a watch; its mount does (unplugged mid-poll).
                raise SourceUnavailable(f"Garmin watch {self.name}: {path} vanished while reading (unplugged?)") from exc
            except OSError as exc:
                if not self.root.is_dir():
                    raise SourceUnavailable(f"Garmin watch {self.name}: {self.root} went away while reading {rel}") from exc
                self._fail(rel, size, mtime_ns, exc)
            except Exception as exc:  # a decoder bug on one file must not stop the others
                self._fail(rel, size, mtime_ns, exc)
        return imported

    def _fail(self, rel: str, size: int, mtime_ns: int, exc: Exception) -> None:
        # Not recorded in the database (the next start retries it, perhaps with a
        # fixed decoder); in this run it is retried only once it changes.
        self._failed[rel] = (size, mtime_ns)
        self.stats["errors"] += 1
        self.log.error("%s: failed, will retry when it changes: %s: %s", rel, type(exc).__name__, exc, exc_info=not isinstance(exc, OSError))

    def _take(self, path: Path, rel: str, size: int, mtime_ns: int) -> int:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        mark = IngestMark(self.source, rel, len(data), mtime_ns)
        prior = known(self.store, sha)
        if prior is not None:
            # Known bytes under a new path/size/mtime: remember where they are, so
            # the next poll skips them without reading.
            record(self.store, sha, prior.state, mark, prior.reason)
            self.stats["known"] += 1
            return 0
        result = import_path(
            self.store,
            path,
            name=rel,
            person=self.person,
            source=self.source,
            decoders=self._decoders,
            sniff=formats.sniff,
            data=data,
            sha256=sha,
            mark=mark,
        )
        if result.rejected:
            record(self.store, sha, "rejected", mark, result.reason)
            self.stats["rejected"] += 1
            self.log.warning("%s: rejected: %s", rel, result.reason)
            return 0
        if not result.recorded:
            record(self.store, sha, "stored", mark)
        stored = any(isinstance(o, Imported) for o in result.outcomes)
        if stored:
            self.stats["imported"] += 1
            self.log.info("%s: imported", rel)
        return int(stored)

    # -- the device's folders --------------------------------------------------

    def _garmin_folder(self) -> Path:
        if not self.root.is_dir():
            raise SourceUnavailable(f"Garmin watch {self.name}: {self.root} does not exist (watch not mounted?)")
        candidates = [self.root] if self.root.name.lower() == "garmin" else []
        candidates.append(_child(self.root, "GARMIN"))
        primary = _child(self.root, "Primary")
        if primary is not None:
            candidates.append(_child(primary, "GARMIN"))
        for found in candidates:
            if found is not None:
                return found
        raise SourceUnavailable(
            f"Garmin watch {self.name}: no GARMIN folder in {self.root} (watch not mounted, or not a Garmin device)"
        )

    def _list(self, garmin: Path) -> dict[str, tuple[Path, int, int]]:
        """``path relative to the mount point -> (path, size, mtime_ns)`` of every FIT file wanted."""
        found: dict[str, tuple[Path, int, int]] = {}
        for wanted in self.folders:
            folder = _child(garmin, wanted)
            if folder is None:
                continue
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                raise SourceUnavailable(f"Garmin watch {self.name}: cannot list {folder}: {exc}") from exc
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.lower().endswith(".fit"):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    rel = PurePosixPath(Path(entry.path).relative_to(self.root)).as_posix()
                    found[rel] = (Path(entry.path), st.st_size, st.st_mtime_ns)
        return found


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name`` in any letter case (FAT and MTP
    mounts show what the watch wrote: GARMIN, Garmin, garmin)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    try:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.lower() == name.lower() and entry.is_dir():
                return Path(entry.path)
    except OSError:
        return None
    return None

"""File sink: every new or merged workout written as a file into a folder (for a
sync app such as Syncthing, or a backup).

Config (``[sinks.<name>] type = "file"``)::

    dir = "~/Sync/workouts"        # required
    formats = ["fit", "gpx"]       # any of fit, gpx, tcx, json, csv
    events = ["activity.stored", "activity.merged"]

Each workout becomes ``<dir>/<YYYY-MM-DD>_<HHMM>_<sport>_<id>.<ext>`` (local start
time when the device recorded its UTC offset, else UTC). The file always holds the
workout as it is *now* in the store (merged from every recording), so a merge
rewrites the same file; when a merge moved the start, the file under the old name
is removed. Writes are atomic (temporary file, fsync, rename): a sync app never
picks up half a file, and a crash leaves the old file or the new one.

A workout removed since the event (split or merged away) is skipped; a missing or
unwritable folder (an unmounted disk) is retried later; an exporter that cannot
write the workout parks the event as a dead letter.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from pathlib import Path

from connectors.export import FORMATS
from connectors.notify import event_kinds, plugin_options
from hub.errors import ConfigError, FithubError, NotFound
from hub.events import ACTIVITY_MERGED, ACTIVITY_STORED, Event
from hub.model import Activity
from hub.options import Option
from hub.plugins import DeliveryError, PermanentDeliveryError

log = logging.getLogger("fithub.sinks.files")


def file_stem(workout_id: int, activity: Activity) -> str:
    start = activity.start
    if activity.utc_offset_s is not None:
        start = start + timedelta(seconds=activity.utc_offset_s)
    sport = re.sub(r"[^a-z0-9_]+", "_", (activity.sport or "generic").lower()).strip("_") or "generic"
    return f"{start:%Y-%m-%d_%H%M}_{sport}_{workout_id}"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file,
    never a mix, also after a power cut (file and directory are fsynced)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSink:
    OPTIONS = {
        "dir": Option("path", "Folder the files are written to; created if its parent exists.", example="~/Sync/workouts"),
        "formats": Option("list", "File formats to write, one file each.", default=["fit"], choices=tuple(FORMATS)),
        "events": Option("list", "Event kinds that (re)write a workout's files.", default=[ACTIVITY_STORED, ACTIVITY_MERGED],
                         choices=(ACTIVITY_STORED, ACTIVITY_MERGED)),
    }  # fmt: skip

    def __init__(self, name: str, options: dict, hub) -> None:
        opts = plugin_options("sinks", name, self.OPTIONS, options)
        self.name = name
        self.store = hub.store
        self.dir = Path(os.path.expandvars(str(opts["dir"]))).expanduser()
        self.formats = [str(f).lower() for f in opts["formats"]]
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ConfigError(f"[sinks.{name}] formats: unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
        self.events = event_kinds("sinks", name, opts["events"]) & {ACTIVITY_STORED, ACTIVITY_MERGED}

    def deliver(self, event: Event) -> None:
        if event.kind not in self.events:
            return
        workout_id = event.payload.get("activity_id")
        if not isinstance(workout_id, int):
            raise PermanentDeliveryError(f"file sink {self.name}: event {event.key} names no activity_id")
        try:
            stored = self.store.get_activity(workout_id)
        except NotFound:
            # Split or merged away since the event: its successor has events of its own.
            log.info("file sink %s: activity %d no longer exists; event %s skipped", self.name, workout_id, event.key)
            return
        except FithubError as exc:  # the database is away: later
            raise DeliveryError(f"file sink {self.name}: reading activity {workout_id}: {exc}") from exc
        self._ensure_dir()
        stem = file_stem(workout_id, stored.activity)
        for fmt in self.formats:
            exporter = FORMATS[fmt]
            try:
                data = exporter.write(stored.activity)
            except Exception as exc:  # an exporter bug: the same workout will fail the same way
                raise PermanentDeliveryError(
                    f"file sink {self.name}: cannot export activity {workout_id} as {fmt}: {type(exc).__name__}: {exc}"
                ) from exc
            target = self.dir / f"{stem}.{exporter.extension}"
            try:
                write_atomic(target, data)
                self._remove_stale(workout_id, exporter.extension, keep=target)
            except OSError as exc:
                raise DeliveryError(f"file sink {self.name}: writing {target}: {exc}") from exc

    def _ensure_dir(self) -> None:
        if self.dir.is_dir():
            return
        # Only the last level is created: a missing parent is more likely an
        # unmounted disk than a folder to invent (writes would land on the mount point).
        try:
            self.dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"file sink {self.name}: folder {self.dir} is missing and cannot be created: {exc}") from exc

    def _remove_stale(self, workout_id: int, extension: str, keep: Path) -> None:
        """Files of the same workout under an older name (a merge moved its start)."""
        for old in self.dir.glob(f"*_{workout_id}.{extension}"):
            if old != keep and old.name.endswith(f"_{workout_id}.{extension}"):
                old.unlink(missing_ok=True)

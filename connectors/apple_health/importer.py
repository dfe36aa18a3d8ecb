"""The Apple Health import, start to end (:class:`AppleHealthImporter.import_path`).

1. Open the export (zip, XML or folder) with the size/ratio/traversal checks.
2. Stream the XML once. Records (and correlations, activity summaries) become rows,
   written in batches of a few thousand by a writer thread, each batch committed
   together with the import's checkpoint (how many records of this export are stored). Workouts are
   spooled to a temporary file, one line each: they are few, but their HR samples
   are records that may come later in the document.
3. Each workout becomes a blob (workout + its HR + route GPX, see
   :mod:`.workouts`) stored through ``Store.save_file``, so the normal dedupe joins
   it with the watch's own FIT file of the same run.
4. The checkpoint is marked finished.

Running it again on the same export skips the committed records by position
(no hashing, no insert); an overlapping newer export inserts only records whose
identity is new; a workout whose blob is already stored is a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from hub.errors import DecodeError
from hub.model import Measurement, Provenance
from hub.plugins import StreamReport
from hub.storage import health

from . import records as rec
from .source import ExportInput, claims, open_export
from .stream import Handler, parse_stream, tree_json
from .workouts import FORMAT as WORKOUT_FORMAT
from .workouts import decode_workout, route_reference, workout_blob, workout_name

log = logging.getLogger("fithub.apple_health")
# Rows per transaction: larger batches amortise the commit (an fsync); memory stays
# a few MB per batch.
BATCH = 10000


class _Collector(Handler):
    """Turns parsed elements into row tuples; the hot path of the whole import."""

    def __init__(self, writer: health.RecordWriter, name: str, spool, export: ExportInput) -> None:
        self.writer = writer
        self.name = name
        self.spool = spool
        self.export = export
        self.dates = rec.DateParser()
        self.batch: list[tuple] = []
        self.points: list[Measurement] = []
        self.index = 0  # row-producing elements seen, in document order
        self.skip = 0  # already committed by an earlier run of this export
        self.export_key: str | None = None
        self.export_stamp = ""
        self.locale = ""
        self.bad: dict[str, int] = {}
        self.bad_example: dict[str, str] = {}
        self.workouts = 0
        self.other_tags: dict[str, int] = {}
        self._devices: dict[str, str | None] = {}
        self._meta_cache: dict[tuple, str | None] = {}
        self._hours: dict[str, tuple[int, int, bytes | None]] = {}
        self._types: dict[tuple[str, str | None], int] = {}
        self._ids: dict[tuple, tuple[int, int, bytes]] = {}
        self.person_id = writer.person_id
        self.received_at = datetime.now(timezone.utc)

    # -- checkpoint ------------------------------------------------------------

    def _key(self) -> str:
        """The export's identity for the checkpoint: its ExportDate (to the second),
        locale and size. Without an ExportDate before the first record nothing names
        the export reliably, so nothing is skipped by position (record identities
        still make the re-run add nothing twice)."""
        if self.export_key is None:
            self.export_key = f"{self.export_stamp}|{self.locale}|{self.export.main_size}"
            if self.export_stamp:
                self.skip, _finished = self.writer.checkpoint(self.export_key)
        return self.export_key

    def export_date(self, value: str, locale: str | None) -> None:
        if locale is not None:
            self.locale = locale
        if value:
            self.export_stamp = value

    # -- rows --------------------------------------------------------------------

    def _source(self, attrs: dict) -> int:
        device = attrs.get("device")
        normal = self._devices.get(device) if device is not None else None
        if device is not None and device not in self._devices:
            if len(self._devices) > 4096:
                self._devices.clear()
            normal = self._devices[device] = rec.normalise_device(device)
        return self.writer.source_id(attrs.get("sourceName") or "", attrs.get("sourceVersion"), normal)

    def _reject(self, why: str, example: str) -> None:
        self.bad[why] = self.bad.get(why, 0) + 1
        self.bad_example.setdefault(why, example)

    def record(self, attrs: dict, meta: dict | None, beats: list | None) -> None:
        # Runs once per record (millions): everything common is inlined here, with
        # rec.map_value / DateParser.parse as the exact fallbacks for the rest.
        if self.export_key is None:
            self._key()
        self.index += 1
        if self.index <= self.skip:
            return
        get = attrs.get
        rtype = get("type")
        source = get("sourceName")
        start = get("startDate")
        end = get("endDate")
        if not rtype or source is None or not start or not end:
            self._reject("a Record lacks type, sourceName, startDate or endDate", str(attrs)[:200])
            return
        # Dates: the epoch second of the local hour's start, the offset and the identity's
        # hour prefix are cached per local hour and offset; minutes and seconds are added.
        hours = self._hours
        hit = hours.get(start[:13] + start[19:])
        into = _MINUTES.get(start[13:19])
        if hit is not None and into is not None:
            s = hit[0] + into
            offset = hit[1]
            prefix = hit[2] or rec.identity_hour(s)
        else:
            parsed = self._date(start)
            if parsed is None:
                return
            s, offset = parsed
            prefix = rec.identity_hour(s)
        if end == start:
            e = s
        else:
            found = hours.get(end[:13] + end[19:])
            into = _MINUTES.get(end[13:19])
            if found is not None and into is not None:
                e = found[0] + into
            else:
                parsed = self._date(end)
                if parsed is None:
                    return
                e = parsed[0]
        raw = get("value")
        unit = get("unit")
        spec = _KINDS.get(rtype)
        value = None
        if spec is not None and raw is not None:
            try:
                value = float(raw)
            except ValueError:
                pass
        if value is not None and value == value:  # a number (not NaN) of a known, non-sleep type
            kind = spec[0]
            text = None
            factor = spec[1].get(unit)
            if factor is None:
                kind_value = None
            elif factor == 100.0 and value > 1.0 and unit == "%":
                kind_value = value  # already a percentage (see rec.map_value)
            else:
                kind_value = value * factor
        else:
            kind, value, text, kind_value = rec.map_value(rtype, unit, raw, float(e - s))
        if beats:
            meta = dict(meta or {})
            meta["_beats"] = beats
        # (type id, source id, identity head) for this type, unit and source: one lookup.
        key = (rtype, unit, source, get("sourceVersion"), get("device"))
        ids = self._ids.get(key)
        if ids is None:
            ids = self._ids_for(key, attrs)
        self.batch.append((
            self.person_id,
            prefix + _blake2b(ids[2] + _TIMES(s, e) + (raw or "").encode(), digest_size=12).digest(),
            ids[0], ids[1], value, text, kind_value, s, e, offset, self._meta(meta) if meta else None,
        ))
        if kind_value is not None and kind in _POINT:
            self.points.append(Measurement(
                person=self.writer.person, kind=kind, time=datetime.fromtimestamp(s, timezone.utc), value=kind_value,
                provenance=Provenance(source=f"apple_health:{source}", sha256=None, received_at=self.received_at,
                                      name=self.name),
            ))

    def _ids_for(self, key: tuple, attrs: dict) -> tuple[int, int, bytes]:
        rtype, unit, source = key[0], key[1], key[2]
        ids = (self._types.get((rtype, unit)) or self._type(rtype, unit), self._source(attrs), rec.identity_head(rtype, source))
        if len(self._ids) > 4096:  # bounded: device strings change often (see rec.normalise_device)
            self._ids.clear()
        self._ids[key] = ids
        return ids

    def _type(self, rtype: str, unit: str | None) -> int:
        """The id of (type, unit), with the kind the type maps to (sleep: every stage,
        though only the asleep ones get a kind value)."""
        spec = _KINDS.get(rtype)
        kind = spec[0] if spec is not None else ("sleep_s" if rtype == rec.SLEEP else None)
        found = self.writer.type_id(rtype, unit, kind)
        if len(self._types) > 4096:
            self._types.clear()
        self._types[(rtype, unit)] = found
        return found

    def _date(self, text: str) -> tuple[int, int] | None:
        """(UTC epoch seconds, offset seconds) of any readable date; None (the record
        counted as rejected) when unreadable. The hour of a date in the usual shape is
        cached for the fast path in :meth:`record`."""
        try:
            utc, offset = self.dates.parse(text)
            seconds = rec.utc_seconds(utc)
        except rec.BadDate as exc:
            self._reject("unreadable date", str(exc))
            return None
        into = _MINUTES.get(text[13:19])
        if len(text) == 25 and text[10] == " " and text[19] == " " and into is not None:
            if len(self._hours) > 65536:  # bounded; clustered dates refill it at once
                self._hours.clear()
            base = seconds - into
            # The hour prefix is shared by the whole local hour only for a whole-hour offset.
            whole = rec.identity_hour(base) if offset % 3600 == 0 else None
            self._hours[text[:13] + text[19:]] = (base, offset, whole)
        return seconds, offset

    def _meta(self, meta: dict) -> str | None:
        """Metadata as JSON; the same few small dicts repeat millions of times, so they are cached."""
        if len(meta) > 3 or "_beats" in meta:
            return health.metadata_json(meta)
        key = tuple(meta.items())
        found = self._meta_cache.get(key)
        if found is None:
            if len(self._meta_cache) > 4096:
                self._meta_cache.clear()
            found = self._meta_cache[key] = health.metadata_json(meta)
        return found

    def correlation(self, attrs: dict, meta: dict | None, children: list) -> None:
        # The children also appear as top-level records; here they only name the pair.
        inner = [[c.get("type"), c.get("value"), c.get("unit")] for c in children]
        value = json.dumps(inner, ensure_ascii=False)
        self._generic({**attrs, "value": None}, meta, value, attrs.get("sourceName") or "")

    def summary(self, attrs: dict) -> None:
        day = attrs.get("dateComponents") or ""
        value = json.dumps(attrs, ensure_ascii=False, sort_keys=True)
        self._generic({"type": "ActivitySummary", "sourceName": "Health", "startDate": f"{day} 00:00:00 +0000",
                       "endDate": f"{day} 00:00:00 +0000"}, dict(attrs), value, "Health", local_day=True)

    def _generic(self, attrs: dict, meta: dict | None, identity_value: str, source: str, local_day: bool = False) -> None:
        if self.export_key is None:
            self._key()
        self.index += 1
        if self.index <= self.skip:
            return
        try:
            s_utc, offset = self.dates.parse(attrs.get("startDate") or "")
            e_utc, _ = self.dates.parse(attrs.get("endDate") or "")
            s, e = rec.utc_seconds(s_utc), rec.utc_seconds(e_utc)
        except rec.BadDate as exc:
            self._reject("unreadable date", str(exc))
            return
        rtype = attrs["type"]
        type_id = self._types.get((rtype, None)) or self._type(rtype, None)
        self.batch.append((
            self.writer.person_id, rec.identity(rtype, source, s, e, identity_value), type_id, self._source(attrs),
            None, identity_value if not local_day else None, None, s, e, None if local_day else offset,
            health.metadata_json(meta),
        ))

    def workout(self, tree: list) -> None:
        self.workouts += 1
        self.spool.write(tree_json(tree) + "\n")

    def other(self, tag: str) -> None:
        self.other_tags[tag] = self.other_tags.get(tag, 0) + 1


_POINT = frozenset(rec.POINT_KINDS)
_KINDS = rec.KINDS  # SLEEP is not in it: its value is a category, handled by rec.map_value
# Every valid ":MM:SS" -> seconds into the hour: one lookup checks and converts the
# part of a date that is not cached.
_MINUTES = {f":{m:02d}:{s:02d}": 60 * m + s for m in range(60) for s in range(60)}
_blake2b = hashlib.blake2b
_TIMES = rec.IDENTITY_TIMES.pack


@dataclass
class AppleHealthImporter:
    """The ``apple_health`` stream importer (entry point ``connectors.apple_health:IMPORTER``)."""

    format: str = "apple_health"
    batch_size: int = BATCH

    def claims(self, path: Path, head: bytes) -> bool:
        return claims(path, head)

    def import_path(self, path: Path, store, *, person: str, source: str = "apple_health",
                    progress: Callable[[int, int], None] | None = None) -> StreamReport:
        path = Path(path)
        name = str(path)
        export = open_export(path)
        report = StreamReport(path=name)
        try:
            writer = health.RecordWriter(store.engine, person)
            with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
                collector = _Collector(writer, name, spool, export)
                batches = _BatchWriter(writer)

                def flush(final: bool = False) -> None:
                    if final or len(collector.batch) >= self.batch_size:
                        batches.put(collector.batch, collector.points, collector._key(), collector.index)
                        collector.batch, collector.points = [], []
                    if progress is not None:
                        progress(export.total if final else export.position(), export.total)

                try:
                    try:
                        with export.main() as stream:
                            parse_stream(stream, collector, export.main_name if export._zip else name, after_chunk=flush)
                    except DecodeError as exc:
                        # Damaged after a good start (a truncated download): keep what was read,
                        # as the file decoders salvage a truncated recording; nothing read -> reject.
                        if collector.index == 0 and collector.workouts == 0:
                            raise
                        report.warnings.append(f"the export is damaged, everything before the damage was kept: {exc}")
                    flush(final=True)
                finally:
                    batches.close()  # on an error too: the batches already read are a committed prefix
                report.measurements = batches.new
                report.skipped = batches.seen - batches.new + min(collector.skip, collector.index)
                spool.seek(0)
                for line in spool:
                    self._workout(json.loads(line), store, writer, export, person, source, report)
                writer.write([], [], export_key=collector._key(), done=collector.index, finished=True)
            for why, n in collector.bad.items():
                report.warnings.append(f"{n} record(s) skipped: {why} (first: {collector.bad_example[why]})")
            for tag, n in sorted(collector.other_tags.items()):
                report.warnings.append(f"{n} <{tag}> element(s) kept out (not records, workouts or summaries)")
            report.warnings.extend(export.warnings)
        finally:
            export.close()
        return report

    def _workout(self, tree: list, store, writer: health.RecordWriter, export: ExportInput, person: str, source: str,
                 report: StreamReport) -> None:
        attrs = tree[1]
        label = workout_name(tree)
        try:
            start, _ = rec.parse_date(attrs.get("startDate", ""))
            end, _ = rec.parse_date(attrs.get("endDate", ""))
        except rec.BadDate as exc:
            report.warnings.append(f"workout skipped: {exc}")
            return
        hr = health.samples_between(store.engine, writer.person_id, "hr_bpm", start, end)
        own = [(t, v) for t, v, s in hr if s == attrs.get("sourceName")]
        heart_rate = own or _one_per_time([(t, v) for t, v, _ in hr])
        reference = route_reference(tree)
        route = export.route(reference) if reference else None
        data = workout_blob(tree, heart_rate, route)
        sha = hashlib.sha256(data).hexdigest()
        if store.has_file(sha):
            return
        origin = Provenance(source=f"{source}:{WORKOUT_FORMAT}", sha256=sha, received_at=datetime.now(timezone.utc),
                            name=f"{Path(report.path).name}#{label}")
        try:
            decoded = decode_workout(data, origin)
        except DecodeError as exc:
            report.warnings.append(f"workout {label} skipped: {exc.why}")
            return
        activities = [replace(a, person=person) for a in decoded.activities]
        saved = store.save_file(data=data, sha256=sha, name=origin.name, fmt=WORKOUT_FORMAT, source=origin.source,
                                person=person, received_at=origin.received_at, activities=activities, measurements=[])
        report.activity_ids.extend(saved.activity_ids)
        report.merged_ids.extend(saved.merged_ids)
        for activity in activities:
            report.warnings.extend(f"workout {label}: {w}" for w in activity.warnings)


class _BatchWriter:
    """Commits batches on a writer thread, in document order, so the checkpoint always
    names a prefix of the document.

    The thread overlaps the database's work (SQLite's B-tree inserts and commits and
    PostgreSQL's COPY all run without the GIL) with the parse. The queue holds at most
    two batches, which bounds memory and makes a slow database slow the parse down.
    """

    def __init__(self, writer: health.RecordWriter) -> None:
        self.writer = writer
        self.new = self.seen = 0
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="apple-health-writer", daemon=True)
        self._thread.start()

    def put(self, batch: list, points: list, key: str, done: int) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((batch, points, key, done))

    def close(self) -> None:
        """Wait until every batch is committed; raises what the writer raised."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            with self.writer.bulk() as write:
                while (item := self._queue.get()) is not None:
                    batch, points, key, done = item
                    self.new += write(batch, points, export_key=key, done=done)
                    self.seen += len(batch)
        except BaseException as exc:  # handed to the importing thread by put/close
            self._error = exc
            while self._queue.get() is not None:  # keep put() from blocking forever
                pass


def _one_per_time(samples: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    seen: dict[datetime, float] = {}
    for t, v in samples:
        seen.setdefault(t, v)
    return sorted(seen.items())


IMPORTER = AppleHealthImporter()

__all__ = ["AppleHealthImporter", "IMPORTER"]

"""The Garmin Connect account export (``*.zip`` from Garmin's data management page).

Layout (CONVENTIONS.md section 4)::

    DI_CONNECT/DI-Connect-Fitness/<user>_0_summarizedActivities.json
    DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip   (older: DI-Connect-Fitness-Uploaded-Files)
    DI_CONNECT/DI-Connect-User/user_profile.json, ...

What :meth:`ConnectExport.import_path` does, top to bottom:

1. Every nested ``UploadedFiles_*.zip`` (the original FIT/GPX/TCX uploads) is
   copied to a temporary file under the data directory (so a gigabyte part costs
   disk, not memory) and its members go through the normal pipeline one by one,
   with :mod:`hub.inputs`' limits (member size, nesting depth, hidden files).
   Each file has its own SHA-256, so importing the export again adds nothing.
2. Every entry of ``*_summarizedActivities.json`` is stored as a file of its own
   (format ``garmin_summary``; the bytes are the entry's canonical JSON) holding one
   summary-only activity. An entry whose workout came with a FIT file in step 1
   joins that workout through the normal dedupe (same start, duration and speed),
   as a further version, instead of doubling it. Multisport parents (a sum of
   other entries) are skipped.

Nothing is extracted under a member's own name, so a ``../`` in a member name can
never write outside anything; such names are still refused, as no real export has
them.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from hub.errors import DecodeError
from hub.inputs import MAX_MEMBER_BYTES, _members
from hub.model import Decoded, Provenance
from hub.pipeline import Duplicate, Imported, Rejected, ingest
from hub.plugins import StreamReport

from . import formats
from .connect_summary import SummaryError, from_export, is_multisport_parent

FORMAT = "garmin_connect_export"
SUMMARY_FORMAT = "garmin_summary"
# A nested upload archive is copied to disk; beyond this it is not an export part
# (Garmin splits uploads into parts well below it) but a decompression bomb.
MAX_NESTED_BYTES = 8 * 1024**3
_SUMMARIES = re.compile(r"(^|/)[^/]*summarizedActivities[^/]*\.json$", re.IGNORECASE)
_UPLOADS = re.compile(r"(^|/)UploadedFiles[^/]*\.zip$", re.IGNORECASE)
_COPY_CHUNK = 1024 * 1024


def claims(path: Path, head: bytes) -> bool:
    """A zip whose members include Garmin's ``DI_CONNECT/`` tree."""
    if not head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as archive:  # reads the central directory only
            return any(n.startswith("DI_CONNECT/") or "/DI-Connect-" in n or n.startswith("DI-Connect-") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry is stored as: the same entry always hashes the same."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_summary(data: bytes, origin: Provenance) -> Decoded:
    """Decoder of the stored ``garmin_summary`` bytes (used again by ``reprocess``)."""
    try:
        entry = json.loads(data)
        if not isinstance(entry, dict):
            raise SummaryError("not a JSON object")
        if is_multisport_parent(entry):
            return Decoded(not_activity="multisport parent summary: its parts are activities of their own")
        return Decoded(activities=[from_export(entry, origin)])
    except (ValueError, TypeError) as exc:  # JSONDecodeError and SummaryError are ValueErrors
        raise DecodeError(origin.name, f"unreadable Garmin summary entry: {exc}") from exc


class ConnectExport:
    """The ``garmin_connect_export`` stream importer."""

    format = FORMAT

    def claims(self, path: Path, head: bytes) -> bool:
        return claims(Path(path), head)

    def import_path(
        self,
        path: Path,
        store,
        *,
        person: str,
        source: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> StreamReport:
        path = Path(path)
        report = StreamReport(path=str(path))
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DecodeError(str(path), f"not a readable zip archive: {exc}") from exc
        with archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            total = sum(i.compress_size for i in infos) or 1
            done = 0
            summaries = []
            for info in infos:
                if not _safe_name(info.filename):
                    report.warnings.append(f"{path.name}!{info.filename}: unsafe member name refused")
                elif _UPLOADS.search(info.filename):
                    self._uploads(archive, info, path, store, person, source, report)
                elif _SUMMARIES.search(info.filename):
                    summaries.append(info)
                done += info.compress_size
                if progress:
                    progress(done, total)
            # After the uploads, so each summary meets its FIT-backed workout; the
            # dedupe result does not depend on the order, the report reads better.
            for info in summaries:
                self._summaries(archive, info, path, store, person, source, report)
        return report

    # -- uploaded original files ----------------------------------------------------

    def _uploads(self, archive, info, path, store, person, source, report) -> None:
        label = f"{path.name}!{info.filename}"
        home = Path(store.home)
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home, prefix="garmin-export-", suffix=".zip") as copy:
            try:
                _copy_capped(archive, info, copy)
                inner = zipfile.ZipFile(copy)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
                report.warnings.append(f"{label}: cannot read nested zip: {exc}")
                return
            with inner:
                decoders = formats.decoders()
                # depth=1: the uploads may not nest further zips (hub.inputs refuses them).
                for payload in _members(inner, label, depth=1):
                    if payload.data is None:
                        report.warnings.append(f"{payload.name}: {payload.error}")
                        continue
                    outcome = ingest(
                        store,
                        payload.data,
                        name=payload.name,
                        decoders=decoders,
                        sniff=formats.sniff,
                        person=person,
                        source=source,
                    )
                    _count(report, outcome)

    # -- summarizedActivities.json ----------------------------------------------------

    def _summaries(self, archive, info, path, store, person, source, report) -> None:
        label = f"{path.name}!{info.filename}"
        if info.file_size > MAX_MEMBER_BYTES:
            report.warnings.append(f"{label}: {info.file_size} bytes, over the {MAX_MEMBER_BYTES // 2**20} MiB limit; skipped")
            return
        try:
            with archive.open(info) as fh:
                raw = fh.read(MAX_MEMBER_BYTES + 1)
            if len(raw) > MAX_MEMBER_BYTES:
                raise ValueError(f"inflates beyond {MAX_MEMBER_BYTES // 2**20} MiB")
            doc = json.loads(raw.decode("utf-8-sig"))
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
            report.warnings.append(f"{label}: unreadable: {exc}")
            return
        received = datetime.now(timezone.utc)
        for index, entry in enumerate(_entries(doc)):
            name = f"{label}#{entry.get('activityId', index)}"
            if is_multisport_parent(entry):
                continue  # a sum of other entries: storing it would double their hours
            data = canonical(entry)
            sha = hashlib.sha256(data).hexdigest()
            if store.has_file(sha):
                report.skipped += 1
                continue
            origin = Provenance(source=f"{source}:{SUMMARY_FORMAT}", sha256=sha, received_at=received, name=name)
            try:
                activity = replace(from_export(entry, origin), person=person)
            except SummaryError as exc:
                report.warnings.append(f"{name}: skipped: {exc}")
                continue
            saved = store.save_file(
                data=data,
                sha256=sha,
                name=name,
                fmt=SUMMARY_FORMAT,
                source=origin.source,
                person=person,
                received_at=received,
                activities=[activity],
                measurements=[],
            )
            if saved.duplicate:
                report.skipped += 1
            else:
                report.activity_ids.extend(saved.activity_ids)
                report.merged_ids.extend(saved.merged_ids)


class SummaryDecoder:
    """:class:`hub.plugins.FileDecoder` for stored ``garmin_summary`` entries. It
    never claims bytes by sniffing: only the export importer writes this format."""

    format = SUMMARY_FORMAT

    def sniff(self, name: str, head: bytes) -> bool:
        return False

    def decode(self, data: bytes, origin: Provenance) -> Decoded:
        return decode_summary(data, origin)


# -- helpers ---------------------------------------------------------------------


def _safe_name(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]


def _copy_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out) -> None:
    """Copy one member to ``out``, refusing one whose header declares more than
    MAX_NESTED_BYTES and, should the header lie, stopping once that much came out."""
    if info.file_size > MAX_NESTED_BYTES:
        raise ValueError(f"member is {info.file_size} bytes, over the {MAX_NESTED_BYTES // 2**20} MiB limit")
    written = 0
    with archive.open(info) as fh:
        while chunk := fh.read(_COPY_CHUNK):
            written += len(chunk)
            if written > MAX_NESTED_BYTES:
                raise ValueError(f"member inflates beyond {MAX_NESTED_BYTES // 2**20} MiB")
            out.write(chunk)
    out.flush()
    out.seek(0)


def _entries(doc: Any) -> list[dict[str, Any]]:
    """Entries of ``[{"summarizedActivitiesExport": [...]}]`` (the export's shape)
    or of a bare list."""
    found: list[dict[str, Any]] = []
    for item in doc if isinstance(doc, list) else [doc]:
        if isinstance(item, dict) and isinstance(item.get("summarizedActivitiesExport"), list):
            found.extend(e for e in item["summarizedActivitiesExport"] if isinstance(e, dict))
        elif isinstance(item, dict) and "activityId" in item:
            found.append(item)
    return found


def _count(report: StreamReport, outcome) -> None:
    if isinstance(outcome, Imported):
        report.activity_ids.extend(outcome.activity_ids)
        report.merged_ids.extend(outcome.merged_ids)
        report.measurements += outcome.measurements
        report.warnings.extend(f"{outcome.path}: {w}" for w in outcome.warnings)
    elif isinstance(outcome, Duplicate):
        report.skipped += 1
    elif isinstance(outcome, Rejected):
        report.warnings.append(f"{outcome.path}: rejected: {outcome.reason}")

"""One pass over a FIT byte stream: collect what the FIT decoder needs, nothing more.

This module only reads. It walks fitdecode's frames once and sorts them into a
:class:`Scan`: record values as sparse columns (row index + value, so a record that
lacks a field costs nothing), summary messages (session, lap, length, set, ...) as
plain dicts, and any defect met on the way (bad CRC, truncation, garbage). Turning
those parts into the canonical model is :mod:`fit_build`'s job.

Speed decisions, measured on a 100k-record file:

* ``processor=None``: fitdecode's default processor turns every ``date_time`` into a
  ``datetime`` and looks up several ``process_*`` methods per field; raw FIT seconds
  are all we need (offsets are integer differences), and skipping it makes the whole
  decode faster than a bare loop with the default reader.
* Record fields are dispatched through a dict keyed by fitdecode's field *object*
  (profile fields are shared singletons), resolved once per field and cached, so the
  inner loop is one dict lookup and two list appends per present value.
* CRCs are still computed (``READONLY``) so a corrupt file is reported, never refused.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Any

import fitdecode
from fitdecode import CrcCheck, ErrorHandling
from fitdecode.exceptions import FitEOFError, FitHeaderError, FitParseError
from fitdecode.records import FitCRC, FitDataMessage, FitHeader
from fitdecode.types import DevField

# Global message numbers (FIT profile).
MESG_FILE_ID = 0
MESG_SESSION = 18
MESG_LAP = 19
MESG_RECORD = 20
MESG_DEVICE_INFO = 23
MESG_WEIGHT_SCALE = 30
MESG_ACTIVITY = 34
MESG_FILE_CREATOR = 49
MESG_SPORT = 12
MESG_HRV = 78
MESG_LENGTH = 101
MESG_TIMESTAMP_CORRELATION = 162
MESG_SET = 225

# Summary-like messages kept whole (as name -> value dicts), by message number.
KEPT_MESSAGES: dict[int, str] = {
    MESG_FILE_ID: "file_id",
    MESG_SESSION: "session",
    MESG_LAP: "lap",
    MESG_DEVICE_INFO: "device_info",
    MESG_WEIGHT_SCALE: "weight_scale",
    MESG_ACTIVITY: "activity",
    MESG_FILE_CREATOR: "file_creator",
    MESG_SPORT: "sport",
    MESG_LENGTH: "length",
    MESG_TIMESTAMP_CORRELATION: "timestamp_correlation",
    MESG_SET: "set",
}

# Record fields read into sparse columns, by FIT profile name. Several names can feed
# one channel; :mod:`fit_build` decides precedence (enhanced_* over the plain field).
RECORD_FIELDS: frozenset[str] = frozenset(
    {
        "timestamp",
        "position_lat",
        "position_long",
        "altitude",
        "enhanced_altitude",
        "distance",
        "heart_rate",
        "cadence",
        "fractional_cadence",
        "power",
        "speed",
        "enhanced_speed",
        "temperature",
    }
)

FIT_HEADER_MAGIC = b".FIT"


@dataclass
class Sparse:
    """One record column as (row index, value) pairs; only present values are stored."""

    rows: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)


@dataclass
class DevColumn:
    """A developer field of the record message, with its declared unit."""

    name: str
    units: str | None
    data: Sparse
    described: bool = True  # False: no field_description, values are raw bytes


@dataclass
class Scan:
    """Everything one pass over a FIT stream found, still in FIT terms (raw seconds)."""

    records: int = 0  # number of record messages
    columns: dict[str, Sparse] = field(default_factory=dict)  # by FIT field name
    dev_columns: dict[tuple[int | None, int, str], DevColumn] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    file_id: dict[str, Any] | None = None
    file_id_raw: dict[str, Any] = field(default_factory=dict)
    # hrv messages: (number of records read before it, R-R intervals in s)
    hrv: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)
    segments: int = 0  # FIT headers seen (chained files have several)
    complete_segments: int = 0  # segments that ended with their CRC
    crc_mismatch: bool = False
    header_patched: int | None = None  # declared body size that was repaired
    error: BaseException | None = None  # what stopped the pass early, if anything
    error_offset: int | None = None  # byte offset of that error, when known
    data_messages: int = 0

    def kept(self, name: str) -> list[dict[str, Any]]:
        return self.messages.get(name, [])


def repair_empty_header(data: bytes) -> tuple[bytes, int | None]:
    """Give a header that declares 0 data bytes the data that actually follows it.

    Some recorders write the header first and only fill in the data size when the
    recording ends; if they crash, the file says "0 bytes" and yet holds the whole
    ride. A legitimately empty segment is followed by its CRC and either the end of
    the file or the next header, so anything else after it is taken as the body.
    Returns the (possibly) repaired bytes and the declared size when repaired.
    """
    if len(data) < 12 or data[8:12] != FIT_HEADER_MAGIC:
        return data, None
    header_size = data[0]
    if header_size < 12 or len(data) <= header_size + 2:
        return data, None
    (body_size,) = struct.unpack_from("<I", data, 4)
    if body_size != 0:
        return data, None
    after = header_size + 2
    if len(data) == after or data[after + 8 : after + 12] == FIT_HEADER_MAGIC:
        return data, None
    fixed = bytearray(data)
    struct.pack_into("<I", fixed, 4, len(data) - header_size)
    if header_size >= 14:
        fixed[12:14] = b"\x00\x00"  # a null header CRC means "not computed"
    return bytes(fixed), body_size


def _message_dict(frame: FitDataMessage, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Name -> value of a summary message; the first non-empty value of a name wins.

    fitdecode expands component fields before their parent (``enhanced_speed`` comes
    before ``speed``), and an expanded field can repeat a name with an empty value.
    Developer fields are left out: their names are free text and could shadow a
    profile field.
    """
    out: dict[str, Any] = {}
    for fd in frame.fields:
        f = fd.field
        if f is None or f.__class__ is DevField:
            continue
        value = fd.value
        if value is None:
            continue
        name = f.name
        if name not in out:
            out[name] = value
            if raw is not None:
                raw[name] = fd.raw_value
    return out


def _dev_name(f: DevField) -> tuple[str, str | None, bool]:
    """Column name, units and whether the field had a description."""
    name = f.name.replace("\x00", "").strip() if isinstance(f.name, str) else ""
    described = bool(name)
    if not name:
        # No field_description: a stable name from the developer index and number.
        name = f"dev_{f.dev_data_index}_{f.def_num}"
    units = f.units.replace("\x00", "").strip() if isinstance(f.units, str) else None
    return name, units or None, described


class _RecordSlots:
    """Resolves a record field object to the sparse column it feeds (cached)."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.cache: dict[Any, tuple[Any, Any] | None] = {}

    def resolve(self, f: Any) -> tuple[Any, Any] | None:
        scan = self.scan
        if f is None:
            slot = None
        elif f.__class__ is DevField:
            name, units, described = _dev_name(f)
            key = (f.dev_data_index, f.def_num, name)
            column = scan.dev_columns.get(key)
            if column is None:
                column = DevColumn(name=name, units=units, data=Sparse(), described=described)
                scan.dev_columns[key] = column
            slot = (column.data.rows.append, column.data.values.append)
        elif f.name in RECORD_FIELDS:
            sparse = scan.columns.get(f.name)
            if sparse is None:
                sparse = scan.columns[f.name] = Sparse()
            slot = (sparse.rows.append, sparse.values.append)
        else:
            slot = None
        self.cache[f] = slot
        return slot


_MISSING = object()


def scan_fit(data: bytes) -> Scan:
    """Read every frame of ``data``; stop at the first unreadable byte and record why.

    Never raises for bad input: the error and its offset are stored on the result,
    so the caller can decide between salvaging what was read and refusing the file.
    """
    scan = Scan()
    data, declared = repair_empty_header(data)
    scan.header_patched = declared
    reader = fitdecode.FitReader(
        io.BytesIO(data),
        processor=None,
        check_crc=CrcCheck.READONLY,
        # Lenient: a field of the wrong size or a developer field without its
        # description is read as bytes instead of stopping the whole file.
        error_handling=ErrorHandling.IGNORE,
    )
    slots = _RecordSlots(scan)
    cache_get = slots.cache.get
    resolve = slots.resolve
    kept = KEPT_MESSAGES
    messages = scan.messages
    hrv = scan.hrv
    nrec = 0
    ndata = 0
    try:
        for frame in reader:
            if frame.__class__ is FitDataMessage:
                ndata += 1
                num = frame.def_mesg.global_mesg_num
                if num == MESG_RECORD:
                    for fd in frame.fields:
                        value = fd.value
                        if value is None:
                            continue
                        f = fd.field
                        slot = cache_get(f, _MISSING)
                        if slot is _MISSING:
                            slot = resolve(f)
                        if slot is not None:
                            slot[0](nrec)
                            slot[1](value)
                    nrec += 1
                elif num == MESG_HRV:
                    for fd in frame.fields:
                        f = fd.field
                        if f is not None and f.__class__ is not DevField and f.name == "time":
                            value = fd.value
                            hrv.append((nrec, value if isinstance(value, tuple) else (value,)))
                else:
                    name = kept.get(num)
                    if name is None:
                        continue
                    if num == MESG_FILE_ID:
                        raw: dict[str, Any] = {}
                        message = _message_dict(frame, raw)
                        if scan.file_id is None:
                            scan.file_id = message
                            scan.file_id_raw = raw
                    else:
                        message = _message_dict(frame)
                    messages.setdefault(name, []).append(message)
            elif frame.__class__ is FitHeader:
                scan.segments += 1
                if frame.crc_matched is False:
                    scan.crc_mismatch = True
            elif frame.__class__ is FitCRC:
                scan.complete_segments += 1
                if not frame.matched:
                    scan.crc_mismatch = True
    except Exception as exc:  # noqa: BLE001 - any library failure ends the pass
        # fitdecode raises its own errors, but also AssertionError, struct.error,
        # KeyError, IndexError, ... on corrupt input; all of them mean "stop here".
        scan.error = exc
        scan.error_offset = _offset_of(exc, reader)
    finally:
        reader.close()
    scan.records = nrec
    scan.data_messages = ndata
    return scan


def _offset_of(exc: BaseException, reader: fitdecode.FitReader) -> int | None:
    offset = getattr(exc, "offset", None)
    if isinstance(offset, int):
        return offset
    # The reader's position of the chunk being read; private, so read defensively.
    offset = getattr(reader, "_chunk_offset", None)
    return offset if isinstance(offset, int) else None


def describe_error(exc: BaseException) -> str:
    """A short, human reason for a fitdecode failure (no library jargon)."""
    if isinstance(exc, FitEOFError):
        return "file ends in the middle of a message (truncated)"
    if isinstance(exc, FitHeaderError):
        return "not a FIT file: bad header"
    if isinstance(exc, FitParseError):
        text = str(exc)
        if "not defined" in text and "local message" in text:
            return "data message uses a message type that was never defined (corrupt or missing definition)"
        return "malformed FIT data"
    if isinstance(exc, RecursionError):
        return "malformed FIT data (nesting too deep)"
    return f"malformed FIT data ({type(exc).__name__})"


__all__ = ["Scan", "Sparse", "DevColumn", "scan_fit", "describe_error", "repair_empty_header"]

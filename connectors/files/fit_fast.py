"""Fast FIT scanner: the same :class:`fit_scan.Scan` as fitdecode's pass, many times faster.

How it is fast: each definition message is compiled once (:mod:`fit_compile`, cached
across files by its bytes). A record message is then only copied, as raw bytes, to
the buffer of its layout, and a run of back-to-back records is copied in one slice;
at the end of the file each wanted field is cut out of that buffer for all records
at once (strided slices, one ``struct`` call) and scaled with C-level ``map``
(:func:`_columns`), so no per-record dict or tuple is ever built. The CRC of each
segment is one call to a compiled CRC-16 (``fastcrc``; pure Python if missing).

How it stays exact: everything the compiled layouts do not cover (summaries,
developer-field descriptions, accumulated components, compressed timestamps...) is
decoded message by message with fitdecode's rules (:mod:`fit_fast_message`), using
fitdecode's own profile objects. A damaged file stops where fitdecode stops, with
fitdecode's error and byte offset, keeping what fitdecode keeps (truncation, a bad
or partial header, an undefined local message, a message over the declared size, a
missing CRC). What it does not imitate (fitdecode failing in its own arithmetic on
a corrupt summary or HR message, for instance) raises :class:`FastUnsupported`, and
the caller hands the file to fitdecode, the reference. The fast path never guesses.
"""

from __future__ import annotations

import struct
import sys
from bisect import bisect_left
from itertools import compress, repeat
from operator import and_, eq, le, ne, rshift, sub, truediv
from typing import Any

from fitdecode.exceptions import FitEOFError, FitHeaderError, FitParseError

from .fit_compile import (
    ARRAY,
    FAST_HR,
    FAST_HRV,
    FAST_RECORD,
    GENERIC,
    HR_START,
    HR_TIMESTAMP,
    NAN,
    SCALAR,
    SKIP,
    STRING,
    Layout,
    LayoutCache,
    compile_layout,
)
from .fit_fast_message import (
    ReaderState,
    add_developer_data_id,
    add_field_description,
    as_dict,
    decode_message,
    dev_field,
    scale_offset,
)
from .fit_profile import MESG_NUM_DEVELOPER_DATA_ID, MESG_NUM_FIELD_DESCRIPTION, MESG_NUM_HR, DevField
from .fit_scan import (
    FIT_HEADER_MAGIC,
    KEPT_MESSAGES,
    MESG_FILE_ID,
    MESG_HRV,
    MESG_RECORD,
    RECORD_FIELDS,
    DevColumn,
    Scan,
    Sparse,
    _dev_name,
    repair_empty_header,
)

try:  # a compiled CRC-16/ARC: the pure-Python loop below costs more than the decode
    from fastcrc import crc16 as _fastcrc16

    def crc16(data: Any) -> int:
        return _fastcrc16.arc(data)  # any buffer: a memoryview slice is not copied

    CRC_COMPILED = True
except ImportError:  # pragma: no cover - exercised by the fallback test
    CRC_COMPILED = False

    def crc16(data: Any) -> int:
        return crc16_python(data)


def _nibble_table() -> tuple[int, ...]:
    """FIT's CRC-16 (CRC-16/ARC: reflected polynomial 0xA001, start 0) per 4-bit nibble."""
    table = []
    for crc in range(16):
        for _ in range(4):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _nibble_table()


def crc16_python(data: Any) -> int:
    table = _CRC_TABLE
    crc = 0
    for byte in bytes(data):
        tmp = table[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ table[byte & 0xF]
        tmp = table[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ table[(byte >> 4) & 0xF]
    return crc


class FastUnsupported(Exception):
    """The fast scanner does not handle this file; fitdecode must read it."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(f"{reason}" + (f" at byte {offset}" if offset is not None else ""))


class _Retrack(Exception):
    """Restart the pass keeping track of timestamps (a compressed or HR message came)."""


class _Stop(Exception):
    """fitdecode would stop here: keep what was read, with fitdecode's error and offset."""

    def __init__(self, error: BaseException, offset: int) -> None:
        self.error = error
        self.offset = offset
        super().__init__(str(error))


class _Strict(Exception):
    """Restart the pass decoding guarded record layouts one message at a time."""


_HEADER = struct.Struct("<2BHI4s")
_LAYOUTS = LayoutCache()  # compiled definitions are pure data: safe to share across files


class _Sink:
    """The raw bytes of every record message read with one layout, back to back."""

    __slots__ = ("layout", "rows", "buf")

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.rows: list[int] = []  # filled from the runs at the end of the pass
        self.buf = bytearray()

    def count(self) -> int:
        return len(self.buf) // self.layout.size


# Loop-only kinds, next to the layout kinds of fit_compile.
_FAST_RECORD_TS = 10  # FAST_RECORD while timestamps are tracked
_DEFINE = 11
_COMPRESSED = 12
_UNDEFINED = 13


class _Slot:
    """What the loop needs for one record header byte."""

    __slots__ = ("layout", "kind", "size", "add_bytes", "sink", "ts_unpack", "ts_offset", "ts_invalid")

    def __init__(self, kind: int, layout: Layout | None = None, sink: _Sink | None = None) -> None:
        self.kind = kind
        self.layout = layout
        self.sink = sink
        self.size = layout.size if layout is not None else 0
        self.add_bytes = sink.buf.extend if sink is not None else None
        self.ts_unpack = layout.ts_unpack if layout is not None else None
        self.ts_offset = layout.ts_offset if layout is not None else 0
        self.ts_invalid = layout.ts_invalid if layout is not None else None


_DEFINE_SLOT = _Slot(_DEFINE)
_COMPRESSED_SLOT = _Slot(_COMPRESSED)
_UNDEFINED_SLOT = _Slot(_UNDEFINED)


def _fresh_table() -> list[_Slot]:
    """Header byte -> slot: bit 7 compressed timestamp, bit 6 definition, else local bits 0-3."""
    return [_COMPRESSED_SLOT if h & 0x80 else _DEFINE_SLOT if h & 0x40 else _UNDEFINED_SLOT for h in range(256)]


class _Pass:
    """One pass over a whole FIT byte stream (all chained segments)."""

    def __init__(self, data: bytes, track: bool, strict: bool) -> None:
        self.data = data
        self.track = track  # follow timestamps (needed by compressed headers and HR)
        self.strict = strict  # decode guarded record layouts message by message
        self.scan = Scan()
        self.sinks: dict[int, _Sink] = {}  # by id(layout): layouts outlive the pass
        self.generic_columns: dict[Any, tuple[list[int], list[Any], tuple[int, int], Any]] = {}
        self.nrec = 0
        self.nother = 0  # data messages other than fast-path records
        self.runs: list[tuple[_Sink | None, int]] = []  # (sink, first row) of each run of records
        # hrv messages read fast, kept raw until the end: (records before, layout, raw values)
        self.hrv_raw: list[tuple[int, Layout, tuple[int, ...]]] = []

    # ------------------------------------------------------------------ segments

    def run(self) -> Scan:
        data = self.data
        pos = 0
        n = len(data)
        try:
            while pos < n:  # fitdecode: no byte left where a header would start is a clean end
                pos = self.segment(pos)
        except _Stop as stop:
            self.scan.error = stop.error
            self.scan.error_offset = stop.offset
        self.finish()
        return self.scan

    def segment(self, start: int) -> int:
        """One FIT segment: header, messages, CRC; fitdecode's checks in its order."""
        data = self.data
        scan = self.scan
        n = len(data)
        if n - start < 12:
            eof = FitEOFError(12, n - start, start)
            raise _Stop(FitHeaderError(f"file truncated? {eof}"), start)
        header_size, _proto, _profile, body_size, magic = _HEADER.unpack_from(data, start)
        if header_size < 12 or magic != FIT_HEADER_MAGIC:
            raise _Stop(FitHeaderError(f"not a FIT file @ {start}"), start)
        if header_size > 12:
            extra = header_size - 12
            if extra < 2:
                raise _Stop(FitHeaderError(f"unsupported FIT header (CRC field missing; header offset: {start})"), start)
            if n - start - 12 < extra:
                raise _Stop(FitEOFError(extra, n - start - 12, start + 12), start + 12)
            if extra != 2:  # fitdecode unpacks exactly a 2-byte CRC there and fails otherwise
                raise _Stop(struct.error("unpack requires a buffer of 2 bytes"), start)
            (header_crc,) = struct.unpack_from("<H", data, start + 12)
            if header_crc and crc16(data[start : start + 12]) != header_crc:
                scan.crc_mismatch = True
        scan.segments += 1
        body = start + header_size
        end = body + body_size
        self.body(body, end, ReaderState())
        if n - end < 2:
            raise _Stop(FitEOFError(2, max(0, n - end), end), end)
        (footer,) = struct.unpack_from("<H", data, end)
        if crc16(memoryview(data)[start:end]) != footer:
            scan.crc_mismatch = True
        scan.complete_segments += 1
        return end + 2

    # ------------------------------------------------------------------ messages

    def body(self, pos: int, end: int, state: ReaderState) -> None:
        """Read the messages of one segment; the hot loop of the whole decoder.

        A fast record is only copied (its bytes, to its layout's sink), and a run of
        back-to-back ones is copied at once; record rows are not stored per message
        either: a run of records read with one slot is noted once (``runs``) and
        turned into row numbers at the end. Every other message is checked to fit
        before it is used; a fast record that does not fit ends the loop, and what
        fitdecode would say about it is worked out after.
        """
        data = self.data
        stop = min(end, len(data))
        view = memoryview(data)
        table = _fresh_table()
        locals_: list[_Slot | None] = [None] * 16  # by local message number
        nrec = self.nrec
        nother = 0
        hrv_raw = self.hrv_raw
        runs = self.runs
        current = None
        slot = None
        try:
            while pos < stop:
                slot = table[data[pos]]
                kind = slot.kind
                if kind == FAST_RECORD:
                    if slot.sink is not current:
                        runs.append((slot.sink, nrec))
                        current = slot.sink
                    size = slot.size
                    nxt = pos + size
                    if nxt > stop:
                        break  # cut by the end of the data: sorted out below
                    if nxt < stop and data[nxt] == data[pos]:
                        # Back-to-back messages of one layout (the usual case): count
                        # them by their header bytes, one stride apart, copy them at once.
                        strided = data[pos : stop - size + 1 : size]
                        count = len(strided) - len(strided.lstrip(strided[:1]))
                        nxt = pos + count * size
                        nrec += count
                    else:
                        nrec += 1
                    slot.add_bytes(view[pos:nxt])
                    pos = nxt
                    continue
                if kind == _DEFINE:
                    h = data[pos]
                    slot, pos = self.define(pos, end, state, h)
                    local = h & 0xF
                    locals_[local] = slot
                    for high in (0x00, 0x10, 0x20, 0x30):  # bits 4-5 of a data header are unused
                        table[local | high] = slot
                    slot = None
                    continue
                if kind == _COMPRESSED:
                    if not self.track:
                        raise _Retrack()
                    slot = locals_[(data[pos] >> 5) & 0x3]
                    if slot is None:
                        raise _Stop(FitParseError(pos, f"local message {(data[pos] >> 5) & 0x3} not defined"), pos)
                elif kind == _UNDEFINED:
                    raise _Stop(FitParseError(pos, f"local message {data[pos] & 0xF} not defined"), pos)
                if pos + slot.size > stop or slot.layout.poison is not None:
                    if self.check_fits(slot.layout, pos, end):
                        self.decode_then_stop(slot, kind, pos, state)
                nother += 1
                if kind == SKIP:
                    if self.track:
                        layout = slot.layout
                        if layout.ts_unpack is not None:
                            (t,) = layout.ts_unpack(data, pos + layout.ts_offset)
                            if t != layout.ts_invalid:
                                state.compressed_base = state.last_timestamp = t
                elif kind == FAST_HRV:
                    layout = slot.layout
                    hrv_raw.append((nrec, layout, layout.unpack(data, pos + layout.ts_offset)))
                elif kind == FAST_HR:
                    if not self.track:
                        raise _Retrack()
                    _hr_effects(slot.layout, data, pos, state)
                elif kind == _FAST_RECORD_TS:
                    nother -= 1
                    if slot.sink is not current:
                        runs.append((slot.sink, nrec))
                        current = slot.sink
                    slot.add_bytes(view[pos : pos + slot.size])
                    (t,) = slot.ts_unpack(data, pos + slot.ts_offset)
                    if t != slot.ts_invalid:
                        state.compressed_base = state.last_timestamp = t
                    nrec += 1
                else:  # GENERIC, or a compressed-timestamp message
                    if not self.track and slot.layout.global_num == MESG_NUM_HR:
                        raise _Retrack()
                    self.nrec = nrec
                    offset = data[pos] & 0x1F if kind == _COMPRESSED else None
                    nrec = self.generic(slot.layout, pos, offset, state)
                    if slot.layout.global_num == MESG_RECORD:
                        runs.append((None, nrec - 1))  # a record outside any sink ends the run
                        current = None
                pos += slot.size
        except _Stop:
            self.nrec, self.nother = nrec, self.nother + nother
            raise
        self.nrec = nrec
        self.nother += nother
        if pos < end:
            if pos >= len(data):  # the data ends before the declared size: no header byte
                raise _Stop(FitEOFError(1, 0, pos), pos)
            # a fast record that does not fit: cut by the end of the file (fitdecode's
            # EOF at the first field it cannot read), or read whole past the declared
            # size (fitdecode's size assertion); nothing of it is kept either way
            self.check_fits(table[data[pos]].layout, pos, end)
            raise _Stop(AssertionError(), pos)

    def check_fits(self, layout: Layout, pos: int, end: int) -> bool:
        """Whether a data message at ``pos`` crosses the declared end of the data.

        Raises fitdecode's error when it cannot be read whole: cut by the end of the
        file (the first field that does not fit), or with a field of size 0.
        """
        n = len(self.data)
        if pos + layout.size <= n and layout.poison is None:
            return pos + layout.size > end
        for spec in layout.all_specs:
            if spec.count == 0:
                raise _Stop(ValueError("size"), pos)
            at = pos + 1 + spec.offset
            size = spec.count * spec.base_type.size
            if at + size > n:
                raise _Stop(FitEOFError(size, max(0, n - at), at), at)
        raise FastUnsupported("message bounds", pos)  # pragma: no cover - unreachable

    def decode_then_stop(self, slot: _Slot, kind: int, pos: int, state: ReaderState) -> None:
        """A message read whole past the declared end: fitdecode decodes it (and may fail
        there first), then stops on its size assertion. Nothing of it is kept."""
        if kind in (GENERIC, _COMPRESSED):
            layout = slot.layout
            fields = decode_message(layout, self.data, pos, self.data[pos] & 0x1F if kind == _COMPRESSED else None, state)
            if layout.global_num == MESG_NUM_DEVELOPER_DATA_ID:
                add_developer_data_id(fields, state)
            elif layout.global_num == MESG_NUM_FIELD_DESCRIPTION:
                add_field_description(fields, state)
        raise _Stop(AssertionError(), pos)

    def define(self, pos: int, end: int, state: ReaderState, h: int) -> tuple[_Slot, int]:
        data = self.data
        n = len(data)
        fixed_end = pos + 6
        if fixed_end > n:
            raise _Stop(FitEOFError(5, n - pos - 1, pos + 1), pos + 1)
        endian = "<" if not data[pos + 2] else ">"
        (global_num,) = struct.unpack_from(endian + "H", data, pos + 3)
        nfields = data[pos + 5]
        fields_end = fixed_end + 3 * nfields
        if fields_end > n:
            at = fixed_end + 3 * ((n - fixed_end) // 3)
            raise _Stop(FitEOFError(3, n - at, at), at)
        dev_end = fields_end
        ndev = 0
        if h & 0x20:
            if fields_end + 1 > n:
                raise _Stop(FitEOFError(1, 0, fields_end), fields_end)
            ndev = data[fields_end]
            dev_end = fields_end + 1 + 3 * ndev
            if dev_end > n:
                at = fields_end + 1 + 3 * ((n - fields_end - 1) // 3)
                raise _Stop(FitEOFError(3, n - at, at), at)
        if dev_end > end:
            raise _Stop(AssertionError(), pos)  # read whole, then over the declared size
        dev_fields = []
        dev_key = []
        for i in range(ndev):
            at = fields_end + 1 + 3 * i
            number, size, index = data[at], data[at + 1], data[at + 2]
            f = dev_field(state, index, number)
            dev_fields.append((f, number, size))
            dev_key.append((f.type.identifier, f.name, f.units, f.dev_data_index, f.native_field_num, number, size))
        key = (bytes(data[pos + 2 : fields_end]), tuple(dev_key))
        layout = _LAYOUTS.get(key)
        if layout is None:
            fields = [(data[at], data[at + 1], data[at + 2]) for at in range(fixed_end, fields_end, 3)]
            layout = compile_layout(global_num, endian, fields, dev_fields)
            _LAYOUTS.put(key, layout)
        for number in layout.accumulators:  # fitdecode restarts these sums at each definition
            state.accumulators.setdefault(global_num, {})[number] = 0
        kind = layout.kind
        sink = None
        if kind == FAST_RECORD:
            if self.strict and layout.guards:
                kind = GENERIC
            else:
                sink = self.sinks.get(id(layout))
                if sink is None:
                    sink = self.sinks[id(layout)] = _Sink(layout)
                if self.track and layout.ts_slot >= 0:
                    kind = _FAST_RECORD_TS
        return _Slot(kind, layout, sink), dev_end

    def generic(self, layout: Layout, pos: int, time_offset: int | None, state: ReaderState) -> int:
        """Decode one message field by field; returns the record count after it."""
        if layout.poison is not None:
            raise FastUnsupported(layout.poison, pos)
        fields = decode_message(layout, self.data, pos, time_offset, state)
        num = layout.global_num
        scan = self.scan
        nrec = self.nrec
        if num == MESG_RECORD:
            self.record_fields(fields, nrec)
            return nrec + 1
        if num == MESG_HRV:
            for f, value, _raw in fields:
                if f is not None and f.__class__ is not DevField and f.name == "time":
                    self.hrv_raw.append((nrec, None, value if isinstance(value, tuple) else (value,)))
        elif num == MESG_NUM_DEVELOPER_DATA_ID:
            add_developer_data_id(fields, state)
        elif num == MESG_NUM_FIELD_DESCRIPTION:
            add_field_description(fields, state)
        name = KEPT_MESSAGES.get(num)
        if name is not None:
            if num == MESG_FILE_ID:
                raw: dict[str, Any] = {}
                message = as_dict(fields, raw)
                if scan.file_id is None:
                    scan.file_id = message
                    scan.file_id_raw = raw
            else:
                message = as_dict(fields)
            scan.messages.setdefault(name, []).append(message)
        return nrec

    def record_fields(self, fields: list[tuple[Any, Any, Any]], row: int) -> None:
        columns = self.generic_columns
        for position, (f, value, _raw) in enumerate(fields):
            if value is None or f is None:
                continue
            if f.__class__ is DevField:
                key: Any = f
            elif f.name in RECORD_FIELDS:
                key = f.name
            else:
                continue
            column = columns.get(key)
            if column is None:
                column = columns[key] = ([], [], (row, position), f)
            column[0].append(row)
            column[1].append(value)

    # ------------------------------------------------------------------ columns

    def fill_rows(self) -> list[tuple[_Sink | None, int, int]]:
        """Row numbers of each sink from the runs; the runs as (sink, first, stop)."""
        runs = self.runs
        ends = [start for _, start in runs[1:]] + [self.nrec]
        spans = []
        for (sink, start), stop in zip(runs, ends):
            if stop > start:
                spans.append((sink, start, stop))
                if sink is not None:
                    sink.rows.extend(range(start, stop))
        return spans

    def finish(self) -> None:
        scan = self.scan
        scan.records = self.nrec
        spans = self.fill_rows()
        scan.data_messages = self.nother + sum(sink.count() for sink in self.sinks.values())
        seen: dict[Any, tuple[Any, ...]] = {}
        scan.hrv = [_hrv_values(item, seen) for item in self.hrv_raw]
        parts: dict[Any, list[tuple[list[int], list[Any], tuple[int, int], Any, Any]]] = {}
        for sink in self.sinks.values():
            for rows, values, first, target in _columns(sink):
                parts.setdefault(_column_key(target), []).append((rows, values, first, target, sink))
        for rows, values, first, target in self.generic_columns.values():
            parts.setdefault(_column_key(target), []).append((rows, values, first, target, None))
        # fitdecode's pass creates a column when its first value arrives: same order here
        ordered = sorted(parts.items(), key=lambda item: min(p[2] for p in item[1]))
        for key, pieces in ordered:
            first = min(pieces, key=lambda p: p[2])
            rows, values = _merge(pieces, spans)
            if isinstance(key, str):
                scan.columns[key] = Sparse(rows, values)
            else:
                name, units, described = _dev_name(first[3])
                scan.dev_columns[key] = DevColumn(name=name, units=units, data=Sparse(rows, values), described=described)


def _hr_effects(layout: Layout, data: bytes, pos: int, state: ReaderState) -> None:
    """What an HR message changes, without decoding it (the scan keeps none of it).

    fitdecode expands event_timestamp_12 into event times counted from the start
    set by event_timestamp, and asserts that start exists; an all-invalid
    event_timestamp_12 makes its arithmetic fail. Both failures end its pass, so
    they send the file to fitdecode here.
    """
    for op, offset, arg, unpack in layout.hr_ops:
        if op == HR_TIMESTAMP:
            (t,) = unpack(data, pos + offset)
            if t != arg:
                state.last_timestamp = state.compressed_base = t
        elif op == HR_START:
            state.hr_start = state.last_timestamp
        else:
            events = data[pos + offset : pos + offset + arg]
            start = state.hr_start
            if events.count(0xFF) == arg or start.__class__ is not int or start <= 0:
                raise FastUnsupported("hr.event_timestamp_12 without a usable start or value", pos)


def _hrv_values(item: tuple[int, Layout | None, tuple[Any, ...]], seen: dict[Any, tuple[Any, ...]]) -> tuple[int, tuple[Any, ...]]:
    """An hrv message's R-R values as fitdecode gives them (None for invalid ones).

    Intervals repeat a lot (a few hundred distinct values in an hour), so each raw
    tuple is converted once per file (``seen``).
    """
    before, layout, raw = item
    if layout is None:  # decoded field by field already
        return before, raw
    key = (id(layout), raw)
    values = seen.get(key)
    if values is None:
        f, invalid = layout.hrv_field, layout.hrv_invalid
        values = seen[key] = tuple([None if v == invalid else scale_offset(f, v) for v in raw])
    return before, values


def _column_key(target: Any) -> Any:
    if target.__class__ is DevField:
        return (target.dev_data_index, target.def_num, _dev_name(target)[0])
    return target if isinstance(target, str) else target.name


def _extract(buf: bytearray, count: int, stride: int, endian: str, offset: int, fmt: str, size: int) -> list[Any]:
    """One sub-column of ``count`` messages of ``stride`` bytes, for all of them at once.

    The value bytes are gathered with strided slices (one per byte of the value) and
    unpacked by one struct call: no Python-level work per message.
    """
    if fmt == "s":
        gathered = bytearray(count * size)
        for j in range(size):
            gathered[j::size] = buf[offset + j :: stride]
        return [v for (v,) in struct.iter_unpack(f"{size}s", gathered)]
    if size == 1:
        gathered = buf[offset::stride]
    else:
        gathered = bytearray(count * size)
        for j in range(size):
            gathered[j::size] = buf[offset + j :: stride]
    if endian == _NATIVE and fmt in _NATIVE_SIZES and _NATIVE_SIZES[fmt] == size:
        return memoryview(gathered).cast(fmt).tolist()  # a list at once, no tuple between
    return list(struct.unpack(f"{endian}{count}{fmt}", gathered))


# memoryview.cast reads native byte order and sizes: usable when they are FIT's
_NATIVE = "<" if sys.byteorder == "little" else ">"
_NATIVE_SIZES = {fmt: struct.calcsize(fmt) for fmt in "bBhHiIqQfd"}


def _columns(sink: _Sink):
    """(rows, values, (first row, position), target) per emission of a record layout."""
    rows_all = sink.rows
    if not rows_all:
        return
    layout = sink.layout
    count = sink.count()
    if len(rows_all) != count:  # pragma: no cover - a bug, not bad input
        raise FastUnsupported("record rows and bytes disagree")
    cols = [_extract(sink.buf, count, layout.size, layout.endian, *column) for column in layout.columns]
    for slot, width, invalid in layout.guards:
        for col in cols[slot : slot + width]:
            if col.count(invalid) != len(col) if invalid is not NAN else any(v == v for v in col):
                raise _Strict()
    done: dict[tuple[Any, ...], tuple[list[int], list[Any]]] = {}
    for position, emit in enumerate(layout.plan):
        # altitude and its enhanced_altitude component (speed likewise) are the same
        # arithmetic on the same raw values: computed once, the lists shared
        recipe = (emit.slot, emit.form, emit.shift, emit.mask, emit.scale, emit.offset)
        if recipe in done:
            rows, values = done[recipe]
            if rows:
                yield rows, values, (rows[0], position), emit.target
            continue
        if emit.form != SCALAR:
            rows, values = _parsed(emit, cols, rows_all)
            if rows:
                yield rows, values, (rows[0], position), emit.target
            continue
        col = cols[emit.slot]
        invalid = emit.invalid
        # drop the invalid values (NaN is the one float unequal to itself)
        if invalid is NAN:
            mask = list(map(eq, col, col))
        elif invalid in col:
            mask = list(map(ne, col, repeat(invalid)))
        else:
            mask = None
        if mask is None:
            rows, values = rows_all, col
        elif any(mask):
            rows, values = list(compress(rows_all, mask)), list(compress(col, mask))
        else:
            done[recipe] = ([], [])
            continue
        # the same arithmetic as fitdecode, value by value, run by C-level map():
        # int / float(scale) is float(int) / scale, as fitdecode computes it
        if emit.shift is not None:
            values = map(and_, map(rshift, values, repeat(emit.shift)), repeat(emit.mask))
        if emit.scale:
            values = map(truediv, values, repeat(float(emit.scale)))
        if emit.offset:
            values = map(sub, values, repeat(emit.offset))
        if values.__class__ is not list:
            values = list(values)
        done[recipe] = (rows, values)
        yield rows, values, (rows[0], position), emit.target


def _parsed(emit: Any, cols: list[tuple[Any, ...]], rows_all: list[int]) -> tuple[list[int], list[Any]]:
    """Arrays and strings of developer fields, parsed by fitdecode's own parser."""
    parse = emit.parse
    if emit.form == STRING:
        parsed = [parse(v) for v in cols[emit.slot]]
    else:
        parts = cols[emit.slot : emit.slot + emit.width]
        if emit.form == ARRAY:
            invalid = emit.invalid
            clean = not any(v != v for part in parts for v in part) if invalid is NAN else not any(invalid in part for part in parts)
            if clean:  # no element is invalid: the tuples are the values as they are
                return list(rows_all), list(zip(*parts))
            parsed = [tuple(map(parse, t)) for t in zip(*parts)]
        else:
            parsed = [parse(t) for t in zip(*parts)]
    keep = [i for i, v in enumerate(parsed) if v is not None]
    return [rows_all[i] for i in keep], [parsed[i] for i in keep]


def _merge(pieces: list[tuple[Any, ...]], spans: list[tuple[_Sink | None, int, int]]) -> tuple[list[int], list[Any]]:
    """One sparse column from its pieces (one per sink and emission), in record order.

    Every piece is in row order, and the records of one sink come in runs
    (``spans``): walking the runs and taking each run's slice of its sink's piece
    rebuilds fitdecode's order with a few C-level slices per run. When one source
    gives two pieces (a field and a component of another field with the same name),
    one record holds two values; a stable sort by row then keeps them in fitdecode's
    order (fields in definition order, a component before its field).
    """
    if len(pieces) == 1:
        return list(pieces[0][0]), pieces[0][1]
    rows: list[int] = []
    values: list[Any] = []
    grouped: dict[int, list[tuple[Any, ...]]] = {}
    for piece in pieces:
        grouped.setdefault(id(piece[4]), []).append(piece)
    by_source = {}
    for source, group in grouped.items():
        if len(group) == 1:
            by_source[source] = group[0]
        elif all(g[0] == group[0][0] for g in group):
            # the same records give both values (enhanced_speed as a field and as a
            # component of speed): interleave them, record by record, in C
            k = len(group)
            both_rows: list[Any] = [0] * (k * len(group[0][0]))
            both_values: list[Any] = [None] * len(both_rows)
            for j, g in enumerate(group):
                both_rows[j::k] = g[0]
                both_values[j::k] = g[1]
            by_source[source] = (both_rows, both_values)
    if len(by_source) == len(grouped):
        cursor = dict.fromkeys(by_source, 0)
        for sink, _start, stop in spans:
            source = id(sink)
            piece = by_source.get(source)
            if piece is None:
                continue
            piece_rows = piece[0]
            lo = cursor[source]
            hi = bisect_left(piece_rows, stop, lo)
            if hi > lo:
                rows += piece_rows[lo:hi]
                values += piece[1][lo:hi]
                cursor[source] = hi
        return rows, values
    for piece in pieces:
        rows.extend(piece[0])
        values.extend(piece[1])
    if not all(map(le, rows, rows[1:])):
        order = sorted(range(len(rows)), key=rows.__getitem__)
        rows = [rows[i] for i in order]
        values = [values[i] for i in order]
    return rows, values


def scan_fit_fast(data: bytes) -> Scan:
    """Scan ``data`` like :func:`fit_scan.scan_fit`, or raise :class:`FastUnsupported`."""
    repaired, declared = repair_empty_header(data)
    track = strict = False
    try:
        for _attempt in range(3):  # at most: plain, then tracking times, then strict
            try:
                scan = _Pass(repaired, track=track, strict=strict).run()
                break
            except _Retrack:
                track = True
            except _Strict:
                strict = True
        else:  # pragma: no cover - each flag is set once, so the third pass settles
            raise FastUnsupported("no pass settled")
    except FastUnsupported:
        raise
    except Exception as exc:  # noqa: BLE001 - a rule of fitdecode's that fails: let it fail there
        raise FastUnsupported(f"{type(exc).__name__} while decoding ({exc})") from exc
    scan.header_patched = declared
    return scan


__all__ = ["FastUnsupported", "scan_fit_fast", "crc16", "crc16_python", "CRC_COMPILED"]

"""Fast FIT scanner: the same :class:`fit_scan.Scan` as fitdecode's pass, many times faster.

How it is fast: each definition message is compiled once (:mod:`fit_compile`, cached
across files by its bytes). A record message is then only copied, as raw bytes, to
the buffer of its layout, and a run of back-to-back records is copied in one slice;
at the end of the file each wanted field is cut out of that buffer for all records
at once (strided slices, one ``struct`` call), its invalid values found by a byte
search, and scaled by one list comprehension (:func:`_columns`), so no per-record
dict or tuple is ever built; the columns of several layouts are merged by slices,
one per run of records (:func:`_merge`). The CRC of each segment is one call to a
compiled CRC-16 (``fastcrc``; pure Python if missing). The cyclic garbage collector
is paused during a scan (:func:`_collector_paused`).

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

import gc
import struct
import sys
from bisect import bisect_left
from contextlib import contextmanager
from functools import reduce
from itertools import chain, compress, repeat
from operator import eq, iadd, le
from typing import Any, Iterator

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
_DEFINE = 11
_COMPRESSED = 12
_UNDEFINED = 13


class _Slot:
    """What the loop needs for one record header byte."""

    __slots__ = ("layout", "kind", "size", "add_bytes", "sink", "ts_unpack", "ts_offset", "ts_invalid", "track_time")

    def __init__(self, kind: int, layout: Layout | None = None, sink: _Sink | None = None, track_time: bool = False) -> None:
        self.kind = kind
        self.track_time = track_time  # a fast record whose timestamp the pass follows
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
        self.plain_slots: dict[bytes, _Slot] = {}  # by definition bytes, without developer fields
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
        track = self.track
        try:
            while pos < stop:
                slot = table[data[pos]]
                kind = slot.kind
                if kind == SKIP and not track:  # the most common message after records
                    nxt = pos + slot.size
                    if nxt <= stop:  # else: sorted out below, with the other kinds
                        nother += 1
                        pos = nxt
                        continue
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
                        nxt = _run_end(data, pos, size, stop)
                        nrec += (nxt - pos) // size
                    else:
                        nrec += 1
                    slot.add_bytes(view[pos:nxt])
                    if slot.track_time:
                        _last_time(slot, data, pos, nxt, state)
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
                    if not track:
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
                    if track:
                        layout = slot.layout
                        if layout.ts_unpack is not None:
                            (t,) = layout.ts_unpack(data, pos + layout.ts_offset)
                            if t != layout.ts_invalid:
                                state.compressed_base = state.last_timestamp = t
                elif kind == FAST_HRV:
                    layout = slot.layout
                    hrv_raw.append((nrec, layout, layout.unpack(data, pos + layout.ts_offset)))
                elif kind == FAST_HR:
                    if not track:
                        raise _Retrack()
                    _hr_effects(slot.layout, data, pos, state)
                else:  # GENERIC, or a compressed-timestamp message
                    if not track and slot.layout.global_num == MESG_NUM_HR:
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
        if not ndev:
            # Some devices repeat a definition before every message (a Suunto writes
            # 6,000 in an hour): without developer fields, the same bytes give the
            # same slot all pass long.
            plain_key = bytes(data[pos + 2 : fields_end])
            slot = self.plain_slots.get(plain_key)
            if slot is not None:
                layout = slot.layout
                for number in layout.accumulators:  # fitdecode restarts these sums at each definition
                    state.accumulators.setdefault(layout.global_num, {})[number] = 0
                return slot, dev_end
        endian = "<" if not data[pos + 2] else ">"
        (global_num,) = struct.unpack_from(endian + "H", data, pos + 3)
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
        slot = _Slot(kind, layout, sink, self.track and kind == FAST_RECORD and layout.ts_slot >= 0)
        if not ndev:
            self.plain_slots[plain_key] = slot
        return slot, dev_end

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

    def fill_rows(self) -> _Spans:
        """Row numbers of each sink from the runs; the runs, for :func:`_merge`."""
        runs = self.runs
        ends = [start for _, start in runs[1:]] + [self.nrec]
        spans = _Spans()
        for (sink, start), stop in zip(runs, ends):
            if stop > start:
                source = id(sink)
                spans.order.append(source)
                spans.stops.setdefault(source, []).append(stop)
                if sink is not None:
                    cuts = spans.cuts.get(source)
                    if cuts is None:
                        cuts = spans.cuts[source] = []
                    at = len(sink.rows)
                    cuts.append(slice(at, at + stop - start))
                    sink.rows += range(start, stop)
        return spans

    def finish(self) -> None:
        scan = self.scan
        scan.records = self.nrec
        spans = self.fill_rows()
        scan.data_messages = self.nother + sum(sink.count() for sink in self.sinks.values())
        scan.hrv = _hrv_values(self.hrv_raw)
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


def _run_end(data: bytes, pos: int, size: int, stop: int) -> int:
    """Where the run of messages of ``size`` bytes with the header byte at ``pos`` ends.

    The header bytes, one stride apart, are read by strided slices in windows that
    grow fourfold: a short run (records between other messages) reads a few bytes,
    a run of a whole file a few slices.
    """
    last = stop - size + 1  # past the last place a whole message can start
    header = data[pos : pos + 1]
    window = 16
    while True:
        limit = min(last, pos + window * size)
        strided = data[pos:limit:size]
        count = len(strided) - len(strided.lstrip(header))
        pos += count * size
        if count < len(strided) or limit >= last:
            return pos
        window *= 4


def _last_time(slot: _Slot, data: bytes, pos: int, stop: int, state: ReaderState) -> None:
    """What a run of fast records from ``pos`` to ``stop`` does to the time base.

    fitdecode sets it at every valid timestamp; within a run nothing reads it, so
    only the last valid one counts: searched from the end (usually the last record).
    """
    unpack, at, invalid, size = slot.ts_unpack, slot.ts_offset, slot.ts_invalid, slot.size
    at += stop - size
    while at > pos:
        (t,) = unpack(data, at)
        if t != invalid:
            state.compressed_base = state.last_timestamp = t
            return
        at -= size


class _Spans:
    """The non-empty runs of records in file order, by source (a sink, or None for
    records decoded field by field): ``order`` has the source id of each run,
    ``stops`` the row after each run of a source, ``cuts`` each run's slice of its
    sink's rows (and of a column that has a value in every row of the sink)."""

    __slots__ = ("order", "stops", "cuts")

    def __init__(self) -> None:
        self.order: list[int] = []
        self.stops: dict[int, list[int]] = {}
        self.cuts: dict[int, list[slice]] = {}


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


def _hrv_values(items: list[tuple[int, Layout | None, tuple[Any, ...]]]) -> list[tuple[int, tuple[Any, ...]]]:
    """Every hrv message's R-R values as fitdecode gives them (None for invalid ones).

    Items read field by field (layout None) are final already. The others, one per
    heartbeat in some files, are converted per layout all at once (:func:`_hrv_convert`).
    """
    if not items:
        return []
    befores, layouts, raws = zip(*items)
    first = layouts[0]
    # by identity, in C (a Layout compares field by field)
    if first is not None and len(set(map(id, layouts))) == 1:  # the usual case: one layout
        return list(zip(befores, _hrv_convert(first, raws)))
    out = list(zip(befores, raws))
    for layout in {id(lay): lay for lay in layouts if lay is not None}.values():
        indexes = [i for i, lay in enumerate(layouts) if lay is layout]
        for i, values in zip(indexes, _hrv_convert(layout, [raws[i] for i in indexes])):
            out[i] = (befores[i], values)
    return out


def _hrv_convert(layout: Layout, raws: Any) -> list[tuple[Any, ...]]:
    """The raw ``time`` tuples of one hrv layout, scaled (None for invalid values).

    Intervals repeat a lot (a few hundred distinct values in an hour): each distinct
    raw value is converted once, the rest is C-level (a table lookup per value, and
    strided slices to cut the values back into one tuple per message).
    """
    width = len(raws[0])  # the layout's one time field: the same count in every message
    flat = list(chain.from_iterable(raws))
    f, invalid = layout.hrv_field, layout.hrv_invalid
    table = {v: None if v == invalid else scale_offset(f, v) for v in set(flat)}
    converted = list(map(table.__getitem__, flat))
    if width == 1:
        return list(zip(converted))
    return list(zip(*[converted[j::width] for j in range(width)]))


def _column_key(target: Any) -> Any:
    if target.__class__ is DevField:
        return (target.dev_data_index, target.def_num, _dev_name(target)[0])
    return target if isinstance(target, str) else target.name


def _extract(buf: bytearray, count: int, stride: int, endian: str, offset: int, fmt: str, size: int) -> tuple[list[Any], bytearray]:
    """One sub-column of ``count`` messages of ``stride`` bytes, for all of them at once.

    The value bytes are gathered with strided slices (one per byte of the value) and
    unpacked by one struct call: no Python-level work per message. Returns the values
    and their bytes, back to back.
    """
    if size == 1:
        gathered = buf[offset::stride]
    else:
        gathered = bytearray(count * size)
        for j in range(size):
            gathered[j::size] = buf[offset + j :: stride]
    if fmt == "s":
        return [v for (v,) in struct.iter_unpack(f"{size}s", gathered)], gathered
    if endian == _NATIVE and fmt in _NATIVE_SIZES and _NATIVE_SIZES[fmt] == size:
        return memoryview(gathered).cast(fmt).tolist(), gathered  # a list at once, no tuple between
    return list(struct.unpack(f"{endian}{count}{fmt}", gathered)), gathered


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
    extracted = [_extract(sink.buf, count, layout.size, layout.endian, *column) for column in layout.columns]
    cols = [values for values, _raw in extracted]
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
        kept = _valid(rows_all, cols[emit.slot], emit.invalid, extracted[emit.slot][1], layout.endian + layout.columns[emit.slot][1])
        if kept is None:
            done[recipe] = ([], [])
            continue
        rows, values = kept
        values = _arithmetic(values, emit.shift, emit.mask, emit.scale, emit.offset)
        done[recipe] = (rows, values)
        yield rows, values, (rows[0], position), emit.target


def _valid(rows_all: list[int], col: list[Any], invalid: Any, raw: bytearray, fmt: str) -> tuple[list[int], list[Any]] | None:
    """The rows and values of ``col`` that are not its invalid sentinel (None: no value is).

    ``raw``: the bytes of the values, in format ``fmt``. Most columns have no invalid
    value: when the sentinel's bytes appear nowhere in ``raw`` (a memchr-speed
    search), no value is tested at all. Most others have only a few (no GPS fix in
    the first records): those are cut around with C-level searches and slices, so
    only a column full of gaps costs a Python-level test per value.
    """
    if invalid is NAN:  # NaN is the one float unequal to itself
        mask = list(map(eq, col, col))
        if all(mask):
            return rows_all, col
        if not any(mask):
            return None
        return list(compress(rows_all, mask)), list(compress(col, mask))
    if invalid.__class__ is int:
        try:
            pattern = struct.pack(fmt, invalid)
        except struct.error:  # pragma: no cover - a sentinel is always of its column's type
            pattern = None
        if pattern is not None and raw.find(pattern) < 0:
            return rows_all, col
        # found: maybe only across two values, so the values themselves are tested
    if invalid not in col:
        return rows_all, col
    n = len(col)
    gaps = col.count(invalid)
    if gaps == n:
        return None
    if gaps * 8 > n:
        return [r for r, v in zip(rows_all, col) if v != invalid], [v for v in col if v != invalid]
    rows: list[int] = []
    values: list[Any] = []
    find = col.index
    start = 0
    for _ in range(gaps):
        stop = find(invalid, start)
        if stop > start:
            rows += rows_all[start:stop]
            values += col[start:stop]
        start = stop + 1
    rows += rows_all[start:]
    values += col[start:]
    return rows, values


def _arithmetic(values: list[Any], shift: int | None, mask: int | None, scale: Any, offset: Any) -> list[Any]:
    """fitdecode's arithmetic on raw values, value by value (component bits, then
    ``float(raw) / scale``, then ``- offset``; ``int / float(scale)`` is the same
    float division). List comprehensions: in CPython 3.11 they are about twice as
    fast as ``map`` with an ``operator`` function."""
    if shift is not None:
        values = [(v >> shift) & mask for v in values]
    if scale:
        s = float(scale)
        if offset:
            return [v / s - offset for v in values]
        return [v / s for v in values]
    if offset:
        return [v - offset for v in values]
    return values


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


def _merge(pieces: list[tuple[Any, ...]], spans: _Spans) -> tuple[list[int], list[Any]]:
    """One sparse column from its pieces (one per sink and emission), in record order.

    Every piece is in row order, and the records of one sink come in runs
    (``spans``): walking the runs and taking each run's slice of its source's piece
    rebuilds fitdecode's order. The walk is done by C-level ``map`` calls (a
    binary search per run for the slice bounds, then the slices in run order), as
    files whose records alternate between definitions have thousands of runs. When
    one source gives two pieces (a field and a component of another field with the
    same name), one record holds two values; they are interleaved (same records) or
    stably sorted by row, keeping fitdecode's order (fields in definition order, a
    component before its field).
    """
    if len(pieces) == 1:
        return list(pieces[0][0]), pieces[0][1]
    if all(a[0][-1] < b[0][0] for a, b in zip(pieces, pieces[1:])):
        # one piece after the other (a device that changes its record definition
        # now and then): the pieces as they are
        return reduce(iadd, [p[0] for p in pieces], []), reduce(iadd, [p[1] for p in pieces], [])
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
        else:
            return _sorted_by_row(pieces)
    if not all(source in spans.stops for source in by_source):  # pragma: no cover - every row is in a run
        return _sorted_by_row(pieces)
    order = spans.order
    if len(by_source) < len(spans.stops):  # the runs of the sources this column has
        order = [source for source in order if source in by_source]
    row_parts = {}
    value_parts = {}
    for source, piece in by_source.items():
        piece_rows, piece_values = piece[0], piece[1]
        if len(piece) > 4 and piece[4] is not None and piece_rows is piece[4].rows:
            cuts = spans.cuts[source]  # a value in every row: the sink's own cuts
        else:  # the rows of the run: a binary search for each run's end
            ends = list(map(bisect_left, repeat(piece_rows), spans.stops[source]))
            cuts = list(map(slice, [0, *ends[:-1]], ends))
        row_parts[source] = map(piece_rows.__getitem__, cuts)  # one slice per run, in order
        value_parts[source] = map(piece_values.__getitem__, cuts)
    # joined by list +=, a memory copy per slice (a list built from a chain would
    # take the values one by one)
    rows = reduce(iadd, map(next, map(row_parts.__getitem__, order)), [])
    values = reduce(iadd, map(next, map(value_parts.__getitem__, order)), [])
    return rows, values


def _sorted_by_row(pieces: list[tuple[Any, ...]]) -> tuple[list[int], list[Any]]:
    """The pieces joined and stably sorted by row (equal rows keep the pieces' order)."""
    rows: list[int] = []
    values: list[Any] = []
    for piece in pieces:
        rows += piece[0]
        values += piece[1]
    if all(map(le, rows, rows[1:])):
        return rows, values
    order = sorted(range(len(rows)), key=rows.__getitem__)
    return list(map(rows.__getitem__, order)), list(map(values.__getitem__, order))


def scan_fit_fast(data: bytes) -> Scan:
    """Scan ``data`` like :func:`fit_scan.scan_fit`, or raise :class:`FastUnsupported`."""
    repaired, declared = repair_empty_header(data)
    with _collector_paused():
        scan = _scan_passes(repaired)
    scan.header_patched = declared
    return scan


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector during a scan.

    A scan allocates up to millions of small containers (per-message tuples of
    hrv intervals, row lists) and makes no reference cycles of its own, so the
    collector's passes find nothing to free, yet they cost about a tenth of the scan
    (they walk every young container, and now and then every list of values read
    so far). Reference counting still frees everything as usual. The collector is
    restarted only if it was running (another thread's scan may have paused it: the
    worst case is a pass during a scan, never a collector left off).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _scan_passes(repaired: bytes) -> Scan:
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
    return scan


__all__ = ["FastUnsupported", "scan_fit_fast", "crc16", "crc16_python", "CRC_COMPILED"]

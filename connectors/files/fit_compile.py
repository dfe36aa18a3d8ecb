"""Compile one FIT definition message into a reusable :class:`Layout`.

A definition says which fields follow, with which sizes and base types; the same
definitions recur in every file a device writes, so each one is compiled once and
cached by its bytes across files. A layout says how every later data message of that
definition is read:

* ``FAST_RECORD``: a record message whose wanted fields are plain values. The
  scanner only copies its bytes; the wanted fields are cut out as columns, for all
  messages of the layout at once, at the end (:attr:`Layout.columns`, :attr:`Layout.plan`).
* ``SKIP``: a message the scan does not keep, and whose decoding cannot fail in
  fitdecode: nothing is read (except its timestamp, when times must be tracked).
* ``FAST_HRV``: an hrv message (beat-to-beat intervals, one per heartbeat in some
  files): its ``time`` values are unpacked in one call and scaled once per file.
* ``FAST_HR``: an HR message (swim straps upload them in bulk). The scan keeps
  nothing of it; only what it does to the reader's state (and whether fitdecode
  would fail on it) is worked out, by :attr:`Layout.hr_ops`.
* ``GENERIC``: everything else (summaries, developer-field descriptions, arrays,
  accumulated components, subfields...). Read field by field exactly as fitdecode
  does, by :mod:`fit_fast_message`.

The field sizes are fitdecode's: a field whose size is not a multiple of its base
type is read as bytes, and a developer field reads ``size // base size`` values (so
it can leave bytes unread). A field that reads no byte at all makes fitdecode fail
on every data message of that definition; such a layout is "poisoned", and the fast
scanner stops on its first data message with fitdecode's error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

from .fit_profile import (
    BASE_TYPE_BYTE,
    BASE_TYPES,
    BYTE_ID,
    FIELD_NUM_HR_EVENT_TIMESTAMP,
    FIELD_NUM_HR_EVENT_TIMESTAMP_12,
    FIELD_NUM_TIMESTAMP,
    MESG_NUM_DEVELOPER_DATA_ID,
    MESG_NUM_FIELD_DESCRIPTION,
    MESG_NUM_HR,
    MESSAGE_TYPES,
    NAN,
    invalid_of,
    is_float,
    is_integer,
)
from .fit_scan import KEPT_MESSAGES, MESG_HRV, MESG_RECORD, RECORD_FIELDS

FAST_RECORD = 0
SKIP = 1
GENERIC = 2
FAST_HRV = 3
FAST_HR = 4

# What an HR message does to the reader's state, field by field (FAST_HR).
HR_TIMESTAMP = 0  # a 253 field: the time base of what follows
HR_START = 1  # event_timestamp: HR events count from the last timestamp
HR_EVENTS = 2  # event_timestamp_12: needs that start (fitdecode asserts it)

# Messages whose content the scan uses (or whose decoding changes the reader's state).
OUTPUT_MESSAGES = frozenset({MESG_RECORD, MESG_HRV, MESG_NUM_HR, MESG_NUM_DEVELOPER_DATA_ID, MESG_NUM_FIELD_DESCRIPTION, *KEPT_MESSAGES})

CACHE_LIMIT = 4096  # distinct definitions kept across files (a few per device model)


# Spec and Emit are never changed once made (layouts are shared across files), but
# not frozen: a frozen dataclass sets each attribute through object.__setattr__,
# several times slower to build, and a new device's definitions make thousands.
@dataclass(slots=True)
class Spec:
    """One field of a definition, as fitdecode reads it."""

    field: Any  # fitdecode Field, DevField, or None for a field the profile lacks
    def_num: int
    base_type: Any
    offset: int  # within the message payload (after the 1-byte record header)
    count: int  # values read (0: fitdecode fails on it)
    is_dev: bool


SCALAR = 0  # one number; its invalid sentinel drops it
ARRAY = 1  # a tuple of numbers, each parsed on its own (a tuple is never dropped)
BYTES = 2  # a byte array: dropped when all 0xFF
STRING = 3  # a string: dropped when empty


@dataclass(slots=True)
class Emit:
    """One value a FAST_RECORD message gives, in fitdecode's order of fields.

    ``target`` is a record field name of :data:`RECORD_FIELDS` or a DevField.
    A component emission takes bits ``shift``..``shift+mask`` of the parent's value.
    """

    target: Any
    slot: int  # index into the layout's sub-columns
    invalid: Any  # the parent's invalid sentinel (an int or NAN)
    scale: float | None
    offset: float | None
    shift: int | None = None  # set for a component
    mask: int | None = None
    form: int = SCALAR
    width: int = 1  # slots the value spans in the unpacked tuple
    parse: Callable[[Any], Any] | None = None  # fitdecode's parser, for non-scalar forms


@dataclass(slots=True)
class Layout:
    global_num: int
    endian: str
    mesg_type: Any
    specs: tuple[Spec, ...]  # regular fields
    dev_specs: tuple[Spec, ...]
    size: int  # whole message including its header byte
    kind: int
    poison: str | None = None
    accumulators: tuple[int, ...] = ()  # component numbers whose accumulation restarts here
    # FAST_RECORD
    unpack: Callable[..., tuple[Any, ...]] | None = None
    columns: tuple[tuple[int, str, int], ...] = ()  # (offset in message, format, size)
    plan: tuple[Emit, ...] = ()
    ts_slot: int = -1  # sub-column of the timestamp
    # (slot, width, invalid): fields whose components only the field-by-field decode
    # can expand (accumulated running totals, byte arrays). Usually the device writes
    # them invalid, and then they give nothing: the scanner checks that they are, or
    # reads the file again decoding such records one by one.
    guards: tuple[tuple[int, int, Any], ...] = ()
    # SKIP: where the timestamp is, for tracking the compressed-timestamp base
    ts_unpack: Callable[..., tuple[Any, ...]] | None = None
    ts_offset: int = 0
    ts_invalid: Any = None
    # FAST_HRV: the time field (scale) and its invalid sentinel
    hrv_field: Any = None
    hrv_invalid: Any = None
    hrv_single: bool = True
    # FAST_HR: (operation, offset in message, size or sentinel, unpack) in field order
    hr_ops: tuple[tuple[int, int, Any, Any], ...] = ()
    # GENERIC: the fields decoded (all, except in a record those nobody reads), and
    # their raw values (None when invalid) read with one struct call; made on first
    # use by field_reader()
    decode_specs: tuple[Spec, ...] = ()
    read_raws: Callable[[Any, int], list[Any]] | None = None
    positions: dict[int, tuple[int, ...]] | None = None  # field number -> indexes in decode_specs
    field_plan: tuple[tuple[int, Any, Any], ...] | None = None  # fit_fast_message's, made on first use

    @property
    def all_specs(self) -> tuple[Spec, ...]:
        return self.specs + self.dev_specs


class LayoutCache:
    """Compiled layouts by definition bytes; cleared when it grows past its limit."""

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self.limit = limit
        self.layouts: dict[Any, Layout] = {}

    def get(self, key: Any) -> Layout | None:
        return self.layouts.get(key)

    def put(self, key: Any, layout: Layout) -> None:
        if len(self.layouts) >= self.limit:
            self.layouts.clear()  # fuzzing or a pathological file: never grow unbounded
        self.layouts[key] = layout


def resolve_base_type(base_type_num: int, size: int) -> Any:
    """fitdecode's choice: unknown types and sizes that are not a multiple read as bytes."""
    base = BASE_TYPES.get(base_type_num, BASE_TYPE_BYTE)
    if size % base.size:
        base = BASE_TYPE_BYTE
    return base


_BASES: dict[tuple[int, int], Any] = {}  # (base type number, size) -> resolve_base_type(), at most 256 * 256


def _no_field(def_num: int) -> None:
    return None  # a message the profile does not know has no known field


def _spec(field: Any, def_num: int, base: Any, size: int, offset: int, is_dev: bool) -> Spec:
    return Spec(field, def_num, base, offset, int(size / base.size), is_dev)


def _unpacker(layout: Layout, spec: Spec) -> Callable[..., tuple[Any, ...]]:
    """``unpack_from`` for one field's values (made only for the few fields read alone)."""
    return struct.Struct(f"{layout.endian}{spec.count}{spec.base_type.fmt}").unpack_from


def compile_layout(
    global_num: int,
    endian: str,
    fields: list[tuple[int, int, int]],
    dev_fields: list[tuple[Any, int, int]],
) -> Layout:
    """``fields``: (def_num, size, base type number); ``dev_fields``: (DevField, def_num, size)."""
    mesg_type = MESSAGE_TYPES.get(global_num)
    specs: list[Spec] = []
    dev_specs: list[Spec] = []
    offset = 0
    poison = None
    accumulators: list[int] = []
    profile_field = mesg_type.fields.get if mesg_type else _no_field
    for def_num, size, base_num in fields:
        field = profile_field(def_num)
        base = _BASES.get((base_num, size)) or _BASES.setdefault((base_num, size), resolve_base_type(base_num, size))
        spec = _spec(field, def_num, base, size, offset, False)
        if spec.count == 0:
            poison = f"field {def_num} of message {global_num} has size 0"
        offset += spec.count * base.size
        specs.append(spec)
        if field is not None and field.components:
            accumulators.extend(c.def_num for c in field.components if c.accumulate)
    for dev_field, def_num, size in dev_fields:
        base = dev_field.type
        spec = _spec(dev_field, def_num, base, size, offset, True)
        if spec.count == 0:
            poison = f"developer field {def_num} of message {global_num} has size {size} < its type's size"
        offset += spec.count * base.size
        dev_specs.append(spec)
    layout = Layout(
        global_num=global_num,
        endian=endian,
        mesg_type=mesg_type,
        specs=tuple(specs),
        dev_specs=tuple(dev_specs),
        size=1 + offset,
        kind=GENERIC,
        poison=poison,
        accumulators=tuple(accumulators),
    )
    if poison is None:
        if global_num == MESG_RECORD:
            _plan_record(layout)
        elif global_num == MESG_HRV:
            _plan_hrv(layout)
        elif global_num == MESG_NUM_HR:
            _plan_hr(layout)
        elif global_num not in OUTPUT_MESSAGES:
            _plan_skip(layout)
    return layout


def field_reader(layout: Layout) -> Callable[[Any, int], list[Any]] | None:
    """The field-by-field reader of a layout (:attr:`Layout.read_raws`), made on first use.

    Most layouts never need one (skipped messages, records read as columns): making
    it only when a message is decoded field by field saves much of the cost of
    compiling the definitions of a new device. A poisoned layout has none (None).
    """
    if layout.read_raws is None:
        specs = _decode_specs(layout)
        where: dict[int, list[int]] = {}
        for i, spec in enumerate(specs):
            if not spec.is_dev:
                where.setdefault(spec.def_num, []).append(i)
        layout.decode_specs = specs
        layout.positions = {k: tuple(v) for k, v in where.items()}
        if layout.poison is None:
            # last: a layout is shared (across files, maybe threads), and a reader
            # seen means the specs and positions it goes with are there
            layout.read_raws = _raw_reader(layout)
    return layout.read_raws


def _scalar(spec: Spec) -> bool:
    return spec.count == 1 and (is_integer(spec.base_type) or is_float(spec.base_type))


def _plain_timestamp(spec: Spec) -> bool:
    """A timestamp field whose decoded value is its raw integer (no scale, offset or enum)."""
    f = spec.field
    return (
        spec.count == 1
        and is_integer(spec.base_type)
        and (f is None or (not f.scale and not f.offset and not f.type.enum and not f.components and not f.subfields))
    )


def _safe_components(spec: Spec) -> bool:
    """Components that fitdecode expands without any possible failure (whole integers)."""
    f = spec.field
    owners = [f, *(f.subfields or ())]
    if not any(o.components for o in owners):
        return True
    if not (spec.count == 1 and is_integer(spec.base_type)):
        return False
    # A subfield's accumulating component has no accumulator set up by the definition.
    return not any(c.accumulate for o in owners[1:] for c in (o.components or ()))


def _plan_skip(layout: Layout) -> None:
    ts = None
    for spec in layout.all_specs:
        if spec.def_num == FIELD_NUM_TIMESTAMP:
            if spec.is_dev or not _plain_timestamp(spec):
                return  # fitdecode keeps any 253 field as the time base: decode it for real
            ts = spec
        if not spec.is_dev and spec.field is not None and not _safe_components(spec):
            return
    layout.kind = SKIP
    if ts is not None:
        layout.ts_unpack = _unpacker(layout, ts)
        layout.ts_offset = 1 + ts.offset
        layout.ts_invalid = invalid_of(ts.base_type)


def _chooses_subfield(layout: Layout, spec: Spec) -> bool:
    """Whether decoding this field picks a subfield (of itself or of a component target)."""
    f = spec.field
    if f is None or spec.is_dev:
        return False
    if f.subfields:
        return True
    return any(layout.mesg_type.fields[c.def_num].subfields for c in f.components or ())


def _decode_specs(layout: Layout) -> tuple[Spec, ...]:
    """The fields a field-by-field decode must read.

    A kept message needs them all. Of a record, only the fields the scan wants; of
    any other message (HR, or one the scanner cannot skip blindly), none. Whatever
    can fail or change the reader's state is always read: fields with components,
    timestamps (253), HR's event_timestamp pair. If a field has subfields, every
    raw value may choose one, so all are read.
    """
    specs = layout.all_specs
    num = layout.global_num
    full = num in KEPT_MESSAGES or num in (MESG_HRV, MESG_NUM_DEVELOPER_DATA_ID, MESG_NUM_FIELD_DESCRIPTION)
    if full or any(_chooses_subfield(layout, s) for s in specs):
        return specs

    def needed(s: Spec) -> bool:
        if s.def_num == FIELD_NUM_TIMESTAMP:
            return True
        if s.is_dev:
            return num == MESG_RECORD
        if s.field is None:
            return False
        if s.field.components:
            return True
        if num == MESG_RECORD:
            return s.field.name in RECORD_FIELDS
        return num == MESG_NUM_HR and s.def_num in (FIELD_NUM_HR_EVENT_TIMESTAMP, FIELD_NUM_HR_EVENT_TIMESTAMP_12)

    return tuple(s for s in specs if needed(s))


_ONE, _ONE_FLOAT, _MANY, _WHOLE = range(4)


def _raw_reader(layout: Layout) -> Callable[[Any, int], list[Any]]:
    """Raw values of the decoded fields, parsed as fitdecode parses them.

    One struct call reads them all; a scalar is None when it holds its type's
    invalid value; an array is a tuple parsed value by value; a byte array and a
    string go to fitdecode's own parser whole.
    """
    fmt = [layout.endian]
    steps: list[tuple[int, int, int, Any]] = []
    pos = 0
    index = 0
    for spec in layout.decode_specs:  # in message order: offsets only grow
        base = spec.base_type
        if spec.offset > pos:
            fmt.append(f"{spec.offset - pos}x")
        fmt.append(f"{spec.count}{base.fmt}")
        pos = spec.offset + spec.count * base.size
        if base.fmt == "s":
            steps.append((_WHOLE, index, index + 1, lambda v, parse=base.parse: parse(v[0])))
            index += 1
            continue
        if base.identifier == BYTE_ID:
            steps.append((_WHOLE, index, index + spec.count, base.parse))
        elif spec.count > 1:
            steps.append((_MANY, index, index + spec.count, base.parse))
        elif is_float(base):
            steps.append((_ONE_FLOAT, index, 0, None))
        else:
            steps.append((_ONE, index, 0, invalid_of(base)))
        index += spec.count if base.fmt != "s" else 1
    unpack = struct.Struct("".join(fmt)).unpack_from

    if all(kind == _ONE or kind == _ONE_FLOAT for kind, _i, _j, _arg in steps):
        # only scalars, one value each: one comprehension (a float's sentinel is NaN,
        # the one value unequal to itself; no integer is)
        invalids = tuple(arg for _kind, _i, _j, arg in steps)

        def read_scalars(data: Any, payload: int) -> list[Any]:
            return [None if v == inv or v != v else v for v, inv in zip(unpack(data, payload), invalids)]

        return read_scalars

    def read_raws(data: Any, payload: int) -> list[Any]:
        values = unpack(data, payload)
        out = []
        for kind, i, j, arg in steps:
            if kind == _ONE:
                v = values[i]
                out.append(None if v == arg else v)
            elif kind == _ONE_FLOAT:
                v = values[i]
                out.append(None if v != v else v)
            elif kind == _MANY:
                out.append(tuple(map(arg, values[i:j])))
            else:
                out.append(arg(values[i:j]))
        return out

    return read_raws


def _plan_hr(layout: Layout) -> None:
    ops = []
    for spec in layout.all_specs:
        f = spec.field
        if spec.def_num == FIELD_NUM_TIMESTAMP:
            if spec.is_dev or not _plain_timestamp(spec):
                return
            ops.append((HR_TIMESTAMP, 1 + spec.offset, invalid_of(spec.base_type), _unpacker(layout, spec)))
        elif spec.is_dev or f is None:
            continue
        elif f.subfields:
            return
        elif spec.def_num == FIELD_NUM_HR_EVENT_TIMESTAMP:
            ops.append((HR_START, 0, None, None))
        elif spec.def_num == FIELD_NUM_HR_EVENT_TIMESTAMP_12:
            if spec.base_type.identifier != BYTE_ID or not f.components:
                return  # numbers with invalid entries make fitdecode fail its own way
            ops.append((HR_EVENTS, 1 + spec.offset, spec.count, None))
        elif f.components and not (spec.count == 1 and is_integer(spec.base_type)):
            return
    layout.kind = FAST_HR
    layout.hr_ops = tuple(ops)


def _plan_hrv(layout: Layout) -> None:
    """One plain integer ``time`` field and nothing that could change the time base."""
    times = []
    for spec in layout.all_specs:
        if spec.def_num == FIELD_NUM_TIMESTAMP:
            return
        f = spec.field
        if spec.is_dev or f is None:
            continue
        if f.components or f.subfields or f.type.enum:
            return
        if f.name == "time":
            times.append(spec)
    if len(times) != 1 or not is_integer(times[0].base_type):
        return
    spec = times[0]
    layout.kind = FAST_HRV
    layout.unpack = _unpacker(layout, spec)
    layout.ts_offset = 1 + spec.offset
    layout.hrv_field = spec.field
    layout.hrv_invalid = invalid_of(spec.base_type)
    layout.hrv_single = spec.count == 1


def _plan_record(layout: Layout) -> None:
    """Which values of a record message the scan wants, and where they are.

    The scanner keeps the record messages of a layout as raw bytes, back to back;
    each wanted value is a sub-column (byte offset in the message, struct format,
    size), extracted for all messages at once at the end.
    """
    columns: list[tuple[int, str, int]] = []
    plan: list[Emit] = []
    guards: list[tuple[int, int, Any]] = []
    slot = 0
    ts_slot = -1
    fields = layout.mesg_type.fields
    for spec in layout.all_specs:
        f = spec.field
        wanted = False
        width = 1
        if spec.is_dev:
            if spec.def_num == FIELD_NUM_TIMESTAMP:
                return
            wanted = True
            base = spec.base_type
            if _scalar(spec):
                plan.append(Emit(f, slot, invalid_of(base), None, None))
            elif base.fmt == "s":
                plan.append(Emit(f, slot, None, None, None, form=STRING, parse=base.parse))
            else:
                width = spec.count
                if base.identifier == BYTE_ID:
                    plan.append(Emit(f, slot, None, None, None, form=BYTES, width=width, parse=base.parse))
                else:
                    plan.append(Emit(f, slot, invalid_of(base), None, None, form=ARRAY, width=width, parse=base.parse))
        elif f is not None:
            if f.subfields:
                return
            comps = f.components or ()
            whole = spec.count == 1 and is_integer(spec.base_type)
            wanted_totals = bool(comps) and any(c.accumulate and fields[c.def_num].name in RECORD_FIELDS for c in comps)
            if comps and (not whole or wanted_totals):
                if spec.base_type.identifier == BYTE_ID:
                    width = spec.count
                    guards.append((slot, width, 0xFF))
                elif _scalar(spec):
                    guards.append((slot, 1, invalid_of(spec.base_type)))
                else:
                    return  # an array of numbers is never "invalid" as a whole
                wanted = True
                comps = ()
            for comp in comps:
                target = fields[comp.def_num]
                if comp.accumulate:
                    continue  # a total nobody reads; on whole numbers it cannot fail
                if target.subfields or target.type.enum:
                    return
                if target.name in RECORD_FIELDS:
                    wanted = True
                    shift, mask = comp.bit_offset, (1 << comp.bits) - 1
                    if shift == 0 and spec.base_type.fmt in "BHIQ" and mask >= (1 << 8 * spec.base_type.size) - 1:
                        shift = mask = None  # all the bits of an unsigned value: the value itself
                    plan.append(Emit(target.name, slot, invalid_of(spec.base_type), comp.scale, comp.offset, shift, mask))
            if f.name in RECORD_FIELDS:
                if not _scalar(spec) or f.type.enum:
                    return
                wanted = True
                plan.append(Emit(f.name, slot, invalid_of(spec.base_type), f.scale, f.offset))
                if spec.def_num == FIELD_NUM_TIMESTAMP:
                    if not _plain_timestamp(spec):
                        return
                    ts_slot = slot
                    layout.ts_invalid = invalid_of(spec.base_type)
        if wanted:
            # one sub-column per value read (an array has one per element; a string
            # is one sub-column of its whole width)
            base = spec.base_type
            if base.fmt == "s":
                columns.append((1 + spec.offset, "s", spec.count))
                slot += 1
            else:
                for i in range(width):
                    columns.append((1 + spec.offset + i * base.size, base.fmt, base.size))
                slot += width
    layout.columns = tuple(columns)
    layout.plan = tuple(plan)
    layout.guards = tuple(guards)
    layout.ts_slot = ts_slot
    if ts_slot >= 0:
        offset, fmt, _size = columns[ts_slot]
        layout.ts_unpack = struct.Struct(layout.endian + fmt).unpack_from
        layout.ts_offset = offset
    layout.kind = FAST_RECORD


__all__ = ["Layout", "LayoutCache", "Spec", "Emit", "compile_layout", "field_reader", "resolve_base_type", "FAST_RECORD", "SKIP", "GENERIC", "FAST_HRV", "FAST_HR", "NAN"]

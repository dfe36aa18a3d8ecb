"""Compile one FIT definition message into a reusable :class:`Layout`.

A definition says which fields follow, with which sizes and base types; the same
definitions recur in every file a device writes, so each one is compiled once and
cached by its bytes across files. A layout says how every later data message of that
definition is read:

* ``FAST_RECORD``: a record message whose wanted fields are plain scalars. One
  ``struct`` call unpacks just those fields (the rest are pad bytes) into a tuple;
  the tuples are turned into columns once per file, by :attr:`Layout.plan`.
* ``SKIP``: a message the scan does not keep, and whose decoding cannot fail in
  fitdecode: nothing is read (except its timestamp, when times must be tracked).
* ``GENERIC``: everything else (summaries, developer-field descriptions, arrays,
  accumulated components, subfields...). Read field by field exactly as fitdecode
  does, by :mod:`fit_fast_message`.

The field sizes are fitdecode's: a field whose size is not a multiple of its base
type is read as bytes, and a developer field reads ``size // base size`` values (so
it can leave bytes unread). A field that reads no byte at all makes fitdecode fail
on every data message of that definition; such a layout is "poisoned" and the fast
scanner hands the file to fitdecode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

from .fit_profile import (
    BASE_TYPE_BYTE,
    BASE_TYPES,
    BYTE_ID,
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

# Messages whose content the scan uses (or whose decoding changes the reader's state).
OUTPUT_MESSAGES = frozenset({MESG_RECORD, MESG_HRV, MESG_NUM_HR, MESG_NUM_DEVELOPER_DATA_ID, MESG_NUM_FIELD_DESCRIPTION, *KEPT_MESSAGES})

CACHE_LIMIT = 4096  # distinct definitions kept across files (a few per device model)


@dataclass(frozen=True, slots=True)
class Spec:
    """One field of a definition, as fitdecode reads it."""

    field: Any  # fitdecode Field, DevField, or None for a field the profile lacks
    def_num: int
    base_type: Any
    offset: int  # within the message payload (after the 1-byte record header)
    count: int  # values read (0: fitdecode fails on it)
    unpack: Callable[..., tuple[Any, ...]] | None
    is_dev: bool


@dataclass(frozen=True, slots=True)
class Emit:
    """One value a FAST_RECORD message gives, in fitdecode's order of fields.

    ``target`` is a record field name of :data:`RECORD_FIELDS` or a DevField.
    A component emission takes bits ``shift``..``shift+mask`` of the parent's value.
    """

    target: Any
    slot: int  # index into the unpacked tuple
    invalid: Any  # the parent's invalid sentinel (an int or NAN)
    scale: float | None
    offset: float | None
    shift: int | None = None  # set for a component
    mask: int | None = None


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
    plan: tuple[Emit, ...] = ()
    ts_slot: int = -1  # slot of the timestamp in the unpacked tuple
    # SKIP: where the timestamp is, for tracking the compressed-timestamp base
    ts_unpack: Callable[..., tuple[Any, ...]] | None = None
    ts_offset: int = 0
    ts_invalid: Any = None

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


def _spec(field: Any, def_num: int, base: Any, size: int, offset: int, endian: str, is_dev: bool) -> Spec:
    count = int(size / base.size)
    unpack = struct.Struct(f"{endian}{count}{base.fmt}").unpack_from if count > 0 else None
    return Spec(field, def_num, base, offset, count, unpack, is_dev)


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
    for def_num, size, base_num in fields:
        field = mesg_type.fields.get(def_num) if mesg_type else None
        base = resolve_base_type(base_num, size)
        spec = _spec(field, def_num, base, size, offset, endian, False)
        if spec.count == 0:
            poison = f"field {def_num} of message {global_num} has size 0"
        offset += spec.count * base.size
        specs.append(spec)
        if field is not None and field.components:
            accumulators.extend(c.def_num for c in field.components if c.accumulate)
    for dev_field, def_num, size in dev_fields:
        base = dev_field.type
        spec = _spec(dev_field, def_num, base, size, offset, endian, True)
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
        elif global_num not in OUTPUT_MESSAGES:
            _plan_skip(layout)
    return layout


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
        layout.ts_unpack = ts.unpack
        layout.ts_offset = 1 + ts.offset
        layout.ts_invalid = invalid_of(ts.base_type)


def _plan_record(layout: Layout) -> None:
    fmt = [layout.endian]
    plan: list[Emit] = []
    slot = 0
    pos = 0
    ts_slot = -1
    fields = layout.mesg_type.fields
    for spec in layout.all_specs:
        f = spec.field
        wanted = False
        if spec.is_dev:
            if spec.def_num == FIELD_NUM_TIMESTAMP or not _scalar(spec):
                return
            wanted = True
            plan.append(Emit(f, slot, invalid_of(spec.base_type), None, None))
        elif f is not None:
            if f.subfields:
                return
            for comp in f.components or ():
                if comp.accumulate:
                    return  # running totals across messages: decoded one by one
                if not (spec.count == 1 and is_integer(spec.base_type)):
                    return
                target = fields[comp.def_num]
                if target.subfields or target.type.enum:
                    return
                if target.name in RECORD_FIELDS:
                    wanted = True
                    plan.append(Emit(target.name, slot, invalid_of(spec.base_type), comp.scale, comp.offset,
                                     comp.bit_offset, (1 << comp.bits) - 1))
            if f.name in RECORD_FIELDS:
                if not _scalar(spec) or f.type.enum:
                    return
                wanted = True
                plan.append(Emit(f.name, slot, invalid_of(spec.base_type), f.scale, f.offset))
                if spec.def_num == FIELD_NUM_TIMESTAMP:
                    if not _plain_timestamp(spec):
                        return
                    ts_slot = slot
        # skip ahead over fields nobody reads; struct pads cost nothing per value
        if spec.offset > pos:
            fmt.append(f"{spec.offset - pos}x")
        if wanted:
            fmt.append(spec.base_type.fmt)
            slot += 1
            pos = spec.offset + spec.base_type.size
        else:
            pos = spec.offset
    layout.unpack = struct.Struct("".join(fmt)).unpack_from
    layout.plan = tuple(plan)
    layout.ts_slot = ts_slot
    layout.kind = FAST_RECORD


__all__ = ["Layout", "LayoutCache", "Spec", "Emit", "compile_layout", "resolve_base_type", "FAST_RECORD", "SKIP", "GENERIC", "NAN"]

"""Decode one FIT data message field by field, with fitdecode's exact semantics.

The fast scanner sends here what its compiled layouts do not cover: summary
messages, developer-field descriptions, HR and HRV messages, compressed-timestamp
records, arrays and accumulated components. The rules are fitdecode 0.11's reader
rules, restated (the fast path must give the same values, so every corner is the
same corner): subfields are chosen by the raw values of their reference fields;
component bits are taken from the raw value (little-endian for byte arrays),
accumulated, scaled by the component and named by the target field; ``scale``
divides a float, then ``offset`` is subtracted; enums are rendered to names; a
field numbered 253 (in any message, developer fields included) becomes the base of
later compressed timestamps. Whatever would make fitdecode fail fails here too,
with an ordinary exception, and the scanner then hands the file to fitdecode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .fit_compile import Layout, Spec, field_reader
from .fit_profile import (
    BASE_TYPE_BYTE,
    BASE_TYPES,
    FIELD_NUM_HR_EVENT_TIMESTAMP,
    FIELD_NUM_HR_EVENT_TIMESTAMP_12,
    FIELD_NUM_TIMESTAMP,
    MESG_NUM_HR,
    TIMESTAMP_FIELD,
    DevField,
)


@dataclass
class ReaderState:
    """What fitdecode carries from message to message within one FIT segment."""

    dev_types: dict[Any, dict[int, DevField]] = field(default_factory=dict)
    accumulators: dict[int, dict[int, Any]] = field(default_factory=dict)
    compressed_base: Any = 0  # last raw timestamp: base of compressed timestamps
    last_timestamp: Any = 0  # last decoded timestamp field
    hr_start: Any = 0  # base of hr.event_timestamp_12 values


def accumulate(value: Any, base: Any, bits: int) -> Any:
    """A value of ``bits`` bits that rolled over, put back on top of ``base``."""
    top = 1 << bits
    mask = top - 1
    out = value + (base & ~mask)
    if value < (base & mask):
        out += top
    return out


def _scale_number(raw: int | float, scale: Any, offset: Any) -> Any:
    if scale:
        raw = float(raw) / scale
    if offset:
        raw = raw - offset
    return raw


def scale_offset(owner: Any, raw: Any) -> Any:
    scale, offset = owner.scale, owner.offset
    if not scale and not offset:  # most fields: the value is the raw value
        return raw
    if isinstance(raw, tuple):  # an array (zone times in a lap...): each element alone
        return tuple([_scale_number(x, scale, offset) if x.__class__ is int else scale_offset(owner, x) for x in raw])
    if isinstance(raw, (int, float)):
        if scale:
            raw = float(raw) / scale
        if offset:
            raw = raw - offset
    return raw


def _subfield(f: Any, where: dict[int, tuple[int, ...]], raws: list[Any]) -> tuple[Any, Any]:
    """(subfield, parent) when a reference field's raw value selects one, else (f, None).

    ``where``: positions in ``raws`` of each regular field number (developer fields
    never select a subfield).
    """
    for sub in f.subfields:
        for ref in sub.ref_fields:
            for i in where.get(ref.def_num, ()):
                if ref.raw_value == raws[i]:
                    return sub, f
    return f, None


_PLAIN, _ENUM, _SCALED, _FULL = range(4)


def _field_plan(layout: Layout) -> tuple[tuple[int, Any, Any], ...]:
    """How :func:`decode_message` turns each raw value into its value, per decoded field.

    Most fields of a summary message are plain numbers, enums or scaled numbers:
    those take one step (``_PLAIN``: the raw value; ``_ENUM``: its name; ``_SCALED``:
    the enum name or raw value, scaled). ``_FULL`` is the general rule, for what
    can choose a subfield, expand components or move the reader's time base.
    """
    gnum = layout.global_num
    plan = []
    for spec in layout.decode_specs:
        f = spec.field
        moves_time = spec.def_num == FIELD_NUM_TIMESTAMP or (
            gnum == MESG_NUM_HR and not spec.is_dev and spec.def_num == FIELD_NUM_HR_EVENT_TIMESTAMP
        )
        if moves_time or (f is not None and (f.subfields or f.components)):
            plan.append((_FULL, f, None))
        elif f is None:
            plan.append((_PLAIN, None, None))
        else:
            enum = f.type.enum
            if f.scale or f.offset:
                plan.append((_SCALED, f, (enum, f.scale, f.offset)))
            elif enum:
                plan.append((_ENUM, f, enum))
            else:
                plan.append((_PLAIN, f, None))
    return tuple(plan)


def decode_message(layout: Layout, data: bytes, pos: int, time_offset: int | None, state: ReaderState) -> list[tuple[Any, Any, Any]]:
    """(field, value, raw value) of every field of the message at ``pos`` (its header byte)."""
    payload = pos + 1
    read_raws = layout.read_raws or field_reader(layout)
    all_specs = layout.decode_specs
    raws = read_raws(data, payload)
    plan = layout.field_plan
    if plan is None:
        plan = layout.field_plan = _field_plan(layout)
    out: list[tuple[Any, Any, Any]] = []
    append = out.append
    gnum = layout.global_num
    for (how, f, arg), spec, raw in zip(plan, all_specs, raws):
        if how == _PLAIN:
            append((f, raw, raw))
            continue
        if how == _ENUM:
            append((f, arg.get(raw, raw), raw))
            continue
        if how == _SCALED:
            enum, scale, offset = arg
            value = enum.get(raw, raw) if enum else raw
            if value.__class__ is int or value.__class__ is float:
                value = _scale_number(value, scale, offset)
            else:
                value = scale_offset(f, value)
            append((f, value, raw))
            continue
        if f is not None:
            if f.subfields:
                f, _parent = _subfield(f, layout.positions, raws)
            if f.components:
                hr12 = gnum == MESG_NUM_HR and not spec.is_dev and spec.def_num == FIELD_NUM_HR_EVENT_TIMESTAMP_12
                for comp in f.components:
                    try:
                        craw = comp.render(raw)
                    except ValueError:
                        continue  # more component bits than the array holds
                    if comp.accumulate and craw is not None:
                        acc = state.accumulators[gnum]
                        craw = accumulate(craw, acc[comp.def_num], comp.bits)
                        acc[comp.def_num] = craw
                    craw = scale_offset(comp, craw)
                    target = layout.mesg_type.fields[comp.def_num]
                    if target.subfields:
                        target, _ = _subfield(target, layout.positions, raws)
                    enum = target.type.enum
                    value = enum.get(craw, craw) if enum else craw
                    if hr12:
                        if not state.hr_start > 0:
                            raise ValueError("hr.event_timestamp_12 before any hr.event_timestamp")
                        value += state.hr_start
                    out.append((target, value, craw))
            enum = f.type.enum
            value = scale_offset(f, enum.get(raw, raw) if enum else raw)
        else:
            value = raw
        if spec.def_num == FIELD_NUM_TIMESTAMP and raw is not None:
            state.last_timestamp = value
            state.compressed_base = raw
        elif gnum == MESG_NUM_HR and not spec.is_dev and spec.def_num == FIELD_NUM_HR_EVENT_TIMESTAMP:
            state.hr_start = state.last_timestamp
        append((f, value, raw))
    if time_offset is not None:
        ts = accumulate(time_offset, state.compressed_base, 5)
        state.compressed_base = ts
        out.append((TIMESTAMP_FIELD, TIMESTAMP_FIELD.render(ts), ts))
    return out


_ABSENT = object()


def raw_named(fields: list[tuple[Any, Any, Any]], name: str) -> Any:
    """The raw value of the first field called ``name`` (_ABSENT when none is)."""
    for f, _value, raw in fields:
        if f is not None and f.name == name:
            return raw
    return _ABSENT


def add_developer_data_id(fields: list[tuple[Any, Any, Any]], state: ReaderState) -> None:
    """A developer_data_id (re)declares a developer index with no fields yet."""
    index = raw_named(fields, "developer_data_index")
    index = None if index is _ABSENT else int(index)
    state.dev_types[index] = {}


def add_field_description(fields: list[tuple[Any, Any, Any]], state: ReaderState) -> None:
    """A field_description (re)declares one developer field of a declared index."""
    values = []
    for name in ("developer_data_index", "field_definition_number", "fit_base_type_id", "field_name", "units", "native_field_num"):
        raw = raw_named(fields, name)
        values.append(None if raw is _ABSENT else raw)
    index, number, base, name, units, native = values
    if index is not None:
        index = int(index)
    if index not in state.dev_types:
        raise ValueError(f"developer_data_index {index} not defined")
    base = BASE_TYPE_BYTE if base is None else BASE_TYPES[base]
    state.dev_types[index][number] = DevField(index, name, number, base, units, native)


def dev_field(state: ReaderState, index: int, number: int) -> DevField:
    """The developer field a definition refers to; an undeclared one reads as bytes."""
    fields = state.dev_types.get(index)
    if fields is None:
        fields = state.dev_types[index] = {}
    found = fields.get(number)
    if found is None:
        found = fields[number] = DevField(index, None, number, BASE_TYPE_BYTE, None, None)
    return found


def as_dict(fields: list[tuple[Any, Any, Any]], raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """Name -> value of a kept message, like :func:`fit_scan._message_dict`."""
    out: dict[str, Any] = {}
    for f, value, raw_value in fields:
        if f is None or f.__class__ is DevField or value is None:
            continue
        name = f.name
        if name not in out:
            out[name] = value
            if raw is not None:
                raw[name] = raw_value
    return out


__all__ = [
    "ReaderState",
    "decode_message",
    "add_developer_data_id",
    "add_field_description",
    "dev_field",
    "as_dict",
    "accumulate",
]

"""FIT profile facts for the fast decoder, taken from fitdecode's own tables.

The fast path must give exactly what fitdecode gives, so nothing here is typed in
by hand: message and field definitions are fitdecode's profile objects, and each
integer base type's "invalid" sentinel is found by asking fitdecode's own parser
which candidate value it rejects.
"""

from __future__ import annotations

import math

from fitdecode import profile, types
from fitdecode.types import BaseType, DevField

MESSAGE_TYPES = profile.MESSAGE_TYPES
TIMESTAMP_FIELD = profile.FIELD_TYPE_TIMESTAMP
FIELD_NUM_TIMESTAMP = profile.FIELD_NUM_TIMESTAMP  # 253 in every message
MESG_NUM_HR = profile.MESG_NUM_HR
FIELD_NUM_HR_EVENT_TIMESTAMP = profile.FIELD_NUM_HR_EVENT_TIMESTAMP
FIELD_NUM_HR_EVENT_TIMESTAMP_12 = profile.FIELD_NUM_HR_EVENT_TIMESTAMP_12
MESG_NUM_DEVELOPER_DATA_ID = profile.MESG_NUM_DEVELOPER_DATA_ID
MESG_NUM_FIELD_DESCRIPTION = profile.MESG_NUM_FIELD_DESCRIPTION

BASE_TYPES: dict[int, BaseType] = types.BASE_TYPES
BASE_TYPE_BYTE: BaseType = types.BASE_TYPE_BYTE
BYTE_ID = BASE_TYPE_BYTE.identifier

__all__ = [
    "MESSAGE_TYPES",
    "TIMESTAMP_FIELD",
    "FIELD_NUM_TIMESTAMP",
    "MESG_NUM_HR",
    "FIELD_NUM_HR_EVENT_TIMESTAMP",
    "FIELD_NUM_HR_EVENT_TIMESTAMP_12",
    "MESG_NUM_DEVELOPER_DATA_ID",
    "MESG_NUM_FIELD_DESCRIPTION",
    "BASE_TYPES",
    "BASE_TYPE_BYTE",
    "BYTE_ID",
    "DevField",
    "NAN",
    "invalid_of",
    "is_integer",
    "is_float",
]

NAN = object()  # marker: the type's invalid value is NaN (floats)


def _find_invalid(base: BaseType) -> object | None:
    """The single value fitdecode's parser turns into None for a scalar base type."""
    if base.fmt in ("f", "d"):
        return NAN if base.parse(math.nan) is None else None
    if base.identifier == BYTE_ID or base.fmt not in ("b", "B", "h", "H", "i", "I", "q", "Q"):
        return None  # strings and byte arrays are not scalars
    bits = base.size * 8
    for candidate in (0, 2 ** (bits - 1) - 1, 2**bits - 1):
        if base.parse(candidate) is None:
            return candidate
    return None


_INVALID: dict[int, object | None] = {bt.identifier: _find_invalid(bt) for bt in BASE_TYPES.values()}


def invalid_of(base: BaseType) -> object | None:
    """The sentinel of a scalar base type (an int, or :data:`NAN`); None for others."""
    return _INVALID.get(base.identifier)


def is_integer(base: BaseType) -> bool:
    """A scalar integer type (the byte type is an array, not a scalar)."""
    return base.identifier != BYTE_ID and isinstance(_INVALID.get(base.identifier), int)


def is_float(base: BaseType) -> bool:
    return _INVALID.get(base.identifier) is NAN

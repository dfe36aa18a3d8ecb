"""Read the messages of a Garmin monitoring or sleep FIT file (pure: bytes in).

The activity decoder's scanner (``connectors/files/fit_scan.py``) keeps only what
activities need; monitoring and sleep files use other messages, so they get this
small reader instead: every data message as a name plus its decoded and raw values,
with ``timestamp_16`` resolved to a full time (see :func:`read_messages`).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import fitdecode
from fitdecode.exceptions import FitError

from hub.errors import DecodeError

FIT_EPOCH = datetime(1989, 12, 31, tzinfo=timezone.utc)
# What fitdecode lets escape on damaged input besides its own errors (found by
# fuzzing: struct.error from a cut header, AssertionError from a chunk size that
# overruns the body, lookups and arithmetic on garbage).
_BROKEN = (FitError, struct.error, ValueError, LookupError, TypeError, EOFError, ArithmeticError, AssertionError)


@dataclass
class Message:
    name: str  # fitdecode's profile name, or "unknown_<n>"
    values: dict[str, Any]  # decoded (enums as names, times as aware datetimes)
    raw: dict[str, Any]  # as stored, before scale/offset/subfield naming
    time: datetime | None = None  # timestamp, or the time timestamp_16 stands for


@dataclass
class FitContent:
    file_type: str | int | None
    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def file_type_of(data: bytes) -> str | int | None:
    """The ``file_id.type`` of a FIT file (reads only up to the first file_id)."""
    try:
        with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.DISABLED) as reader:
            for frame in reader:
                if frame.frame_type == fitdecode.FIT_FRAME_DATA and frame.global_mesg_num == 0:
                    return frame.get_value("type", fallback=None)
    except _BROKEN:
        return None
    return None


def read_messages(data: bytes, name: str) -> FitContent:
    """Every data message of ``data``; a damaged tail is cut off with a warning.

    Watches stamp most monitoring messages with a 16-bit ``timestamp_16`` (the low
    bits of the time) after one full ``timestamp``; the full time is the last full
    timestamp advanced by the 16-bit difference, which is exact as long as two
    consecutive messages are less than 18 hours apart (they are minutes apart).
    """
    content = FitContent(file_type=None)
    last_full: int | None = None  # FIT seconds of the last full timestamp
    try:
        with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE) as reader:
            for frame in reader:
                if frame.frame_type != fitdecode.FIT_FRAME_DATA:
                    continue
                values = {f.name: f.value for f in frame.fields}
                raw = {f.name: f.raw_value for f in frame.fields}
                msg = Message(frame.name, values, raw)
                full = raw.get("timestamp")
                if isinstance(full, int):
                    last_full = full
                    msg.time = FIT_EPOCH + timedelta(seconds=full)
                elif isinstance(raw.get("timestamp_16"), int) and last_full is not None:
                    last_full += (raw["timestamp_16"] - last_full) & 0xFFFF
                    msg.time = FIT_EPOCH + timedelta(seconds=last_full)
                if frame.global_mesg_num == 0 and content.file_type is None:
                    content.file_type = values.get("type")
                content.messages.append(msg)
    except _BROKEN as exc:
        if not content.messages:
            raise DecodeError(name, f"not a readable FIT file: {exc}") from exc
        content.warnings.append(
            f"FIT file damaged after message {len(content.messages)} ({exc}); kept what came before"
        )
    return content

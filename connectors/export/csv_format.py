"""The sample stream as CSV: one row per sample, one column per channel.

Header ``time,offset_s,<columns...>``: the standard channels first in their model
order, then every other column (developer fields, vendor extensions) in the order
the stream holds them. A gap is an empty cell, never 0, so a spreadsheet average
over a column stays honest.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import timedelta

from hub.model import CHANNELS, Activity

from .json_format import iso_utc


def column_order(names: list[str]) -> list[str]:
    standard = [c for c in CHANNELS if c in names]
    return standard + [c for c in names if c not in CHANNELS]


def format_number(value: float | None) -> str:
    """Shortest text that reads back to the same float; whole numbers without ``.0``."""
    if value is None or not math.isfinite(value):
        return ""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def write_csv(activity: Activity) -> bytes:
    s = activity.samples
    names = column_order(list(s.columns))
    columns = [s.columns[name] for name in names]
    buf = io.StringIO()
    # The csv module's default CRLF line ends are the RFC 4180 form every
    # spreadsheet and csv reader accepts.
    writer = csv.writer(buf)
    writer.writerow(["time", "offset_s", *names])
    for i, offset in enumerate(s.offsets_s):
        time = iso_utc(activity.start + timedelta(seconds=offset))
        writer.writerow([time, format_number(offset), *(format_number(c[i]) for c in columns)])
    return buf.getvalue().encode("utf-8")


__all__ = ["column_order", "format_number", "write_csv"]

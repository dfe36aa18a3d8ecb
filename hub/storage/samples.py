"""Compact, lossless binary form of a :class:`SampleStream` (and of plain float series).

Layout of a blob::

    b"FHSS"  magic
    u8       format version (1)
    u32 LE   length of the JSON header
    header   {"n": rows, "offsets": dtype, "columns": [[name, dtype, has_gaps], ...], "units": {...}}
    zlib     the body: offsets, then per column its values and, when it has gaps, a gap mask

Every array is float64, so offsets and values (lat/lon above all) come back bit for
bit. A gap (``None``) is written as NaN *plus* a one-byte-per-row mask, because a
real NaN value must stay NaN and not turn into a gap. Before compression the bytes of
every array are shuffled (all first bytes, then all second bytes, ...): neighbouring
samples share their sign, exponent and high mantissa bytes, and integer-valued
channels (heart rate, cadence, power) have all-zero low bytes, so grouping them lets
zlib remove nearly everything float32 would have saved, without its precision loss.
The header keeps a dtype code per array so a later version can narrow columns.

Only the stdlib ``array`` and ``zlib`` modules are used; encode+decode of 100k rows x
12 columns stays well under a second.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from array import array
from itertools import repeat
from operator import is_
from collections.abc import Sequence

from hub.errors import StorageError
from hub.model import SampleStream

MAGIC = b"FHSS"
VERSION = 1
_HEADER = struct.Struct("<4sBI")
_ITEMSIZE = {"f": 4, "d": 8}
# Level 1: on a 100k-row test stream the default level 6 took twice as long for a
# blob only 2 % smaller, and encoding happens on every import.
_LEVEL = 1
_NAN = math.nan


def encode_samples(stream: SampleStream) -> bytes:
    """Serialise ``stream`` to a compressed columnar blob (see the module docstring)."""
    body: list[bytes] = []
    offsets_code, offsets_raw, offsets_mask = _pack(stream.offsets_s)
    if offsets_mask is not None:
        raise ValueError("sample offsets must not contain gaps (None)")
    body.append(_shuffle(offsets_raw, _ITEMSIZE[offsets_code]))
    columns = []
    for name, values in stream.columns.items():
        code, raw, mask = _pack(values)
        columns.append([name, code, mask is not None])
        body.append(_shuffle(raw, _ITEMSIZE[code]))
        if mask is not None:
            body.append(mask)
    header = {
        "n": len(stream.offsets_s),
        "offsets": offsets_code,
        "columns": columns,
        "units": dict(stream.units),
    }
    return _frame(header, b"".join(body))


def decode_samples(blob: bytes) -> SampleStream:
    """Rebuild the exact :class:`SampleStream` that :func:`encode_samples` was given."""
    header, body = _unframe(blob, "sample blob")
    try:
        n = int(header["n"])
        reader = _Reader(body, n)
        offsets = reader.values(header["offsets"])
        columns: dict[str, list[float | None]] = {}
        for name, code, has_gaps in header["columns"]:
            values = reader.values(code)
            if has_gaps:
                mask = reader.mask()
                values = [None if gap else v for v, gap in zip(values, mask)]
            columns[name] = values
        reader.finish()
        return SampleStream(offsets_s=offsets, columns=columns, units=dict(header["units"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"sample blob: malformed content ({exc})") from exc


def encode_series(values: Sequence[float]) -> bytes:
    """Serialise one gap-free float series (e.g. HRV beat intervals), losslessly."""
    code, raw, mask = _pack(values)
    if mask is not None:
        raise ValueError("a float series must not contain gaps (None)")
    return _frame({"n": len(values), "series": code}, _shuffle(raw, _ITEMSIZE[code]))


def decode_series(blob: bytes) -> list[float]:
    header, body = _unframe(blob, "series blob")
    try:
        reader = _Reader(body, int(header["n"]))
        values = reader.values(header["series"])
        reader.finish()
        return values
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"series blob: malformed content ({exc})") from exc


def _pack(values: Sequence[float | None]) -> tuple[str, bytes, bytes | None]:
    """Return (dtype code, raw bytes, gap mask or None) for one column."""
    mask = None
    try:
        wide = array("d", values)
    except TypeError:
        # Only gaps make array() refuse a column of numbers; fill them with NaN and
        # remember where they were.
        mask = bytes(map(is_, values, repeat(None)))  # 1 where v is None, without a Python loop
        wide = array("d", [_NAN if v is None else v for v in values])
    return "d", wide.tobytes(), mask


def _frame(header: dict, body: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(MAGIC, VERSION, len(head)) + head + zlib.compress(body, _LEVEL)


def _unframe(blob: bytes, what: str) -> tuple[dict, bytes]:
    if len(blob) < _HEADER.size:
        raise StorageError(f"{what}: {len(blob)} bytes is too short for a header")
    magic, version, head_len = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise StorageError(f"{what}: bad magic {magic!r}, not a fithub sample blob")
    if version != VERSION:
        raise StorageError(f"{what}: format version {version} is not supported (expected {VERSION})")
    start = _HEADER.size
    try:
        header = json.loads(blob[start : start + head_len].decode("utf-8"))
        body = zlib.decompress(blob[start + head_len :])
    except (UnicodeDecodeError, ValueError, zlib.error) as exc:
        raise StorageError(f"{what}: corrupt header or body ({exc})") from exc
    if not isinstance(header, dict):
        raise StorageError(f"{what}: header is not an object")
    return header, body


def _shuffle(raw: bytes, size: int) -> bytes:
    return b"".join(raw[i::size] for i in range(size))


def _unshuffle(raw: bytes, size: int) -> bytes:
    n = len(raw) // size
    out = bytearray(len(raw))
    for i in range(size):
        out[i::size] = raw[i * n : (i + 1) * n]
    return bytes(out)


class _Reader:
    """Walks the decompressed body in the order the encoder wrote it."""

    def __init__(self, body: bytes, n: int) -> None:
        if n < 0:
            raise ValueError(f"negative row count {n}")
        self._body = body
        self._pos = 0
        self._n = n

    def _take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._body):
            raise ValueError(f"body ends at byte {len(self._body)}, needed {end}")
        chunk = self._body[self._pos : end]
        self._pos = end
        return chunk

    def values(self, code: str) -> list[float]:
        if code not in _ITEMSIZE:
            raise ValueError(f"unknown dtype {code!r}")
        size = _ITEMSIZE[code]
        return array(code, _unshuffle(self._take(self._n * size), size)).tolist()

    def mask(self) -> bytes:
        return self._take(self._n)

    def finish(self) -> None:
        if self._pos != len(self._body):
            raise ValueError(f"{len(self._body) - self._pos} unexpected trailing bytes")

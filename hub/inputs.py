"""Turn the paths a user gives into a flat stream of named byte payloads.

Files are taken as given; folders are walked recursively (only files whose name
looks like something fithub reads, so a README or a photo in a synced folder is not
reported as a rejection); ``.zip`` archives are opened and their members read;
``.gz`` files are decompressed. Every payload is named by the path exactly as the
user wrote it (``ride.zip!2024/ride.fit`` for a member of an archive), because that is
what they will look for in the summary.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Suffixes a folder walk picks up (lower-case). A file named explicitly is always tried.
ACTIVITY_SUFFIXES = (".fit", ".gpx", ".tcx")
CONTAINER_SUFFIXES = (".zip", ".gz")
# Refuse to inflate a single member beyond this: a real 24-hour 1 Hz FIT file is a few
# MB, so anything near this is a decompression bomb, not a workout.
MAX_MEMBER_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Payload:
    """One candidate file: its bytes, or why they could not be read."""

    name: str  # as given on the command line (plus !member for archive members)
    data: bytes | None
    error: str | None = None


def _wanted(name: str) -> bool:
    lower = name.lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
    return lower.endswith(ACTIVITY_SUFFIXES) or lower.endswith(".zip")


def _is_hidden(part: str) -> bool:
    # macOS litters zips and synced folders with AppleDouble "._x.fit" files and
    # __MACOSX/ folders whose bytes are metadata, not the file.
    return part.startswith(".") or part == "__MACOSX"


def count_inputs(paths: list[str]) -> int:
    """How many top-level files :func:`iter_payloads` will open (for a progress bar)."""
    total = 0
    for given in paths:
        p = Path(given)
        if p.is_dir():
            total += sum(1 for _ in _walk(given))
        else:
            total += 1
    return total


def _walk(folder: str) -> Iterator[str]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for f in sorted(files):
            if not _is_hidden(f) and _wanted(f):
                yield os.path.join(root, f)


def iter_payloads(paths: list[str]) -> Iterator[tuple[str, Iterator[Payload]]]:
    """Yield ``(top-level path, payloads inside it)`` for every input file."""
    for given in paths:
        if os.path.isdir(given):
            for path in _walk(given):
                yield path, _open(path)
        else:
            yield given, _open(given)


def _open(path: str) -> Iterator[Payload]:
    try:
        if path.lower().endswith(".zip"):
            yield from _zip_members(path)
            return
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == b"\x1f\x8b":
                yield _gunzip(path, fh.read())
            else:
                yield Payload(path, fh.read())
    except FileNotFoundError:
        yield Payload(path, None, "no such file")
    except IsADirectoryError:
        yield Payload(path, None, "is a directory")
    except PermissionError:
        yield Payload(path, None, "permission denied")
    except OSError as exc:
        yield Payload(path, None, f"cannot read: {exc.strerror or exc}")


def _gunzip(name: str, raw: bytes) -> Payload:
    try:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        data = inflater.decompress(raw, MAX_MEMBER_BYTES)
        if inflater.unconsumed_tail:
            return Payload(name, None, f"gzip content exceeds {MAX_MEMBER_BYTES // 2**20} MiB")
        if not inflater.eof:
            return Payload(name, None, "gzip stream is truncated")
        return Payload(name, data)
    except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
        return Payload(name, None, f"corrupt gzip: {exc}")


def _zip_members(path: str) -> Iterator[Payload]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        yield Payload(path, None, f"corrupt zip archive: {exc}")
        return
    with archive:
        yield from _members(archive, path, depth=0)


def _members(archive: zipfile.ZipFile, prefix: str, depth: int) -> Iterator[Payload]:
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        parts = info.filename.split("/")
        if info.is_dir() or any(_is_hidden(p) for p in parts) or not _wanted(parts[-1]):
            continue
        name = f"{prefix}!{info.filename}"
        if info.file_size > MAX_MEMBER_BYTES:
            yield Payload(name, None, f"member is {info.file_size} bytes, over the {MAX_MEMBER_BYTES // 2**20} MiB limit")
            continue
        try:
            with archive.open(info) as fh:
                data = fh.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            # RuntimeError: encrypted member; NotImplementedError: unknown compression
            yield Payload(name, None, f"cannot extract from zip: {exc}")
            continue
        lower = parts[-1].lower()
        if len(data) > MAX_MEMBER_BYTES:
            yield Payload(name, None, f"member inflates beyond {MAX_MEMBER_BYTES // 2**20} MiB")
        elif lower.endswith(".gz"):
            yield _gunzip(name, data)
        elif lower.endswith(".zip"):
            # Garmin's account export nests a zip of the original uploads; one level
            # of nesting is real, deeper is not something any service produces.
            if depth >= 1:
                yield Payload(name, None, "zip nested more than two levels deep")
                continue
            try:
                inner = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile as exc:
                yield Payload(name, None, f"corrupt zip archive: {exc}")
                continue
            with inner:
                yield from _members(inner, name, depth + 1)
        else:
            yield Payload(name, data)

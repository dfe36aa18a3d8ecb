"""Opening an Apple Health export safely: ``export.zip``, a bare XML, or the unzipped folder.

The zip is never extracted; members are read in place, so a hostile member name
cannot write anywhere. Still, names that climb out of the archive (``..``, absolute
paths) are refused rather than used, and members whose declared size or compression
ratio looks like a zip bomb are refused before a byte is inflated (zipfile itself
stops at the declared size and fails the CRC when a member lies about it).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from hub.errors import DecodeError

# Real exports reach ~4 GB of XML; far beyond that is an attack or a broken file.
MAX_XML_BYTES = 32 * 1024**3
MAX_ROUTE_BYTES = 256 * 1024**2
# Export XML deflates 10-40x; a bomb of blank padding reaches ~1000x.
MAX_RATIO = 200
RATIO_CHECK_FROM = 1024**2  # tiny members compress oddly; only judge real sizes
CHUNK = 1 << 20


@dataclass
class ExportInput:
    """One export, whatever its packaging."""

    path: Path
    main_name: str  # the main XML's name inside the zip / folder
    main_size: int  # uncompressed bytes of the main XML
    total: int  # bytes of the input, for progress
    _zip: zipfile.ZipFile | None = None
    _raw: BinaryIO | None = None
    _routes: dict[str, str] = field(default_factory=dict)  # normalised route path -> member/file
    warnings: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._raw is not None:
            self._raw.close()

    def position(self) -> int:
        """Bytes of the input consumed so far (compressed bytes for a zip)."""
        if self._raw is not None:
            try:
                return min(self._raw.tell(), self.total)
            except (OSError, ValueError):
                return 0
        return 0

    @contextmanager
    def main(self) -> Iterator[BinaryIO]:
        if self._zip is not None:
            with self._zip.open(self.main_name) as member:
                yield member
        else:
            assert self._raw is not None
            self._raw.seek(0)
            yield self._raw

    def route(self, reference: str) -> tuple[str, bytes] | None:
        """The GPX a ``FileReference path`` names, or None (with a warning) when absent or refused."""
        key = _route_key(reference)
        if key is None:
            self.warnings.append(f"route reference {reference!r} leaves the export folder; refused")
            return None
        where = self._routes.get(key)
        if where is None:
            self.warnings.append(f"route {reference!r} is not in the export")
            return None
        if self._zip is not None:
            info = self._zip.getinfo(where)
            why = _bomb(info, MAX_ROUTE_BYTES)
            if why:
                self.warnings.append(f"route {where}: {why}; refused")
                return None
            try:
                return key, self._zip.read(where)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                self.warnings.append(f"route {where} cannot be read: {exc}")
                return None
        path = Path(where)
        if path.stat().st_size > MAX_ROUTE_BYTES:
            self.warnings.append(f"route {path.name} is larger than {MAX_ROUTE_BYTES} bytes; refused")
            return None
        return key, path.read_bytes()


def _route_key(reference: str) -> str | None:
    """``/workout-routes/x.gpx`` -> ``workout-routes/x.gpx``; None if it climbs out."""
    parts = [p for p in PurePosixPath(reference.replace("\\", "/")).parts if p not in ("/", ".", "")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts


def _bomb(info: zipfile.ZipInfo, limit: int) -> str | None:
    if info.file_size > limit:
        return f"declares {info.file_size} bytes uncompressed, more than the limit of {limit}"
    if info.file_size >= RATIO_CHECK_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        return f"compression ratio {ratio:.0f}:1 is beyond {MAX_RATIO}:1 (a zip bomb?)"
    return None


def looks_like_health_xml(head: bytes) -> bool:
    return b"<HealthData" in head or b"<!DOCTYPE HealthData" in head


def _main_candidates(names: list[str]) -> list[str]:
    """XML files at the top of the export folder, except the clinical CDA document."""
    found = []
    for name in names:
        path = PurePosixPath(name)
        if name.startswith("__MACOSX/") or path.name.startswith("._") or path.suffix.lower() != ".xml":
            continue
        if path.name.lower() == "export_cda.xml" or len(path.parts) > 2:
            continue
        found.append(name)
    return found


def open_export(path: Path) -> ExportInput:
    """Open ``path`` (zip, XML or folder); raises DecodeError naming the problem."""
    path = Path(path)
    name = str(path)
    if path.is_dir():
        return _open_folder(path)
    try:
        raw: BinaryIO = open(path, "rb")
    except OSError as exc:
        raise DecodeError(name, f"cannot open: {exc.strerror or exc}") from exc
    size = os.fstat(raw.fileno()).st_size
    if zipfile.is_zipfile(raw):
        raw.seek(0)
        try:
            return _open_zip(path, raw, size)
        except BaseException:
            raw.close()
            raise
    raw.seek(0)
    return ExportInput(path=path, main_name=path.name, main_size=size, total=size, _raw=raw,
                       _routes=_folder_routes(path.parent))


def _open_zip(path: Path, raw: BinaryIO, size: int) -> ExportInput:
    name = str(path)
    try:
        zf = zipfile.ZipFile(raw)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DecodeError(name, f"not a readable zip archive: {exc}") from exc
    warnings: list[str] = []
    members: list[zipfile.ZipInfo] = []
    for info in zf.infolist():
        if _unsafe_member(info.filename):
            warnings.append(f"zip entry {info.filename!r} points outside the archive; ignored")
            continue
        if not info.is_dir():
            members.append(info)
    candidates = _main_candidates([m.filename for m in members])
    by_name = {m.filename: m for m in members}
    if not candidates:
        zf.close()
        refused = " (entries leaving the archive were refused)" if warnings else ""
        raise DecodeError(name, f"no Apple Health export XML (apple_health_export/*.xml) in this zip{refused}")
    # export.xml first, then other names (localised exports), bigger before smaller.
    candidates.sort(key=lambda n: (PurePosixPath(n).name.lower() != "export.xml", -by_name[n].file_size, n))
    main = None
    for candidate in candidates:
        why = _bomb(by_name[candidate], MAX_XML_BYTES)
        if why:
            zf.close()
            raise DecodeError(name, f"{candidate} {why}; refused")
        if _member_head_is_health(zf, candidate):
            main = by_name[candidate]
            break
    if main is None:
        zf.close()
        raise DecodeError(name, f"no Apple Health export XML in this zip ({', '.join(candidates)} hold no <HealthData>)")
    folder = str(PurePosixPath(main.filename).parent)
    prefix = "" if folder == "." else folder + "/"
    routes = {m.filename[len(prefix):]: m.filename for m in members
              if m.filename.startswith(prefix) and not m.filename.startswith("__MACOSX/")
              and m.filename.lower().endswith(".gpx")}
    return ExportInput(path=path, main_name=main.filename, main_size=main.file_size, total=size, _zip=zf, _raw=raw,
                       _routes=routes, warnings=warnings)


def _member_head_is_health(zf: zipfile.ZipFile, member: str) -> bool:
    try:
        with zf.open(member) as f:
            return looks_like_health_xml(f.read(65536))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return False


def _folder_routes(folder: Path) -> dict[str, str]:
    routes: dict[str, str] = {}
    base = folder / "workout-routes"
    if base.is_dir():
        root = folder.resolve()
        for gpx in base.glob("*.gpx"):
            resolved = gpx.resolve()
            if resolved.is_relative_to(root):  # a symlink out of the folder is not followed
                routes[f"workout-routes/{gpx.name}"] = str(resolved)
    return routes


def _head(path: Path, size: int = 65536) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _open_folder(folder: Path) -> ExportInput:
    candidates = [p for p in sorted(folder.glob("*.xml")) if p.name.lower() != "export_cda.xml"]
    for xml in sorted(candidates, key=lambda p: (p.name.lower() != "export.xml", p.name)):
        if looks_like_health_xml(_head(xml)):
            return open_export(xml)
    raise DecodeError(str(folder), "no Apple Health export XML in this folder")


def claims(path: Path, head: bytes) -> bool:
    """True for an Apple Health export.zip, export XML or unzipped export folder."""
    path = Path(path)
    try:
        if path.is_dir():
            return any(looks_like_health_xml(_head(p)) for p in path.glob("*.xml") if p.name.lower() != "export_cda.xml")
        if head[:4] == b"PK\x03\x04" or (not head and zipfile.is_zipfile(path)):
            with zipfile.ZipFile(path) as zf:
                infos = {i.filename: i for i in zf.infolist() if not _unsafe_member(i.filename)}
                candidates = _main_candidates(list(infos))
                # The export's folder is claim enough (so a bomb in that shape is refused
                # by this importer, with its reason); else peek into members that pass
                # the bomb check.
                return any(n.startswith("apple_health_export/") for n in candidates) or any(
                    _bomb(infos[n], MAX_XML_BYTES) is None and _member_head_is_health(zf, n) for n in candidates)
        if looks_like_health_xml(head):
            return True
        if head.lstrip()[:5] in (b"<?xml", b"<!DOC") and path.is_file():
            return looks_like_health_xml(_head(path))
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return False


__all__ = ["ExportInput", "MAX_RATIO", "MAX_XML_BYTES", "claims", "looks_like_health_xml", "open_export"]

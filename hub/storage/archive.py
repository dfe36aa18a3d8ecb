"""The raw archive: every original file kept once, named by its SHA-256.

Layout ``<root>/ab/cdef...`` (first two hex digits as a folder, so no folder grows
past a few thousand entries). A file appears under its final name only complete:
it is written to a temporary file in the same folder, flushed to disk, then renamed,
and the folder entry is flushed too. Writing the same content again is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from hub.errors import NotFound, StorageError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits; it becomes a path, so be strict."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
    return sha256


class RawArchive:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def write(self, sha256: str, data: bytes) -> Path:
        """Store ``data`` under ``sha256`` (which must be its hash); idempotent."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise StorageError(f"raw archive: content hashes to {actual}, not the given {sha256}")
        target = self.path(sha256)
        # An existing file of the right size is the same content: it was renamed
        # into place only after being fully written.
        if target.is_file() and target.stat().st_size == len(data):
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StorageError(f"raw archive: cannot write {target}: {exc}") from exc
        return target

    def read(self, sha256: str) -> bytes:
        target = self.path(sha256)
        try:
            return target.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"raw archive: no file {sha256} (looked at {target})") from exc
        except OSError as exc:
            raise StorageError(f"raw archive: cannot read {target}: {exc}") from exc


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; without it a crash could lose the new name.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

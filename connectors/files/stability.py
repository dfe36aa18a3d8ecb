"""When is a file in a watched folder finished?

Two independent signals, because neither is enough alone:

* **Settle time** (:class:`SettleTracker`): size and mtime unchanged for
  ``settle_s``. Works everywhere (network shares, FUSE, other OSes) but a slow
  writer that pauses longer than the settle time fools it.
* **Open for writing** (:func:`open_for_writing`): on Linux, ``/proc/<pid>/fd``
  shows every process's open files and ``/proc/<pid>/fdinfo/<fd>`` their open
  flags, so a file some process still holds open for writing is not taken
  however long it has been quiet. Only processes we may inspect are seen (another
  user's processes are invisible without privileges); where /proc is missing the
  settle time is all there is.

Both are pure of the hub: paths in, decisions out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

# Access-mode bits of open(2) flags as /proc/<pid>/fdinfo prints them (octal).
_O_ACCMODE = 0o3
_O_WRONLY = 0o1
_O_RDWR = 0o2


@dataclass(frozen=True)
class FileSig:
    """What we compare between polls: a change in either means someone wrote."""

    size: int
    mtime_ns: int


class SettleTracker:
    """Remembers each path's (size, mtime) and since when it has been unchanged.

    ``clock`` is monotonic seconds (injectable so the logic is testable without
    sleeping); wall-clock jumps must not make a file look settled.
    """

    def __init__(self, settle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_s = settle_s
        self._clock = clock
        self._since: dict[str, tuple[FileSig, float]] = {}

    def update(self, current: Mapping[str, FileSig]) -> list[str]:
        """Feed this poll's listing; returns the paths settled long enough, in
        listing order. Paths no longer listed are forgotten."""
        now = self._clock()
        for gone in self._since.keys() - current.keys():
            del self._since[gone]
        settled = []
        for path, sig in current.items():
            seen = self._since.get(path)
            if seen is None or seen[0] != sig:
                self._since[path] = (sig, now)
                if self.settle_s > 0:
                    continue
                seen = (sig, now)
            if now - seen[1] >= self.settle_s:
                settled.append(path)
        return settled

    def forget(self, path: str) -> None:
        """Start the settle clock again for ``path`` (e.g. it was busy)."""
        self._since.pop(path, None)


def proc_available(proc: str = "/proc") -> bool:
    return os.path.isdir(os.path.join(proc, "self", "fd"))


def open_for_writing(paths: Iterable[str], proc: str = "/proc") -> set[str]:
    """The subset of ``paths`` (absolute, real paths) some visible process has
    open for writing. Empty when /proc is unavailable: the caller then relies on
    the settle time alone."""
    wanted = set(paths)
    busy: set[str] = set()
    if not wanted or not proc_available(proc):
        return busy
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return busy
    for pid in pids:
        fd_dir = os.path.join(proc, pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # the process exited, or belongs to someone else
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target in wanted and target not in busy and _writable(os.path.join(proc, pid, "fdinfo", fd)):
                busy.add(target)
        if busy == wanted:
            break
    return busy


def _writable(fdinfo: str) -> bool:
    try:
        with open(fdinfo, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags:"):
                    flags = int(line.split()[1], 8)
                    return flags & _O_ACCMODE in (_O_WRONLY, _O_RDWR)
    except (OSError, ValueError, IndexError):
        # The fd closed between readlink and here; or fdinfo unreadable. Not
        # knowing means not blocking: the settle time still protects the file.
        return False
    return False

"""Shared by the fuzz tests: byte-level mutations of real files and a time limit
that turns a hang into a test failure."""

from __future__ import annotations

import random
import signal
from contextlib import contextmanager


class Runaway(Exception):
    """A decode ran past its time limit."""


@contextmanager
def time_limit(seconds: float):
    def _raise(signum, frame):
        raise Runaway()

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: bit flips, random runs, truncation, inserted garbage,
    deleted or duplicated chunks, extreme values where a size, type or count may be."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = len(buf)
        if n == 0:
            buf.extend(rng.randbytes(rng.randint(1, 16)))
            continue
        pos = rng.randrange(n)
        op = rng.randrange(7)
        if op == 0:  # flip one bit
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:  # random bytes over a short run
            k = min(rng.randint(1, 8), n - pos)
            buf[pos : pos + k] = rng.randbytes(k)
        elif op == 2:  # truncate
            del buf[pos:]
        elif op == 3:  # insert garbage
            buf[pos:pos] = rng.randbytes(rng.randint(1, 32))
        elif op == 4:  # delete a chunk
            del buf[pos : pos + rng.randint(1, 64)]
        elif op == 5:  # duplicate a chunk elsewhere
            chunk = buf[pos : pos + rng.randint(1, 128)]
            at = rng.randrange(len(buf))
            buf[at:at] = chunk
        else:
            buf[pos] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF))
    return bytes(buf)

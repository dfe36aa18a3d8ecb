"""The live channel: sensor readings handed to consumers, best-effort, off the caller's thread.

Live values (:class:`hub.events.LiveValues`) are worthless a minute later, so they
bypass the durable outbox. ``publish`` is called from a sensor callback (the BLE
event loop) and must never block it: it appends to a small bounded queue and
returns; when the queue is full the *oldest* value is dropped, since the newest is
the one worth showing. One worker thread hands each value to every consumer that
has a ``live`` method. A consumer that raises is logged (once, then at most every
``log_every_s`` with a count) and otherwise ignored; nothing is retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .events import LiveValues

log = logging.getLogger("fithub.live")

DEFAULT_QUEUE = 64  # about a minute of one 1 Hz source; more is history, not live


def live_consumers(consumers: Mapping[str, object]) -> dict[str, Callable[[LiveValues], None]]:
    """The ``live`` methods of those ``consumers`` (name -> plugin) that have one."""
    return {name: getattr(c, "live") for name, c in consumers.items() if callable(getattr(c, "live", None))}


@dataclass
class _Failing:
    """One consumer's failure streak, for rate-limited logging."""

    since_log: int = 0  # failures not yet logged
    total: int = 0
    last_log: float = 0.0


class LiveFanout:
    def __init__(
        self,
        consumers: Mapping[str, Callable[[LiveValues], None]] | None = None,
        *,
        maxlen: int = DEFAULT_QUEUE,
        log_every_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxlen < 1:
            raise ValueError("the live queue must hold at least one value")
        self.consumers: dict[str, Callable[[LiveValues], None]] = dict(consumers or {})
        self.log_every_s = log_every_s
        self.monotonic = monotonic
        self._queue: deque[LiveValues] = deque(maxlen=maxlen)
        self._cv = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._failing: dict[str, _Failing] = {}
        # Counters since start, for status and tests.
        self.published = 0
        self.dropped = 0
        self.delivered = 0  # values handed to every consumer (one count per value)
        self.failures = 0

    # -- the caller's side (any thread; never blocks beyond a list append) -----------

    def publish(self, values: LiveValues) -> None:
        if not self.consumers or self._closing:
            return
        with self._cv:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1  # deque(maxlen) drops the oldest on append
            self._queue.append(values)
            self.published += 1
            self._cv.notify()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if not self.consumers or self._thread is not None:
            return
        log.info("live values go to %s", ", ".join(sorted(self.consumers)))
        self._thread = threading.Thread(target=self._run, name="live-fanout", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop the worker; what is still queued is discarded (it is stale by now).
        Returns False when a consumer's ``live`` is still stuck after ``timeout_s``
        (the thread is a daemon thread: it cannot keep the process alive)."""
        with self._cv:
            self._closing = True
            self._queue.clear()
            self._cv.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("a live consumer did not return within %.1f s of shutdown", timeout_s)
            return False
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- the worker ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if self._closing:
                    return
                values = self._queue.popleft()
            for name, live in self.consumers.items():
                self._hand(name, live, values)
            self.delivered += 1

    def _hand(self, name: str, live: Callable[[LiveValues], None], values: LiveValues) -> None:
        try:
            live(values)
        except Exception as exc:  # best-effort: a consumer bug must not stop the others
            self.failures += 1
            self._failed(name, exc)
            return
        failing = self._failing.pop(name, None)
        if failing is not None:
            log.info("live consumer %s works again (after %d failures)", name, failing.total)

    def _failed(self, name: str, exc: Exception) -> None:
        now = self.monotonic()
        state = self._failing.get(name)
        if state is None:
            self._failing[name] = _Failing(total=1, last_log=now)
            log.warning("live consumer %s failed on live values: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
            return
        state.total += 1
        state.since_log += 1
        if now - state.last_log >= self.log_every_s:
            log.warning("live consumer %s still failing: %d more failures, the latest %s: %s",
                        name, state.since_log, type(exc).__name__, exc)  # fmt: skip
            state.since_log, state.last_log = 0, now

"""Running one source on a schedule: backoff, failure/recovery reporting, state.

A :class:`SourceRunner` wraps a polling source for the scheduler. The scheduler
calls it every ``interval_s`` and never twice at once (``max_instances=1``); while
the source is failing, calls before the backoff deadline return at once, so a
dead NAS or an unplugged watch costs nothing. The first failure of an outage and
the recovery are logged (and emitted as events) once each; repeats go to debug.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from hub.events import SOURCE_FAILED, SOURCE_RECOVERED, source_event
from hub.storage.daemon_rows import append_events
from hub.storage.engine import WRITE, upsert_insert
from hub.storage.schema import source_state

log = logging.getLogger("fithub.sources")


def backoff_s(failures: int, *, base_s: float, max_s: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: about base * 2^(failures-1), capped, times
    0.5-1.0 ("equal jitter") so many hubs restarted together do not retry in step."""
    if failures <= 0:
        return 0.0
    ceiling = min(max_s, base_s * 2 ** min(failures - 1, 30))
    return ceiling / 2 + ceiling / 2 * rand()


@dataclass
class SourceRunner:
    name: str
    kind: str
    poll: Callable[[], int]
    engine: sa.Engine
    base_s: float = 5.0
    max_s: float = 900.0
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.failures = 0
        self.not_before = 0.0
        self.failing_since: datetime | None = None
        self.last_error: str | None = None
        self.busy = threading.Lock()

    def __call__(self) -> None:
        """One scheduled turn. Never raises: a source's trouble is the source's."""
        if self.clock() < self.not_before:
            return
        with self.busy:
            started = datetime.now(timezone.utc)
            try:
                items = int(self.poll() or 0)
            except Exception as exc:  # any failure of a plugin: back off, never stop the others
                self._failed(started, exc)
            else:
                self._succeeded(started, items)

    def _failed(self, when: datetime, exc: BaseException) -> None:
        self.failures += 1
        error = f"{type(exc).__name__}: {exc}" if not str(exc).startswith(type(exc).__name__) else str(exc)
        delay = backoff_s(self.failures, base_s=self.base_s, max_s=self.max_s)
        self.not_before = self.clock() + delay
        events = []
        if self.failures == 1:
            self.failing_since = when
            log.error("source %s failed: %s (retrying with backoff)", self.name, error, extra={"source": self.name})
            events.append(source_event(SOURCE_FAILED, source=self.name, since=when, error=error))
        else:
            log.debug("source %s still failing (%d): %s; next try in %.0f s", self.name, self.failures, error, delay)
        self.last_error = error
        self._save(attempt=when, success=None, error=error, items=0, events=events, failed=True)

    def _succeeded(self, when: datetime, items: int) -> None:
        events = []
        if self.failures:
            log.info(
                "source %s recovered after %d failed attempts", self.name, self.failures, extra={"source": self.name}
            )
            events.append(source_event(SOURCE_RECOVERED, source=self.name, since=self.failing_since or when))
        self.failures = 0
        self.not_before = 0.0
        self.failing_since = None
        self.last_error = None
        self._save(attempt=when, success=when, error=None, items=items, events=events, failed=False)

    def _save(self, *, attempt, success, error, items, events, failed) -> None:
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(**{WRITE: True})
                with conn.begin():
                    _upsert_state(conn, self.name, self.kind, attempt, success, error, self.failures, failed, items)
                    append_events(conn, events)
        except Exception as exc:  # the database being away is itself logged, not fatal here
            log.warning("could not record the state of source %s: %s", self.name, exc)


def _upsert_state(conn, name, kind, attempt, success, error, failures, failed, items) -> None:
    values = {
        "name": name,
        "kind": kind,
        "last_attempt_at": attempt,
        "last_success_at": success,
        "last_error": error,
        "failures": failures,
        "errors_total": 1 if failed else 0,
        "items_total": items,
    }
    stmt = upsert_insert(conn, source_state).values(**values)
    update = {
        "kind": stmt.excluded.kind,
        "last_attempt_at": stmt.excluded.last_attempt_at,
        "last_error": stmt.excluded.last_error,
        "failures": stmt.excluded.failures,
        "errors_total": source_state.c.errors_total + stmt.excluded.errors_total,
        "items_total": source_state.c.items_total + stmt.excluded.items_total,
    }
    if success is not None:
        update["last_success_at"] = stmt.excluded.last_success_at
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=update))


def record_push_health(engine: sa.Engine, name: str, kind: str, report) -> None:
    """Write a push source's own report (:class:`hub.plugins.SourceHealthReport`)
    to ``source_state``. Its counters are the running process's, so they restart
    from zero with the daemon, as Prometheus counters may."""
    now = datetime.now(timezone.utc)
    values = {
        "name": name,
        "kind": kind,
        "last_attempt_at": now,
        "last_success_at": now if report.ok else None,
        "last_error": None if report.ok else (report.error or "not ok"),
        "failures": 0 if report.ok else 1,
        "errors_total": int(report.errors),
        "items_total": int(report.items),
    }
    stmt = upsert_insert(engine, source_state).values(**values)
    update = {k: stmt.excluded[k] for k in values if k not in ("name", "last_success_at")}
    if report.ok:
        update["last_success_at"] = stmt.excluded.last_success_at
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE: True})
        with conn.begin():
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=update))

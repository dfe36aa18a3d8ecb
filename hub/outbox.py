"""The durable outbox: every event to every sink and notifier, at least once,
in order per person, with retries, dead letters and a circuit breaker.

Events are written by the transaction that stored the data they describe
(:func:`hub.storage.daemon_rows.append_events`). From there:

1. :meth:`Outbox.register` gives each consumer a row; a new consumer starts after
   the newest event (adding a notifier does not replay months of history).
2. Each :meth:`Outbox.run_once` first *materialises* a pending delivery row per
   (consumer, new event), then, per consumer and per person, delivers the oldest
   undelivered event. A pending event waiting for its retry holds back the later
   events of the same person for that consumer; other persons go on.
3. The plugin is called outside any database transaction (a slow webhook must not
   hold SQLite's write lock); the outcome is written right after in a short one.
   A crash in between means the event is delivered again: at least once, and the
   idempotency key (``event.key``) lets the receiver drop the repeat.

Outcomes: success -> ``done``. :class:`~hub.plugins.DeliveryError`, or any other
exception from the plugin -> retried after ``min(retry_max_s, retry_base_s *
2**attempts)`` seconds times a random 0.8-1.2 (so many hubs do not retry in step),
where ``attempts`` counts the failures before this one; after ``max_attempts``
failures -> ``dead`` (parked; the person's later events proceed; ``fithub outbox
retry`` revives it). :class:`~hub.plugins.PermanentDeliveryError` -> ``dead`` at once.

Several hub processes may share a database: materialising skips rows that exist,
and a delivery is *claimed* for ``lease_s`` seconds before the call (its
``next_at`` moves forward), so another process neither delivers it concurrently
nor overtakes it with the person's next event. A process killed mid-delivery
releases it when the lease runs out. The lease should outlast the slowest call.

A circuit breaker per consumer (:mod:`hub.outbox_breaker`) stops calling a consumer
after ``breaker_failures`` failures in a row, for ``breaker_cooldown_s``; events
wait meanwhile without using up their attempts.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from hub.outbox_breaker import Breaker
from hub.plugins import DeliveryError, EventConsumer, PermanentDeliveryError
from hub.storage import outbox_queries as q
from hub.storage.engine import WRITE

log = logging.getLogger("fithub.outbox")


@dataclass(frozen=True)
class OutboxSettings:
    """The ``[outbox]`` config section (declared in :mod:`hub.config_options`; same
    defaults), plus ``lease_s`` and ``commit_grace_s``, which only tests and
    unusual setups change."""

    retry_base_s: float = 2.0
    retry_max_s: float = 600.0
    max_attempts: int = 10
    breaker_failures: int = 5
    breaker_cooldown_s: float = 60.0
    batch: int = 100  # deliveries per consumer per run_once
    # Longer than any consumer's call (the webhook's timeout is 10 s), short enough that
    # a delivery claimed by a process killed mid-call goes out again soon after a restart.
    lease_s: float = 30.0
    # Longest a transaction writing events may stay open. Materialising only looks
    # at events newer than what was already complete this long ago (see _floor).
    commit_grace_s: float = 600.0
    interval_s: float = 1.0  # run_forever's pause when there was nothing to do


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Outbox:
    def __init__(
        self,
        store,
        consumers: Mapping[str, EventConsumer] | None = None,
        settings: OutboxSettings | None = None,
        *,
        rng: random.Random | None = None,
        stopping: threading.Event | None = None,
        **overrides,
    ) -> None:
        """``overrides`` are :class:`OutboxSettings` fields (``retry_base_s=5``),
        applied over ``settings``: the daemon passes its validated section so."""
        self.store = store
        self.engine: sa.Engine = store.engine
        self.consumers = dict(consumers or {})
        self.settings = replace(settings or OutboxSettings(), **overrides)
        self.rng = rng or random.Random()
        # Set by the daemon on shutdown: the delivery in flight finishes, no new one starts.
        self.stopping = stopping or threading.Event()
        s = self.settings
        self.breakers = {name: Breaker(s.breaker_failures, s.breaker_cooldown_s) for name in self.consumers}
        self._registered = False
        # Per consumer: (monotonic time, newest event id then), oldest first; and the
        # id below which every event is known to have its delivery row (see _floor).
        self._marks: dict[str, deque[tuple[float, int]]] = {name: deque() for name in self.consumers}
        self._floors: dict[str, int] = dict.fromkeys(self.consumers, 0)

    # -- transactions ------------------------------------------------------------

    def _write(self, action):
        # WRITE: on SQLite take the write lock up front (BEGIN IMMEDIATE), see hub.storage.engine.
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                return action(conn)

    def _read(self, action):
        with self.engine.connect() as conn:
            return action(conn)

    # -- setup -----------------------------------------------------------------

    def register(self, now: datetime | None = None) -> None:
        now = now or _utcnow()
        for name in self.consumers:
            self._write(lambda conn, name=name: q.register_consumer(conn, name, now))
        self._registered = True

    def materialise(self, now: datetime | None = None) -> int:
        """Pending delivery rows for every consumer and every new event."""
        now = now or _utcnow()
        if not self._registered:
            self.register(now)
        return sum(self._write(lambda conn, name=name: self._materialise(conn, name, now)) for name in self.consumers)

    def _materialise(self, conn: sa.Connection, name: str, now: datetime) -> int:
        seen_at = time.monotonic()
        newest = q.newest_event_id(conn)
        added = q.materialise(conn, name, now, self._floor(name, seen_at))
        marks = self._marks[name]
        # A mark a second is resolution enough and keeps the deque to ~commit_grace_s entries.
        if not marks or seen_at - marks[-1][0] >= 1.0 or self.settings.commit_grace_s < 10:
            marks.append((seen_at, newest))
        return added

    def _floor(self, name: str, now_mono: float) -> int:
        """The event id at or below which every event of this consumer has its
        delivery row for good, so materialising need not scan the whole history.

        Every event with id <= ``newest`` (read before a materialise) has its row
        after that materialise unless its transaction had already taken the id and
        was still open then: only PostgreSQL's sequences allow that (SQLite assigns
        ids under its single write lock). Such a transaction commits within
        ``commit_grace_s / 2``, and the next rounds (still scanning above an older
        floor) pick its event up; so ``commit_grace_s`` after the read, ``newest``
        is complete. A new process starts from the consumer's beginning once.
        """
        marks = self._marks[name]
        grace = self.settings.commit_grace_s
        while marks and marks[0][0] + grace <= now_mono:
            self._floors[name] = max(self._floors[name], marks.popleft()[1])
        return self._floors[name]

    # -- delivering --------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> int:
        """One round over every consumer; returns the number of events delivered
        successfully. ``now`` fixes the clock (tests); by default the real time is
        read at each step."""
        self.materialise(now)
        delivered = 0
        for name, consumer in self.consumers.items():
            if self.stopping.is_set():
                break
            delivered += self._run_consumer(name, consumer, now)
        return delivered

    def _run_consumer(self, name: str, consumer: EventConsumer, fixed_now: datetime | None) -> int:
        """Rounds of "each person's oldest due event" until nothing is due, the
        batch is used up, the breaker opens or the hub stops."""
        breaker = self.breakers[name]
        budget = self.settings.batch
        delivered = 0
        while budget > 0 and not self.stopping.is_set():
            now = fixed_now or _utcnow()
            if not breaker.allow(now):
                break
            heads = self._read(lambda conn: q.heads(conn, name, now, budget))
            # One claim for the whole round; another process may have taken some.
            ids = [h.event_id for h in heads]
            taken = self._write(lambda conn: q.claim(conn, name, ids, now, self.settings.lease_s)) if ids else set()
            mine = [h for h in heads if h.event_id in taken]
            if not mine:
                break
            progressed = False
            for i, head in enumerate(mine):
                if self.stopping.is_set() or not breaker.allow(fixed_now or _utcnow()):
                    rest = [h.event_id for h in mine[i:]]
                    self._write(lambda conn: q.release(conn, name, rest, fixed_now or _utcnow()))
                    return delivered
                outcome = self._deliver_one(name, consumer, head, fixed_now)
                budget -= 1
                delivered += outcome == "done"
                progressed |= outcome in ("done", "dead")  # the person's next event may now be due
            if not progressed:
                break
        return delivered

    def _deliver_one(self, name: str, consumer: EventConsumer, head: q.Head, fixed_now: datetime | None) -> str:
        """Call the consumer with a claimed delivery and record the outcome."""
        try:
            event = head.event()
        except (ValueError, TypeError) as exc:  # a row this version cannot read: retrying cannot help
            return self._failed(name, head, f"unreadable event: {exc}", permanent=True, fixed_now=fixed_now)
        started = time.monotonic()
        try:
            consumer.deliver(event)
        except PermanentDeliveryError as exc:
            # The endpoint answered (and refused): it is up, so the breaker counts no failure.
            self._breaker_success(name)
            return self._failed(name, head, _describe(exc), permanent=True, fixed_now=fixed_now)
        except DeliveryError as exc:
            self._breaker_failure(name, fixed_now)
            return self._failed(name, head, _describe(exc), permanent=False, fixed_now=fixed_now)
        except Exception as exc:  # a plugin bug must not take the hub down; retried like a DeliveryError
            log.warning("consumer %s raised on event %d (%s)", name, head.event_id, head.key, exc_info=True)
            self._breaker_failure(name, fixed_now)
            return self._failed(name, head, _describe(exc), permanent=False, fixed_now=fixed_now)
        self._breaker_success(name)
        done_at = fixed_now or _utcnow()
        self._write(lambda conn: q.mark_done(conn, name, head.event_id, done_at))
        log.debug("consumer %s took event %d (%s) in %.3f s", name, head.event_id, head.key, time.monotonic() - started)
        return "done"

    def _failed(self, name: str, head: q.Head, error: str, *, permanent: bool, fixed_now: datetime | None) -> str:
        s = self.settings
        now = fixed_now or _utcnow()
        attempts = head.attempts + 1
        dead = permanent or attempts >= s.max_attempts
        delay = min(s.retry_max_s, s.retry_base_s * 2**head.attempts) * self.rng.uniform(0.8, 1.2)
        next_at = now + timedelta(seconds=delay)
        self._write(
            lambda conn: q.mark_failed(
                conn, name, head.event_id, attempts=attempts, dead=dead, next_at=next_at, error=error, now=now
            )
        )
        if dead:
            why = "refused" if permanent else f"failed {attempts} times"
            log.error("consumer %s: event %d (%s) %s, parked as dead letter: %s", name, head.event_id, head.key, why, error)
            return "dead"
        log.info(
            "consumer %s: event %d (%s) failed (attempt %d), retry in %.0f s: %s",
            name, head.event_id, head.key, attempts, delay, error,
        )  # fmt: skip
        return "retry"

    def _breaker_success(self, name: str) -> None:
        if self.breakers[name].success():
            log.warning("consumer %s works again; circuit breaker closed", name)

    def _breaker_failure(self, name: str, fixed_now: datetime | None) -> None:
        breaker = self.breakers[name]
        if breaker.failure(fixed_now or _utcnow()):
            log.warning(
                "consumer %s failed %d times in a row; circuit breaker open, no calls for %.0f s",
                name, breaker.failures, breaker.cooldown_s,
            )  # fmt: skip

    def run_forever(self, stopping: threading.Event | None = None, interval_s: float | None = None) -> None:
        """Deliver until ``stopping`` is set; the delivery in flight finishes first.
        A database failure is logged once and retried each interval."""
        if stopping is not None:
            self.stopping = stopping
        pause = self.settings.interval_s if interval_s is None else interval_s
        failing = False
        while not self.stopping.is_set():
            try:
                delivered = self.run_once()
            except Exception as exc:  # the database is away (or a bug): keep the loop alive
                if not failing:
                    log.error("outbox: delivery round failed (database %s): %s", self.store.safe_url, exc, exc_info=True)
                failing, delivered = True, 0
            else:
                if failing:
                    log.warning("outbox: delivery works again (database %s)", self.store.safe_url)
                failing = False
            if delivered == 0:
                self.stopping.wait(pause)

    # -- reports and repairs (also used by the CLI, without consumers) --------------

    def depth(self) -> dict[str, int]:
        """Undelivered events per consumer (pending, including not yet materialised)."""
        return self._read(lambda conn: q.depth(conn, self._floors))

    def dead(self, consumer: str | None = None) -> list[q.DeliveryRow]:
        return self._read(lambda conn: q.deliveries(conn, state=q.DEAD, consumer=consumer))

    def pending(self, consumer: str | None = None) -> list[q.DeliveryRow]:
        return self._read(lambda conn: q.deliveries(conn, state=q.PENDING, consumer=consumer))

    def retry(self, ids: list[int] | None = None, consumer: str | None = None, now: datetime | None = None) -> int:
        """Dead letters back to pending (attempts reset); ``ids`` None: all of them.
        A revived event is older than the person's delivered ones: it goes out next,
        out of the original order, which is what a manual retry asks for."""
        now = now or _utcnow()
        return self._write(lambda conn: q.revive(conn, ids=ids, consumer=consumer, now=now))

    def breaker_states(self) -> dict[str, dict]:
        return {name: breaker.as_dict() for name, breaker in self.breakers.items()}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

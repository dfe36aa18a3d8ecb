"""The ingest worker: received messages -> readings -> one commit per batch -> acks.

paho's loop thread only queues messages (:meth:`Ingestor.put`). A parser thread
takes up to ``batch_max`` of them, or what was received within ``batch_ms`` of the
first, and parses each with its topic's profile; a writer thread stores a batch
(with the parsed batches that waited behind it, up to ``batch_max`` messages) in
one transaction and only then acknowledges its messages. The stage list is
:meth:`Ingestor.process`; the two threads split it at :meth:`Ingestor._parse` /
:meth:`Ingestor._store`, so parsing one batch overlaps committing the previous.

- A payload its profile cannot read (:class:`PayloadError`) is counted, logged with
  its topic (at most once per topic every ``LOG_EVERY_S``, with the number left
  out), and acknowledged: it would never read better on redelivery.
- When the database fails, nothing is acknowledged; the same batch is retried with
  a growing pause until it commits or the hub stops (the broker then redelivers it
  to the next run). The loop itself never dies.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from hub.errors import FithubError

from .client import Inbound
from .profiles_common import IgnoredPayload
from .readings import ActivityReading, MeasurementReading, PayloadError, SampleReading
from .storage import LiveStore
from .topics import profile_for

LOG_EVERY_S = 30.0
RETRY_MAX_S = 30.0
# A batch also ends at this many payload bytes: 500 messages of 50 samples each
# would be 25,000 rows in one transaction, and every message in it waits for the
# whole transaction before it is acknowledged.
BATCH_BYTES = 1024 * 1024


# The parser sleeps through a batch window in slices this long (looking whether
# it filled up), rather than waking up for every message received.
WINDOW_SLICE_S = 0.005


@dataclass
class _Parsed:
    """One batch of messages and what its messages hold, ready to be stored."""

    batch: list[Inbound]
    samples: list = field(default_factory=list)  # (SampleReading, person)
    assigned: list = field(default_factory=list)  # (MeasurementReading, person)
    unassigned: list = field(default_factory=list)  # MeasurementReading
    activities: list = field(default_factory=list)  # (ActivityReading, person)
    size: int = 0  # payload bytes
    broken: bool = False  # parsing hit a bug: store the messages one by one

    @staticmethod
    def join(parts: list[_Parsed]) -> _Parsed:
        """Several parsed batches as one, in arrival order."""
        whole = _Parsed([])
        for part in parts:
            whole.batch += part.batch
            whole.samples += part.samples
            whole.assigned += part.assigned
            whole.unassigned += part.unassigned
            whole.activities += part.activities
            whole.size += part.size
        return whole


_END = object()  # the parser thread's last word to the writer
_UNSEEN = object()
ROUTES_CACHED = 10_000


@dataclass
class Stats:
    """Counters of one source since it started (``/metrics`` and the tests read them)."""

    received: int = 0
    committed: int = 0  # messages whose readings are committed (and then acked)
    acked: int = 0
    payload_errors: int = 0
    ignored: int = 0  # well-formed messages holding nothing fithub stores (another device on a gateway topic)
    unmatched: int = 0  # topic matched no configured filter (cannot happen unless the broker misroutes)
    samples_new: int = 0
    samples_repeated: int = 0  # absorbed by their idempotency key
    measurements_new: int = 0
    unassigned_new: int = 0
    activities: int = 0
    batches: int = 0
    db_failures: int = 0
    # publish-to-commit latency, seconds, of recent messages (bounded; see Ingestor)
    latencies: list[float] = field(default_factory=list)
    errors_by_profile: Counter = field(default_factory=Counter)


class RateLimitedLog:
    """One warning per key every ``every_s``; the ones left out are counted in the next."""

    def __init__(self, log: logging.Logger, every_s: float = LOG_EVERY_S) -> None:
        self.log = log
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._skipped: Counter[str] = Counter()

    def warning(self, key: str, message: str, *args) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._skipped[key] += 1
            return
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        suffix = f" ({skipped} more like it since the last report)" if skipped else ""
        self.log.warning(message + suffix, *args)


Parse = Callable[..., list]  # profiles.parse


class Ingestor:
    def __init__(
        self,
        *,
        name: str,
        subscriptions: Mapping[str, tuple[str, object]],  # filter -> (profile, ProfileOptions)
        parse: Parse,
        live: LiveStore,
        decide: Callable[[list], list[tuple[object, str | None]]],
        import_activity: Callable[[ActivityReading, str | None], object],
        ack: Callable[[Inbound], bool],
        batch_max: int,
        batch_ms: float,
        log: logging.Logger,
        keep_latencies: int = 200_000,
    ) -> None:
        self.name = name
        self.subscriptions = dict(subscriptions)
        self.parse = parse
        self.live = live
        self.decide = decide  # readings of one message -> [(reading, person or None)]
        self.import_activity = import_activity
        self.ack = ack
        self.batch_max = max(1, int(batch_max))
        self.batch_s = max(0.0, batch_ms / 1000.0)
        self.log = log
        self.bad = RateLimitedLog(log)
        self.stats = Stats()
        self.keep_latencies = keep_latencies
        self.queue: queue.Queue[Inbound] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None  # the parser
        self._writer: threading.Thread | None = None
        self._handoff: queue.Queue = queue.Queue()  # _Parsed batches, then _END
        self._routes: dict[str, object] = {}  # topic -> (profile, options) or None; see _route
        self.idle = threading.Event()  # set whenever the queue was found empty and nothing was being stored
        # Called after each committed batch with (messages, wall-clock commit time):
        # the benchmark measures publish-to-commit latency with it.
        self.on_commit: Callable[[list[Inbound], float], None] | None = None

    # -- threads -----------------------------------------------------------------
    #
    # Two stages, so that parsing (Python, holding the GIL) overlaps the commit
    # (SQLite's fsync or PostgreSQL's round trips, which release it):
    #
    #   paho loop --put--> queue --parser thread--> handoff --writer thread--> commit, acks
    #
    # The writer merges the parsed batches waiting for it into one transaction (up
    # to batch_max messages and BATCH_BYTES), so when commits are slow there are
    # fewer of them, not a growing backlog. Memory stays bounded by the broker:
    # it has at most receive_maximum unacknowledged messages in flight to us.

    def put(self, message: Inbound) -> None:
        self.queue.put(message)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mqtt-ingest-{self.name}", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"mqtt-commit-{self.name}", daemon=True)
        self._writer.start()
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Finish the batch in hand (and what is queued, within the time); True when
        everything received was committed and acknowledged."""
        self._stop.set()
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout_s
        self._thread.join(timeout_s)
        if self._writer is not None:
            self._writer.join(max(0.0, deadline - time.monotonic()))
        alive = self._thread.is_alive() or (self._writer is not None and self._writer.is_alive())
        return not alive and self.queue.empty() and self._handoff.unfinished_tasks == 0

    def _run(self) -> None:
        """The parser thread: batches of received messages -> parsed readings."""
        try:
            while True:
                batch = self._take()
                if not batch:
                    if self._stop.is_set():
                        return
                    continue
                try:
                    parsed = self._parse(batch)
                except Exception as exc:  # a bug must not end ingestion: the writer isolates the culprit
                    self.log.error("MQTT source %s: a batch of %d messages failed (%s: %s); storing them one by one",
                                   self.name, len(batch), type(exc).__name__, exc)
                    parsed = _Parsed(batch, broken=True)
                self._handoff.put(parsed)
        finally:
            self._handoff.put(_END)

    def _write_loop(self) -> None:
        """The writer thread: parsed batches -> one transaction -> acknowledgements."""
        carry = None  # taken from the handoff but not fitting in the last transaction
        while True:
            item = carry if carry is not None else self._handoff.get()
            carry = None
            if item is _END:
                self._handoff.task_done()
                return
            group = [item]
            if not item.broken:
                count, size = len(item.batch), item.size
                while count < self.batch_max and size < BATCH_BYTES:
                    try:
                        nxt = self._handoff.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _END or nxt.broken or count + len(nxt.batch) > self.batch_max:
                        carry = nxt
                        break
                    group.append(nxt)
                    count, size = count + len(nxt.batch), size + nxt.size
            try:
                parsed = group[0] if len(group) == 1 else _Parsed.join(group)
                if parsed.broken:
                    self._one_by_one(parsed.batch)
                    continue
                try:
                    self._commit_with_retry(parsed)
                except Exception as exc:  # a bug must not end ingestion
                    self.log.error("MQTT source %s: a batch of %d messages failed (%s: %s); storing them one by one",
                                   self.name, len(parsed.batch), type(exc).__name__, exc)
                    self._one_by_one(parsed.batch)
            finally:
                for _ in group:
                    self._handoff.task_done()

    def _one_by_one(self, batch: list[Inbound]) -> None:
        """Find the message that breaks a batch. The others are stored as usual; the
        culprit is logged with its topic and acknowledged: left unacknowledged it
        would hold a slot of the broker's in-flight window until the next reconnect
        and then fail again, forever."""
        for message in batch:
            try:
                self._commit_with_retry(self._parse([message]))
            except Exception as exc:
                self.stats.payload_errors += 1
                self.log.error("MQTT source %s: message on %s dropped, it cannot be stored: %s: %s",
                               self.name, message.topic, type(exc).__name__, exc)
                self.ack(message)

    def _take(self) -> list[Inbound]:
        """Block for the first message, then gather the ones received within
        batch_ms of it (from its receipt, so a backlog goes at once)."""
        q = self.queue
        try:
            first = q.get(timeout=0.2)
        except queue.Empty:
            if self._handoff.unfinished_tasks == 0:
                self.idle.set()
            return []
        self.idle.clear()
        deadline = first.received_mono + self.batch_s
        # Wait in short sleeps instead of waking up for every message: the paho
        # thread's put then has no waiter to notify. A full window ends at once.
        while q.qsize() < self.batch_max - 1 and not self._stop.is_set():
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            time.sleep(min(wait, WINDOW_SLICE_S))
        batch = [first]
        size = len(first.payload)
        while len(batch) < self.batch_max and size < BATCH_BYTES:
            try:
                message = q.get_nowait()
            except queue.Empty:
                break
            batch.append(message)
            size += len(message.payload)
        return batch

    def _commit_with_retry(self, parsed: _Parsed) -> None:
        pause = 0.5
        while True:
            try:
                self._store(parsed)
                return
            except FithubError as exc:  # StorageError mostly: the database is away
                self.stats.db_failures += 1
                self.bad.warning("database", "MQTT source %s: batch of %d not stored, retrying: %s",
                                 self.name, len(parsed.batch), exc)
            if self._stop.wait(pause):
                self.log.info("MQTT source %s: stopping with %d uncommitted messages; the broker redelivers them",
                              self.name, len(parsed.batch))
                return
            pause = min(RETRY_MAX_S, pause * 2)

    # -- one batch -------------------------------------------------------------------

    def process(self, batch: list[Inbound]) -> None:
        """Parse, store in one transaction, import activities, then acknowledge
        (both stages in the caller's thread)."""
        self._store(self._parse(batch))

    def _parse(self, batch: list[Inbound]) -> _Parsed:
        """Stages 1 and 2: each message read by its topic's profile (bad payloads
        are counted and dropped), and whose each reading is."""
        parsed = _Parsed(batch)
        samples, assigned, unassigned, activities = parsed.samples, parsed.assigned, parsed.unassigned, parsed.activities
        for message in batch:
            parsed.size += len(message.payload)
            readings = self._readings(message)
            if not readings:
                continue
            pairs = self.decide(readings)
            if all(type(r) is SampleReading for r in readings):  # the usual message: samples only
                samples += pairs
                continue
            for reading, person in pairs:
                if isinstance(reading, SampleReading):
                    samples.append((reading, person))
                elif isinstance(reading, MeasurementReading):
                    (assigned.append((reading, person)) if person else unassigned.append(reading))
                elif isinstance(reading, ActivityReading):
                    activities.append((reading, person))
        return parsed

    def _store(self, parsed: _Parsed) -> None:
        """Stages 3 to 5: one transaction, activities, acknowledgements."""
        batch = parsed.batch
        # 3. One transaction for every row the batch produced (keys absorb repeats).
        now = datetime.now(timezone.utc)
        written = self.live.write(parsed.samples, parsed.assigned, parsed.unassigned, received_at=now)
        # 4. Whole files through the import pipeline (idempotent by SHA-256).
        for reading, person in parsed.activities:
            self.import_activity(reading, person)
        # 5. Only now is it safe to let the broker forget the messages.
        committed = time.monotonic()
        committed_wall = time.time()
        acked = sum(1 for message in batch if self.ack(message))
        self._count(batch, written, len(parsed.samples), len(parsed.activities), acked, committed)
        if self.on_commit is not None:
            self.on_commit(batch, committed_wall)

    def _route(self, topic: str):
        """profile_for, remembered per topic (a device publishes to the same topic
        all day); bounded, since topics come from the network."""
        route = self._routes.get(topic, _UNSEEN)
        if route is _UNSEEN:
            route = profile_for(topic, self.subscriptions)
            if len(self._routes) >= ROUTES_CACHED:
                self._routes.clear()
            self._routes[topic] = route
        return route

    def _readings(self, message: Inbound) -> list:
        profile = self._route(message.topic)
        if profile is None:
            self.stats.unmatched += 1
            self.bad.warning(f"unmatched:{message.topic}", "MQTT source %s: topic %s matches no configured filter; dropped",
                             self.name, message.topic)
            return []
        profile, options = profile
        try:
            return list(self.parse(profile, message.topic, message.payload, message.received_at, options,
                                   retained=message.retain))
        except IgnoredPayload as exc:
            self.stats.ignored += 1
            self.log.debug("MQTT source %s: ignored %s", self.name, exc)
        except PayloadError as exc:
            self.stats.payload_errors += 1
            self.stats.errors_by_profile[profile] += 1
            self.bad.warning(f"payload:{message.topic}", "MQTT source %s: malformed %s payload dropped: %s",
                             self.name, profile, exc)
        except Exception as exc:  # a profile bug is a bad payload too, never a dead loop
            self.stats.payload_errors += 1
            self.stats.errors_by_profile[profile] += 1
            self.bad.warning(f"bug:{message.topic}", "MQTT source %s: profile %s failed on %s: %s: %s",
                             self.name, profile, message.topic, type(exc).__name__, exc)
        return []

    def _count(self, batch, written, samples: int, activities: int, acked: int, committed: float) -> None:
        s = self.stats
        s.batches += 1
        s.received += len(batch)
        s.committed += len(batch)
        s.acked += acked
        s.samples_new += written.samples
        s.samples_repeated += samples - written.samples
        s.measurements_new += written.measurements
        s.unassigned_new += written.unassigned
        s.activities += activities
        if len(s.latencies) < self.keep_latencies:
            s.latencies.extend(committed - m.received_mono for m in batch)

"""The ingest worker: received messages -> readings -> one commit per batch -> acks.

paho's loop thread only queues messages (:meth:`Ingestor.put`); this worker takes
up to ``batch_max`` of them, or what arrived within ``batch_ms`` of the first,
parses each with its topic's profile, stores the whole batch in one transaction
and only then acknowledges its messages. The stage list is :meth:`Ingestor.process`.

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
        self._thread: threading.Thread | None = None
        self.idle = threading.Event()  # set whenever the queue was found empty
        # Called after each committed batch with (messages, wall-clock commit time):
        # the benchmark measures publish-to-commit latency with it.
        self.on_commit: Callable[[list[Inbound], float], None] | None = None

    # -- thread ------------------------------------------------------------------

    def put(self, message: Inbound) -> None:
        self.queue.put(message)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mqtt-ingest-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Finish the batch in hand (and what is queued, within the time); True when
        everything received was committed and acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            return not self._thread.is_alive() and self.queue.empty()
        return True

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._stop.is_set():
                    return
                continue
            try:
                self._commit_with_retry(batch)
            except Exception as exc:  # a bug must not end ingestion
                self.log.error("MQTT source %s: a batch of %d messages failed (%s: %s); storing them one by one",
                               self.name, len(batch), type(exc).__name__, exc)
                self._one_by_one(batch)

    def _one_by_one(self, batch: list[Inbound]) -> None:
        """Find the message that breaks a batch. The others are stored as usual; the
        culprit is logged with its topic and acknowledged: left unacknowledged it
        would hold a slot of the broker's in-flight window until the next reconnect
        and then fail again, forever."""
        for message in batch:
            try:
                self._commit_with_retry([message])
            except Exception as exc:
                self.stats.payload_errors += 1
                self.log.error("MQTT source %s: message on %s dropped, it cannot be stored: %s: %s",
                               self.name, message.topic, type(exc).__name__, exc)
                self.ack(message)

    def _take(self) -> list[Inbound]:
        """Block for the first message, then gather more for up to batch_ms."""
        try:
            first = self.queue.get(timeout=0.2)
        except queue.Empty:
            self.idle.set()
            return []
        self.idle.clear()
        batch = [first]
        size = len(first.payload)
        deadline = time.monotonic() + self.batch_s
        while len(batch) < self.batch_max and size < BATCH_BYTES:
            try:
                message = self.queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic()
                if wait <= 0 or self._stop.is_set():
                    break
                try:
                    message = self.queue.get(timeout=wait)
                except queue.Empty:
                    break
            batch.append(message)
            size += len(message.payload)
        return batch

    def _commit_with_retry(self, batch: list[Inbound]) -> None:
        pause = 0.5
        while True:
            try:
                self.process(batch)
                return
            except FithubError as exc:  # StorageError mostly: the database is away
                self.stats.db_failures += 1
                self.bad.warning("database", "MQTT source %s: batch of %d not stored, retrying: %s", self.name, len(batch), exc)
            if self._stop.wait(pause):
                self.log.info("MQTT source %s: stopping with %d uncommitted messages; the broker redelivers them",
                              self.name, len(batch))
                return
            pause = min(RETRY_MAX_S, pause * 2)

    # -- one batch -------------------------------------------------------------------

    def process(self, batch: list[Inbound]) -> None:
        """Parse, store in one transaction, import activities, then acknowledge."""
        # 1. Parse each message with its topic's profile; bad payloads are dropped.
        samples, assigned, unassigned, activities = [], [], [], []
        for message in batch:
            # 2. Whose each reading is (device map, payload, scale attribution).
            for reading, person in self.decide(self._readings(message)):
                if isinstance(reading, SampleReading):
                    samples.append((reading, person))
                elif isinstance(reading, MeasurementReading):
                    (assigned.append((reading, person)) if person else unassigned.append(reading))
                elif isinstance(reading, ActivityReading):
                    activities.append((reading, person))
        # 3. One transaction for every row the batch produced (keys absorb repeats).
        now = datetime.now(timezone.utc)
        written = self.live.write(samples, assigned, unassigned, received_at=now)
        # 4. Whole files through the import pipeline (idempotent by SHA-256).
        for reading, person in activities:
            self.import_activity(reading, person)
        # 5. Only now is it safe to let the broker forget the messages.
        committed = time.monotonic()
        committed_wall = time.time()
        acked = sum(1 for message in batch if self.ack(message))
        self._count(batch, written, len(samples), len(activities), acked, committed)
        if self.on_commit is not None:
            self.on_commit(batch, committed_wall)

    def _readings(self, message: Inbound) -> list:
        profile = profile_for(message.topic, self.subscriptions)
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

"""The durable outbox on SQLite and PostgreSQL: order per person, retries, dead
letters, the circuit breaker, restarts and two hub processes on one database."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub.events import ACTIVITY_STORED, SOURCE_FAILED, Event
from hub.outbox import Outbox, OutboxSettings
from hub.plugins import DeliveryError, PermanentDeliveryError
from hub.storage import Store
from hub.storage.daemon_rows import append_events

T0 = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    opened = Store(db_url, tmp_path / "home")
    yield opened
    opened.close()


class Recorder:
    """A consumer that records what it received and fails on demand.

    ``fail[key] = n`` fails the first n deliveries of that key; ``down`` fails all;
    ``refuse`` holds keys rejected permanently.
    """

    def __init__(self, name: str = "rec") -> None:
        self.name = name
        self.received: list[str] = []
        self.calls: list[str] = []
        self.fail: dict[str, int] = {}
        self.refuse: set[str] = set()
        self.down = False
        self.lock = threading.Lock()

    def deliver(self, event: Event) -> None:
        with self.lock:
            self.calls.append(event.key)
            if event.key in self.refuse:
                raise PermanentDeliveryError(f"{event.key} refused")
            if self.down:
                raise DeliveryError("receiver down")
            if self.fail.get(event.key, 0) > 0:
                self.fail[event.key] -= 1
                raise DeliveryError(f"{event.key} not now")
            self.received.append(event.key)


def ev(key: str, person: str | None = "alice") -> Event:
    if person is None:
        return Event(kind=SOURCE_FAILED, key=key, person=None, payload={"source": "garmin"})
    return Event(kind=ACTIVITY_STORED, key=key, person=person, payload={"activity_id": 1, "sport": "running"})


def add(store: Store, *events: Event) -> None:
    with store.engine.begin() as conn:
        append_events(conn, events)


def settings(**kw) -> OutboxSettings:
    base = dict(retry_base_s=10, retry_max_s=100, max_attempts=5, breaker_failures=100, breaker_cooldown_s=60, batch=100)
    base.update(kw)
    return OutboxSettings(**base)


def outbox(store: Store, *consumers: Recorder, **kw) -> Outbox:
    box = Outbox(store, {c.name: c for c in consumers}, settings(**kw), rng=random.Random(1))
    box.register(T0 - timedelta(seconds=1))
    return box


def of(received: list[str], prefix: str) -> list[str]:
    return [k for k in received if k.startswith(prefix)]


def test_delivers_every_event_in_order_per_person_and_retries_block_only_that_person(store: Store) -> None:
    rec = Recorder()
    box = outbox(store, rec)
    add(store, ev("a1"), ev("b1", "bob"), ev("a2"), ev("b2", "bob"), ev("a3"), ev("s1", None))
    rec.fail["a1"] = 2

    assert box.run_once(T0) == 3  # bob's two and the source event; alice waits behind a1
    assert rec.received == ["b1", "s1", "b2"]
    assert rec.calls.count("a1") == 1 and "a2" not in rec.calls
    assert box.depth() == {"rec": 3}

    assert box.run_once(T0 + timedelta(seconds=5)) == 0  # a1's retry is not due yet (10 s +-20 %)
    assert box.run_once(T0 + timedelta(seconds=13)) == 0  # due: fails a second time
    assert rec.calls.count("a1") == 2
    assert box.run_once(T0 + timedelta(seconds=13 + 25)) == 3  # 20 s +-20 % later it goes through
    assert of(rec.received, "a") == ["a1", "a2", "a3"]
    assert box.depth() == {"rec": 0}
    assert box.run_once(T0 + timedelta(hours=1)) == 0
    assert sorted(rec.received) == ["a1", "a2", "a3", "b1", "b2", "s1"]  # each exactly once


def test_retry_delay_doubles_with_jitter_up_to_the_maximum(store: Store) -> None:
    rec = Recorder()
    box = outbox(store, rec, retry_base_s=10, retry_max_s=50, max_attempts=10)
    add(store, ev("a1"))
    rec.down = True
    now = T0
    for attempt in range(6):
        box.run_once(now)
        (row,) = box.pending()
        assert row.attempts == attempt + 1
        assert row.last_error == "DeliveryError: receiver down"
        nominal = min(50, 10 * 2**attempt)
        delay = (row.next_at - now).total_seconds()
        assert 0.8 * nominal - 0.01 <= delay <= 1.2 * nominal + 0.01, (attempt, delay)
        assert box.run_once(row.next_at - timedelta(seconds=1)) == 0 and len(rec.calls) == attempt + 1
        now = row.next_at
    rec.down = False
    assert box.run_once(now) == 1 and rec.received == ["a1"]


def test_exhausted_retries_park_a_dead_letter_and_later_events_proceed(store: Store) -> None:
    rec = Recorder()
    box = outbox(store, rec, max_attempts=2, retry_base_s=1, retry_max_s=1)
    add(store, ev("a1"), ev("a2"), ev("x1", "bob"), ev("x2", "bob"))
    rec.fail["a1"] = 5
    rec.refuse.add("x1")

    box.run_once(T0)
    box.run_once(T0 + timedelta(seconds=5))
    assert rec.received == ["x2", "a2"]
    dead = {d.key: d for d in box.dead()}
    assert set(dead) == {"a1", "x1"}
    assert dead["a1"].attempts == 2 and dead["a1"].last_error == "DeliveryError: a1 not now"
    assert dead["x1"].attempts == 1 and "PermanentDeliveryError: x1 refused" == dead["x1"].last_error
    assert box.depth() == {"rec": 0}

    assert box.retry([dead["a1"].event_id], now=T0 + timedelta(seconds=6)) == 1
    assert [d.key for d in box.dead()] == ["x1"]
    (revived,) = box.pending()
    assert revived.key == "a1" and revived.attempts == 0
    rec.fail["a1"] = 0
    assert box.run_once(T0 + timedelta(seconds=6)) == 1
    rec.refuse.clear()
    assert box.retry(consumer="other") == 0
    assert box.retry() == 1  # all remaining dead letters
    assert box.run_once() == 1
    assert sorted(rec.received) == ["a1", "a2", "x1", "x2"] and box.dead() == []


def test_circuit_breaker_opens_stops_calling_then_a_trial_closes_it(store: Store) -> None:
    rec = Recorder()
    box = outbox(store, rec, breaker_failures=3, breaker_cooldown_s=60, retry_base_s=1, retry_max_s=1, max_attempts=3)
    add(store, *(ev(f"p{i}", f"person{i}") for i in range(6)))
    rec.down = True

    box.run_once(T0)
    assert len(rec.calls) == 3  # the breaker opened after three failures in a row
    assert box.breaker_states()["rec"]["state"] == "open"
    for seconds in (5, 30, 59):
        box.run_once(T0 + timedelta(seconds=seconds))
    assert len(rec.calls) == 3  # not called while open, although retries were due
    pending = {p.key: p.attempts for p in box.pending()}
    assert sorted(pending.values()) == [0, 0, 0, 1, 1, 1]  # untried events kept their attempts
    assert box.dead() == []

    box.run_once(T0 + timedelta(seconds=61))
    assert len(rec.calls) == 4  # one trial, which failed: open again
    assert box.breaker_states()["rec"]["state"] == "open"

    rec.down = False
    assert box.run_once(T0 + timedelta(seconds=122)) == 6
    assert box.breaker_states()["rec"] == {"state": "closed", "failures": 0, "open_until": None}
    assert sorted(rec.received) == [f"p{i}" for i in range(6)]


def test_a_permanent_refusal_does_not_open_the_breaker(store: Store) -> None:
    rec = Recorder()
    box = outbox(store, rec, breaker_failures=2)
    add(store, *(ev(f"r{i}", f"p{i}") for i in range(4)), ev("ok", "z"))
    rec.refuse.update(f"r{i}" for i in range(4))
    assert box.run_once(T0) == 1
    assert box.breaker_states()["rec"]["state"] == "closed" and len(box.dead()) == 4


def test_a_plugin_that_raises_anything_is_retried_and_logged_not_fatal(store: Store, caplog) -> None:
    class Buggy:
        name = "buggy"
        calls = 0

        def deliver(self, event: Event) -> None:
            Buggy.calls += 1
            if Buggy.calls == 1:
                raise KeyError("oops")

    box = Outbox(store, {"buggy": Buggy()}, settings(retry_base_s=1, retry_max_s=1))
    box.register(T0 - timedelta(seconds=1))
    add(store, ev("a1"))
    assert box.run_once(T0) == 0
    assert "consumer buggy raised on event" in caplog.text
    (row,) = box.pending()
    assert row.last_error == "KeyError: 'oops'"
    assert box.run_once(T0 + timedelta(seconds=2)) == 1


def test_a_new_consumer_does_not_replay_history(store: Store) -> None:
    old = Recorder("old")
    outbox(store, old)
    add(store, ev("h1"), ev("h2"))
    new = Recorder("new")
    box = outbox(store, old, new)  # "new" is configured after h1 and h2 were stored
    add(store, ev("n1"))
    box.run_once(T0)
    assert old.received == ["h1", "h2", "n1"]
    assert new.received == ["n1"]
    # Registering again (every start of the hub) moves nothing.
    box.register()
    add(store, ev("n2"))
    box.run_once(T0)
    assert new.received == ["n1", "n2"]


def test_restart_continues_where_the_last_process_stopped(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    rec = Recorder()
    with Store(db_url, home) as first:
        box = outbox(first, rec)
        add(first, ev("a1"), ev("a2"), ev("b1", "bob"), ev("c1", "carol"))
        rec.refuse.add("a1")  # dead at once
        rec.fail["b1"] = 1  # waits for its retry when the process stops
        box.run_once(T0)
    assert sorted(rec.received) == ["a2", "c1"]

    rec2 = Recorder()  # the same consumer name in a new process
    with Store(db_url, home) as second:
        box2 = outbox(second, rec2)
        add(second, ev("b2", "bob"))
        assert box2.depth() == {"rec": 2}  # b1 (retry pending) and b2 (not materialised yet)
        box2.run_once(T0 + timedelta(minutes=5))
        assert [d.key for d in box2.dead()] == ["a1"]
    assert rec2.received == ["b1", "b2"]  # nothing delivered twice, nothing lost, in order


def _drain(store: Store, rec: Recorder, stop: threading.Event, errors: list) -> None:
    try:
        box = Outbox(store, {"rec": rec}, settings())
        box.register()
        while not stop.is_set():
            if box.run_once() == 0:
                stop.wait(0.01)
        box.run_once()
    except Exception as exc:  # surfaced by the test
        errors.append(exc)


def test_two_outboxes_on_one_database_lose_nothing_and_keep_order(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    rec = Recorder()  # one receiver behind both hub processes
    with Store(db_url, home) as store:
        Outbox(store, {"rec": rec}).register()
        stop, errors = threading.Event(), []
        # Each worker has its own Store (engine, connections), like a second process.
        # They are opened here, one after the other: alembic's migration context is
        # process-global and not safe to run in two threads at once.
        stores = [Store(db_url, home) for _ in range(2)]
        workers = [threading.Thread(target=_drain, args=(s, rec, stop, errors)) for s in stores]
        for w in workers:
            w.start()
        persons = ["alice", "bob", "carol"]
        keys = []
        for i in range(60):
            key = f"{persons[i % 3]}-{i:03d}"
            keys.append(key)
            add(store, ev(key, persons[i % 3]))
        deadline = datetime.now(timezone.utc) + timedelta(seconds=60)
        while len(set(rec.received)) < len(keys) and datetime.now(timezone.utc) < deadline:
            threading.Event().wait(0.05)
        stop.set()
        for w in workers:
            w.join(30)
        for s in stores:
            s.close()
    assert errors == []
    assert sorted(set(rec.received)) == sorted(keys)
    # A claim is exclusive: without a crash nothing is delivered twice.
    assert len(rec.received) == len(keys)
    for person in persons:
        assert of(rec.received, person) == sorted(of(keys, person))


def test_cli_lists_and_retries_dead_letters(db_url: str, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cli import app

    home = tmp_path / "home"
    rec, other = Recorder("hook"), Recorder("phone")
    with Store(db_url, home) as store:
        box = outbox(store, rec, other)
        add(store, ev("a1"), ev("a2"), ev("b1", "bob"))
        rec.refuse.update({"a1", "b1"})
        other.down = True
        box.run_once(T0)
        ids = {d.key: d.event_id for d in box.dead()}
    cli = ["--db", db_url, "--home", str(home), "outbox"]
    runner = CliRunner()

    result = runner.invoke(app, [*cli, "list", "--dead", "--json"])
    assert result.exit_code == 0, result.output
    dead = json.loads(result.stdout)
    assert [(d["consumer"], d["key"], d["state"]) for d in dead] == [("hook", "a1", "dead"), ("hook", "b1", "dead")]
    assert dead[0]["last_error"] == "PermanentDeliveryError: a1 refused"

    result = runner.invoke(app, [*cli, "list"])
    assert result.exit_code == 0, result.output
    assert "waiting: hook 0, phone 3" in result.stdout and "DeliveryError: receiver down" in result.stdout

    result = runner.invoke(app, [*cli, "retry"])
    assert result.exit_code == 1 and "give event ids or --all" in result.output
    result = runner.invoke(app, [*cli, "retry", "999999"])
    assert result.exit_code == 1 and "no dead letter with event id 999999" in result.output
    result = runner.invoke(app, [*cli, "retry", str(ids["a1"]), "--consumer", "hook"])
    assert result.exit_code == 0 and "1 dead letter queued for delivery again" in result.stdout
    result = runner.invoke(app, [*cli, "retry", "--all"])
    assert result.exit_code == 0 and "1 dead letter queued" in result.stdout
    result = runner.invoke(app, [*cli, "list", "--dead"])
    assert "no dead letters" in result.stdout
    with Store(db_url, home) as store:
        rec.refuse.clear()
        box = outbox(store, rec)
        box.run_once()
    assert sorted(rec.received) == ["a1", "a2", "b1"]


def test_materialising_skips_settled_history_but_catches_late_commits(db_url: str, tmp_path: Path) -> None:
    """After ``commit_grace_s`` the outbox stops rescanning old events; an event
    whose transaction took its id early but committed late (possible on
    PostgreSQL, whose ids come from a sequence) within the grace is still delivered."""
    import time

    rec = Recorder()
    with Store(db_url, tmp_path / "home") as store:
        box = Outbox(store, {"rec": rec}, settings(commit_grace_s=1.0), rng=random.Random(1))
        box.register()
        add(store, ev("a1"), ev("a2"))
        assert box.run_once() == 2
        time.sleep(1.1)
        box.run_once()
        box.run_once()
        assert box._floors["rec"] >= 2  # a1 and a2 are no longer scanned

        late = store.engine.connect()
        tx = late.begin()
        append_events(late, [ev("late", "bob")])  # takes its id now, commits later
        if store.dialect == "postgresql":
            # Higher ids, committed first. (Not bob's: the import pipeline's per-person
            # lock keeps one person's events from overtaking each other.)
            add(store, ev("d1", "dave"), ev("c1", "carol"))
        else:
            tx.commit()  # SQLite: a second writer would wait for this one; no overtaking
            add(store, ev("d1", "dave"), ev("c1", "carol"))
        deadline = time.monotonic() + 0.4
        while time.monotonic() < deadline:
            box.run_once()
            time.sleep(0.05)
        if store.dialect == "postgresql":
            assert "late" not in rec.received and "c1" in rec.received
            tx.commit()
        late.close()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and box.depth()["rec"]:
            box.run_once()
            time.sleep(0.05)
    assert sorted(rec.received) == ["a1", "a2", "c1", "d1", "late"]


def test_run_forever_delivers_until_stopped_and_finishes_the_call_in_flight(store: Store) -> None:
    import time

    class Slow(Recorder):
        def deliver(self, event: Event) -> None:
            time.sleep(0.3)
            super().deliver(event)

    rec = Slow()
    box = Outbox(store, {"rec": rec}, settings(interval_s=0.02))
    box.register()
    stopping = threading.Event()
    worker = threading.Thread(target=box.run_forever, args=(stopping,))
    worker.start()
    add(store, *(ev(f"a{i}") for i in range(20)))
    deadline = time.monotonic() + 10
    while len(rec.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopping.set()  # while a delivery is in flight
    worker.join(5)
    assert not worker.is_alive()
    assert 2 <= len(rec.received) < 20 and rec.received == rec.calls  # the call in flight completed
    assert box.depth() == {"rec": 20 - len(rec.received)}
    (first,) = [p for p in box.pending() if p.key == f"a{len(rec.received)}"]
    assert first.next_at <= datetime.now(timezone.utc)  # not left claimed: the next start takes it at once

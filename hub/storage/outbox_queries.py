"""The outbox's SQL: consumers, materialised deliveries, claims and outcomes.

Every statement is race-safe between hub processes sharing one database:
inserts skip rows another process already wrote (ON CONFLICT DO NOTHING), and a
state change only applies to a row still in the state the caller saw
(``state = 'pending'``), so two processes never both move a delivery.
``hub.outbox`` decides *what* to do; this module only says it in SQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from hub.storage.engine import upsert_insert

from hub.events import Event
from hub.storage.schema import UTCDateTime, outbox_consumers, outbox_deliveries, outbox_events

D = outbox_deliveries
E = outbox_events
C = outbox_consumers

PENDING, DONE, DEAD = "pending", "done", "dead"


@dataclass(frozen=True)
class Head:
    """The oldest pending delivery of one person for one consumer, with its event."""

    event_id: int
    attempts: int
    kind: str
    key: str
    person: str | None
    payload: str  # JSON text as stored
    created_at: datetime

    def event(self) -> Event:
        """The event; ValueError when the row cannot be one (unknown kind, bad JSON)."""
        return Event(
            kind=self.kind,
            key=self.key,
            person=self.person,
            payload=json.loads(self.payload),
            created_at=self.created_at,
            id=self.event_id,
        )


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery as the CLI and metrics show it."""

    consumer: str
    event_id: int
    kind: str
    key: str
    person: str | None
    state: str
    attempts: int
    next_at: datetime
    last_error: str | None
    updated_at: datetime

    def as_json(self) -> dict:
        return {
            "consumer": self.consumer,
            "event_id": self.event_id,
            "kind": self.kind,
            "key": self.key,
            "person": self.person,
            "state": self.state,
            "attempts": self.attempts,
            "next_at": self.next_at.isoformat(),
            "last_error": self.last_error,
            "updated_at": self.updated_at.isoformat(),
        }


def register_consumer(conn: sa.Connection, name: str, now: datetime) -> None:
    """Create the consumer's row if missing, starting after the newest event."""
    newest = newest_event_id(conn)
    stmt = upsert_insert(conn, C).values(name=name, after_event_id=newest, created_at=now)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))


def newest_event_id(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(E.c.id), 0))).scalar_one()


def _unmaterialised(consumer: str, floor: int = 0):
    """Events the consumer should get that have no delivery row yet, among those
    with id > ``floor`` (below which the caller knows every event has its row).

    An anti-join rather than "id > highest materialised id": on PostgreSQL ids come
    from a sequence and a transaction holding a lower id may commit after one with
    a higher id; a watermark would skip that event for ever.
    """
    after = sa.select(C.c.after_event_id).where(C.c.name == consumer).scalar_subquery()
    has_row = sa.exists().where(D.c.consumer == consumer, D.c.event_id == E.c.id)
    return sa.and_(E.c.id > after, E.c.id > floor, ~has_row)


def materialise(conn: sa.Connection, consumer: str, now: datetime, floor: int = 0) -> int:
    """Add pending deliveries for every new event above ``floor``; returns how many were added."""
    select = (
        sa.select(
            sa.literal(consumer, sa.Text).label("consumer"),
            E.c.id,
            E.c.person,
            sa.literal(PENDING, sa.String).label("state"),
            sa.literal(0, sa.Integer).label("attempts"),
            sa.literal(now, UTCDateTime).label("next_at"),
            sa.literal(now, UTCDateTime).label("updated_at"),
        )
        .where(_unmaterialised(consumer, floor))
        .order_by(E.c.id)  # one insertion order for all processes: no lock-order deadlock
    )
    columns = ["consumer", "event_id", "person", "state", "attempts", "next_at", "updated_at"]
    stmt = (
        upsert_insert(conn, D)
        .from_select(columns, select)
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        .returning(D.c.event_id)  # psycopg reports no rowcount for INSERT ... SELECT
    )
    return len(conn.execute(stmt).all())


def heads(conn: sa.Connection, consumer: str, now: datetime, limit: int) -> list[Head]:
    """Per person, the oldest pending delivery, if it is due. A person whose oldest
    pending delivery waits for its retry (or is claimed by another process) has no
    head: its later events wait behind it."""
    oldest = (
        sa.select(D.c.person, sa.func.min(D.c.event_id).label("head"))
        .where(D.c.consumer == consumer, D.c.state == PENDING)
        .group_by(D.c.person)
        .subquery()
    )
    query = (
        sa.select(D.c.event_id, D.c.attempts, E.c.kind, E.c.key, E.c.person, E.c.payload, E.c.created_at)
        .join(oldest, oldest.c.head == D.c.event_id)
        .join(E, E.c.id == D.c.event_id)
        .where(D.c.consumer == consumer, D.c.state == PENDING, D.c.next_at <= now)
        .order_by(D.c.event_id)
        .limit(limit)
    )
    return [Head(**row) for row in conn.execute(query).mappings()]


def _pending(consumer: str, event_id: int):
    return sa.and_(D.c.consumer == consumer, D.c.event_id == event_id, D.c.state == PENDING)


def claim(conn: sa.Connection, consumer: str, event_ids: list[int], now: datetime, lease_s: float) -> set[int]:
    """Take due deliveries for ``lease_s`` seconds; returns the ids taken (those
    another process took first are left out). A process killed while delivering
    releases them when the lease ends: the event is then delivered again (at
    least once)."""
    if not event_ids:
        return set()
    stmt = (
        sa.update(D)
        .where(D.c.consumer == consumer, D.c.event_id.in_(event_ids), D.c.state == PENDING, D.c.next_at <= now)
        .values(next_at=now + timedelta(seconds=lease_s), updated_at=now)
        .returning(D.c.event_id)
    )
    return set(conn.execute(stmt).scalars())


def mark_done(conn: sa.Connection, consumer: str, event_id: int, now: datetime) -> None:
    conn.execute(sa.update(D).where(_pending(consumer, event_id)).values(state=DONE, updated_at=now))


def mark_failed(
    conn: sa.Connection, consumer: str, event_id: int, *, attempts: int, dead: bool, next_at: datetime, error: str, now: datetime
) -> None:
    values = {"attempts": attempts, "last_error": error[:2000], "updated_at": now, "next_at": next_at}
    if dead:
        values["state"] = DEAD
    conn.execute(sa.update(D).where(_pending(consumer, event_id)).values(**values))


def release(conn: sa.Connection, consumer: str, event_ids: list[int], now: datetime) -> None:
    """Give claimed deliveries back untouched (the breaker opened, the hub stops)."""
    if event_ids:
        conn.execute(
            sa.update(D)
            .where(D.c.consumer == consumer, D.c.event_id.in_(event_ids), D.c.state == PENDING)
            .values(next_at=now, updated_at=now)
        )


# -- reports and repairs -------------------------------------------------------


def consumer_names(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(C.c.name).order_by(C.c.name)).scalars())


def depth(conn: sa.Connection, floors: dict[str, int] | None = None) -> dict[str, int]:
    """Undelivered events per consumer: pending rows plus events not materialised yet."""
    floors = floors or {}
    result = {name: 0 for name in consumer_names(conn)}
    pending = sa.select(D.c.consumer, sa.func.count()).where(D.c.state == PENDING).group_by(D.c.consumer)
    for name, count in conn.execute(pending):
        result[name] = result.get(name, 0) + count
    for name in list(result):
        waiting = sa.select(sa.func.count()).select_from(E).where(_unmaterialised(name, floors.get(name, 0)))
        result[name] += conn.execute(waiting).scalar_one()
    return result


def deliveries(conn: sa.Connection, *, state: str | None = None, consumer: str | None = None, limit: int = 1000) -> list[DeliveryRow]:
    query = (
        sa.select(
            D.c.consumer, D.c.event_id, E.c.kind, E.c.key, E.c.person, D.c.state, D.c.attempts,
            D.c.next_at, D.c.last_error, D.c.updated_at,
        )
        .join(E, E.c.id == D.c.event_id)
        .order_by(D.c.consumer, D.c.event_id)
        .limit(limit)
    )  # fmt: skip
    if state is not None:
        query = query.where(D.c.state == state)
    if consumer is not None:
        query = query.where(D.c.consumer == consumer)
    return [DeliveryRow(**row) for row in conn.execute(query).mappings()]


def revive(conn: sa.Connection, *, ids: list[int] | None, consumer: str | None, now: datetime) -> int:
    """Dead -> pending with attempts reset; ``ids`` None means every dead delivery."""
    stmt = sa.update(D).where(D.c.state == DEAD).values(state=PENDING, attempts=0, next_at=now, updated_at=now)
    if ids is not None:
        if not ids:
            return 0
        stmt = stmt.where(D.c.event_id.in_(ids))
    if consumer is not None:
        stmt = stmt.where(D.c.consumer == consumer)
    return conn.execute(stmt).rowcount or 0

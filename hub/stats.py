"""Per-person figures computed from the store: the last activity, totals over a
range of the person's local days (this ISO week), the current streak, the latest
weight and resting heart rate.

Read-only SQL on :mod:`hub.storage.schema` (only the summary columns, never
samples), so it stays cheap with years of history, on SQLite and PostgreSQL (the
streak's distinct local days are computed by the database). The
day arithmetic is in small pure functions (:func:`local_day`, :func:`iso_week`,
:func:`streak_length`) that goals and other streaks can reuse.

Local days: an activity belongs to the calendar day of its start in the time zone
it was recorded in (``utc_offset_s``). Many files carry no offset (GPX, most TCX);
those use the person's *home offset*, the offset of their latest activity that has
one, else UTC. "Today" is judged with the same home offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from hub.model import require_utc
from hub.storage.schema import measurements, persons, workouts

# UTC offsets in use range from -12:00 to +14:00: a local day's activities start
# within this margin of that day's UTC midnight.
_OFFSET_MARGIN = timedelta(hours=14)


# -- pure day arithmetic ---------------------------------------------------------------------------


def local_day(start_utc: datetime, offset_s: int | None, home_offset_s: int) -> date:
    """The local calendar day an activity starting at ``start_utc`` belongs to."""
    offset = home_offset_s if offset_s is None else offset_s
    return (require_utc(start_utc, "activity start") + timedelta(seconds=offset)).date()


def iso_week(day: date) -> tuple[date, date]:
    """(Monday, Sunday) of the ISO week containing ``day``."""
    monday = day - timedelta(days=day.isoweekday() - 1)
    return monday, monday + timedelta(days=6)


def streak_length(days: set[date], today: date) -> int:
    """Consecutive active days ending today, or ending yesterday when today has no
    activity yet (a streak is not broken before the day is over)."""
    day = today if today in days else today - timedelta(days=1)
    count = 0
    while day in days:
        count += 1
        day -= timedelta(days=1)
    return count


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LastActivity:
    id: int
    sport: str
    sub_sport: str | None
    start: datetime  # UTC
    utc_offset_s: int | None
    distance_m: float | None
    elapsed_s: float | None
    moving_s: float | None
    name: str | None


@dataclass(frozen=True)
class Totals:
    """Activities starting on local days ``first_day``..``last_day`` (inclusive).
    ``moving_s`` counts an activity's elapsed time when its moving time is unknown."""

    first_day: date
    last_day: date
    activities: int = 0
    distance_m: float = 0.0
    moving_s: float = 0.0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Latest:
    value: float
    time: datetime  # UTC


@dataclass(frozen=True)
class PersonState:
    person: str
    as_of: datetime  # UTC: when this was computed
    today: date  # the person's local day at ``as_of``
    last_activity: LastActivity | None
    week: Totals
    streak_days: int
    weight: Latest | None  # kg
    resting_hr: Latest | None  # bpm

    def as_json(self) -> dict[str, Any]:
        """A flat JSON object (flat so that Home Assistant value templates never meet
        a missing parent: an unknown value is ``null``)."""
        last = self.last_activity
        return {
            "person": self.person,
            "as_of": _iso(self.as_of),
            "today": self.today.isoformat(),
            "last_activity_id": last.id if last else None,
            "last_activity_sport": last.sport if last else None,
            "last_activity_sub_sport": last.sub_sport if last else None,
            "last_activity_start": _iso(last.start) if last else None,
            "last_activity_name": last.name if last else None,
            "last_activity_distance_m": _round(last.distance_m) if last else None,
            "last_activity_elapsed_s": _round(last.elapsed_s) if last else None,
            "last_activity_moving_s": _round(last.moving_s) if last else None,
            "week_start": self.week.first_day.isoformat(),
            "week_activities": self.week.activities,
            "week_distance_m": _round(self.week.distance_m),
            "week_moving_s": _round(self.week.moving_s),
            "week_elapsed_s": _round(self.week.elapsed_s),
            "streak_days": self.streak_days,
            "weight_kg": _round(self.weight.value, 2) if self.weight else None,
            "weight_time": _iso(self.weight.time) if self.weight else None,
            "resting_hr_bpm": _round(self.resting_hr.value) if self.resting_hr else None,
            "resting_hr_time": _iso(self.resting_hr.time) if self.resting_hr else None,
        }


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


# -- queries ---------------------------------------------------------------------------------------
# Each public query takes a Store (or a bare SQLAlchemy engine) and a person's name.


def _engine(store) -> sa.Engine:
    return store if isinstance(store, sa.Engine) else store.engine



def _person_id(conn: sa.Connection, person: str) -> int | None:
    return conn.execute(sa.select(persons.c.id).where(persons.c.name == person)).scalar_one_or_none()


def home_offset_s(store, person: str) -> int:
    """The UTC offset of the person's latest activity that recorded one; 0 if none did."""
    with _engine(store).connect() as conn:
        pid = _person_id(conn, person)
        if pid is None:
            return 0
        return _home_offset(conn, pid)


def _home_offset(conn: sa.Connection, pid: int) -> int:
    found = conn.execute(
        sa.select(workouts.c.utc_offset_s)
        .where(workouts.c.person_id == pid, workouts.c.utc_offset_s.is_not(None))
        .order_by(workouts.c.start_utc.desc(), workouts.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return int(found) if found is not None else 0


def last_activity(store, person: str) -> LastActivity | None:
    """The person's activity with the latest start."""
    with _engine(store).connect() as conn:
        pid = _person_id(conn, person)
        return None if pid is None else _last_activity(conn, pid)


def _last_activity(conn: sa.Connection, pid: int) -> LastActivity | None:
    w = workouts.c
    row = conn.execute(
        sa.select(w.id, w.sport, w.sub_sport, w.start_utc, w.utc_offset_s, w.distance_m, w.elapsed_s, w.moving_s, w.name)
        .where(w.person_id == pid)
        .order_by(w.start_utc.desc(), w.id.desc())
        .limit(1)
    ).mappings().one_or_none()
    if row is None:
        return None
    return LastActivity(
        id=row["id"], sport=row["sport"], sub_sport=row["sub_sport"], start=row["start_utc"],
        utc_offset_s=row["utc_offset_s"], distance_m=row["distance_m"], elapsed_s=row["elapsed_s"],
        moving_s=row["moving_s"], name=row["name"],
    )  # fmt: skip


def _day_rows(conn: sa.Connection, pid: int, first_day: date, last_day: date, *columns: sa.Column):
    """Workouts that may start on local days first..last: the UTC window widened by
    the largest possible offset; the caller keeps those whose local day is inside."""
    lo = datetime.combine(first_day, time(), timezone.utc) - _OFFSET_MARGIN
    hi = datetime.combine(last_day + timedelta(days=1), time(), timezone.utc) + _OFFSET_MARGIN
    w = workouts.c
    query = (
        sa.select(w.start_utc, w.utc_offset_s, *columns)
        .where(w.person_id == pid, w.start_utc >= lo, w.start_utc < hi)
        .order_by(w.start_utc, w.id)
    )
    return conn.execute(query).mappings()


def totals(store, person: str, first_day: date, last_day: date, *, home_offset: int | None = None) -> Totals:
    """Count, distance and time of the activities on local days first..last."""
    with _engine(store).connect() as conn:
        pid = _person_id(conn, person)
        if pid is None:
            return Totals(first_day, last_day)
        home = _home_offset(conn, pid) if home_offset is None else home_offset
        return _totals(conn, pid, first_day, last_day, home)


def _totals(conn: sa.Connection, pid: int, first_day: date, last_day: date, home: int) -> Totals:
    count, distance, moving, elapsed = 0, 0.0, 0.0, 0.0
    w = workouts.c
    for row in _day_rows(conn, pid, first_day, last_day, w.distance_m, w.moving_s, w.elapsed_s):
        if not first_day <= local_day(row["start_utc"], row["utc_offset_s"], home) <= last_day:
            continue
        count += 1
        distance += row["distance_m"] or 0.0
        elapsed += row["elapsed_s"] or 0.0
        moving += row["moving_s"] if row["moving_s"] is not None else (row["elapsed_s"] or 0.0)
    return Totals(first_day, last_day, count, distance, moving, elapsed)


def active_days(store, person: str, first_day: date, last_day: date, *, home_offset: int | None = None) -> set[date]:
    """The local days first..last on which the person started at least one activity."""
    with _engine(store).connect() as conn:
        pid = _person_id(conn, person)
        if pid is None:
            return set()
        home = _home_offset(conn, pid) if home_offset is None else home_offset
        return _active_days(conn, pid, first_day, last_day, home)


def _active_days(conn: sa.Connection, pid: int, first_day: date, last_day: date, home: int) -> set[date]:
    # The database computes the local days and returns each once: a long streak
    # means thousands of workouts, and converting every start in Python costs
    # far more than the query. Same rule as local_day(); test_stats checks both agree.
    lo = datetime.combine(first_day, time(), timezone.utc) - _OFFSET_MARGIN
    hi = datetime.combine(last_day + timedelta(days=1), time(), timezone.utc) + _OFFSET_MARGIN
    day = _local_day_sql(conn.dialect.name, home).label("day")
    w = workouts.c
    query = sa.select(day).where(w.person_id == pid, w.start_utc >= lo, w.start_utc < hi).distinct()
    days = (_as_date(d) for d in conn.execute(query).scalars())
    return {d for d in days if first_day <= d <= last_day}


def _local_day_sql(dialect: str, home: int) -> sa.ColumnElement:
    offset = sa.func.coalesce(workouts.c.utc_offset_s, sa.literal(int(home)))
    if dialect == "sqlite":
        # Stored as naive UTC text; date() applies a signed "+N seconds" modifier.
        return sa.func.date(workouts.c.start_utc, sa.func.printf("%+d seconds", offset))
    utc_wall = sa.func.timezone("UTC", workouts.c.start_utc)  # timestamptz -> UTC wall time
    return sa.cast(utc_wall + offset * sa.text("interval '1 second'"), sa.Date)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def current_streak(store, person: str, today: date, *, home_offset: int | None = None) -> int:
    """See :func:`streak_length`."""
    with _engine(store).connect() as conn:
        pid = _person_id(conn, person)
        if pid is None:
            return 0
        home = _home_offset(conn, pid) if home_offset is None else home_offset
        return _streak(conn, pid, today, home)


def _streak(conn: sa.Connection, pid: int, today: date, home: int) -> int:
    # Look back over a window and widen it only while the streak fills it, so a
    # long history costs one small query for the usual short streak.
    window = 32
    while True:
        first = today - timedelta(days=window - 1)
        length = streak_length(_active_days(conn, pid, first, today, home), today)
        if length < window - 1 or window > 366 * 200:
            return length
        window *= 4


def latest_measurement(store, person: str, kind: str, *, at_or_before: datetime | None = None) -> Latest | None:
    """The newest value of ``kind`` (a :data:`hub.model.MEASUREMENT_KINDS` name)."""
    with _engine(store).connect() as conn:
        pid = _person_id(conn, person)
        return None if pid is None else _latest(conn, pid, kind, at_or_before)


def _latest(conn: sa.Connection, pid: int, kind: str, at_or_before: datetime | None) -> Latest | None:
    m = measurements.c
    query = sa.select(m.value, m.time_utc).where(m.person_id == pid, m.kind == kind)
    if at_or_before is not None:
        query = query.where(m.time_utc <= require_utc(at_or_before, "at_or_before"))
    # Ties (two scales at the same second) broken by id: the later stored wins.
    row = conn.execute(query.order_by(m.time_utc.desc(), m.id.desc()).limit(1)).first()
    return None if row is None else Latest(float(row[0]), row[1])


def person_state(store, person: str, *, now: datetime | None = None) -> PersonState:
    """Everything the MQTT notifier publishes for one person, in one connection."""
    now = require_utc(now, "now") if now is not None else datetime.now(timezone.utc)
    with _engine(store).connect() as conn:
        pid = _person_id(conn, person)
        home = _home_offset(conn, pid) if pid is not None else 0
        today = local_day(now, None, home)
        monday, sunday = iso_week(today)
        if pid is None:
            return PersonState(person, now, today, None, Totals(monday, sunday), 0, None, None)
        return PersonState(
            person=person,
            as_of=now,
            today=today,
            last_activity=_last_activity(conn, pid),
            week=_totals(conn, pid, monday, sunday, home),
            streak_days=_streak(conn, pid, today, home),
            weight=_latest(conn, pid, "weight_kg", None),
            resting_hr=_latest(conn, pid, "resting_hr_bpm", None),
        )

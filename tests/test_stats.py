"""hub.stats: per-person figures (last activity, ISO-week totals, streak in local
days, latest weight and resting HR) on SQLite and the real PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.files import decoders, sniff
from hub import stats
from hub.model import Activity, Measurement
from hub.pipeline import Imported, ingest
from hub.storage import Store

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "fixtures" / "samples"
UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    opened = Store(db_url, tmp_path / "home")
    yield opened
    opened.close()


_counter = iter(range(1_000_000))


def put(store: Store, person: str, start: datetime, *, offset_s: int | None = None, distance_m: float | None = 1000.0,
        elapsed_s: float = 1800.0, moving_s: float | None = None, sport: str = "running") -> None:
    """Store one synthetic activity as its own file. Durations differ per call so the
    dedupe's timezone-shift rule never joins two of them."""
    n = next(_counter)
    data = f"synthetic {person} {start.isoformat()} {n}".encode()
    activity = Activity(person=person, sport=sport, start=start, utc_offset_s=offset_s, distance_m=distance_m,
                        elapsed_s=elapsed_s + n % 50, moving_s=moving_s)  # fmt: skip
    store.save_file(data=data, sha256=hashlib.sha256(data).hexdigest(), name=f"s{n}.fit", fmt="fit", source="test:fit",
                    person=person, received_at=start, activities=[activity], measurements=[])  # fmt: skip


def put_measurement(store: Store, person: str, kind: str, when: datetime, value: float) -> None:
    data = f"measurement {person} {kind} {when.isoformat()}".encode()
    m = Measurement(person=person, kind=kind, time=when, value=value)
    store.save_file(data=data, sha256=hashlib.sha256(data).hexdigest(), name="m.fit", fmt="fit", source="test:fit",
                    person=person, received_at=when, activities=[], measurements=[m])  # fmt: skip


# -- pure day arithmetic -------------------------------------------------------------------------


def test_local_day_uses_the_activity_offset_else_the_home_offset() -> None:
    late = utc(2024, 5, 10, 23, 30)
    assert stats.local_day(late, 7200, 0) == date(2024, 5, 11)
    assert stats.local_day(late, None, 7200) == date(2024, 5, 11)
    assert stats.local_day(late, 0, 7200) == date(2024, 5, 10)  # its own offset wins
    assert stats.local_day(utc(2024, 5, 11, 3, 0), -5 * 3600, 0) == date(2024, 5, 10)


def test_iso_week_spans_monday_to_sunday_across_a_year_boundary() -> None:
    assert stats.iso_week(date(2026, 1, 1)) == (date(2025, 12, 29), date(2026, 1, 4))  # a Thursday
    assert stats.iso_week(date(2024, 5, 12)) == (date(2024, 5, 6), date(2024, 5, 12))  # a Sunday
    assert stats.iso_week(date(2024, 5, 6)) == (date(2024, 5, 6), date(2024, 5, 12))  # a Monday


def test_streak_length_counts_back_from_today_or_yesterday() -> None:
    days = {date(2024, 5, d) for d in (3, 5, 6, 7)}
    assert stats.streak_length(days, date(2024, 5, 7)) == 3
    assert stats.streak_length(days, date(2024, 5, 8)) == 3  # today not over yet
    assert stats.streak_length(days, date(2024, 5, 9)) == 0  # yesterday missed: broken
    assert stats.streak_length(set(), date(2024, 5, 9)) == 0


# -- against the database ------------------------------------------------------------------------


def test_streak_counts_local_days_not_utc_days(store: Store) -> None:
    # Alice lives at UTC+2 (her watch says so); her GPX files carry no offset.
    put(store, "alice", utc(2024, 5, 8, 7, 0), offset_s=7200)  # 05-08: then 05-09 is missed
    put(store, "alice", utc(2024, 5, 10, 5, 0), offset_s=None)  # 05-10 07:00 local
    put(store, "alice", utc(2024, 5, 10, 23, 30), offset_s=7200)  # 05-11 01:30 local (UTC says 05-10)
    put(store, "alice", utc(2024, 5, 12, 6, 0), offset_s=7200)  # 05-12
    put(store, "bob", utc(2024, 5, 9, 6, 0), offset_s=0)  # someone else's day fills no gap

    assert stats.home_offset_s(store, "alice") == 7200
    assert stats.active_days(store, "alice", date(2024, 5, 1), date(2024, 5, 31)) == {
        date(2024, 5, 8), date(2024, 5, 10), date(2024, 5, 11), date(2024, 5, 12)
    }
    assert stats.current_streak(store, "alice", date(2024, 5, 12)) == 3
    # Counted in UTC days, 05-11 would be a gap: the offset is what keeps the streak alive.
    utc_days = {a.activity.start.date() for a in store.list_activities(person="alice")}
    assert stats.streak_length(utc_days, date(2024, 5, 12)) == 1
    assert stats.person_state(store, "alice", now=utc(2024, 5, 13, 8, 0)).streak_days == 3  # yesterday counts
    assert stats.person_state(store, "alice", now=utc(2024, 5, 14, 8, 0)).streak_days == 0
    assert stats.person_state(store, "bob", now=utc(2024, 5, 9, 20, 0)).streak_days == 1


def test_a_streak_longer_than_the_first_lookback_window(store: Store) -> None:
    first = utc(2024, 1, 1, 6, 0)
    for i in range(75):
        put(store, "carol", first + timedelta(days=i, minutes=i % 7), offset_s=3600, distance_m=float(i))
    last_day = date(2024, 1, 1) + timedelta(days=74)
    assert stats.current_streak(store, "carol", last_day) == 75
    assert stats.current_streak(store, "carol", last_day - timedelta(days=10)) == 65


def test_week_totals_use_local_days_and_moving_time_fallback(store: Store) -> None:
    # Week of Monday 2024-05-06 .. Sunday 05-12 in UTC+2.
    put(store, "alice", utc(2024, 5, 5, 21, 0), offset_s=7200, distance_m=9999.0)  # Sunday 23:00 local: last week
    put(store, "alice", utc(2024, 5, 5, 22, 30), offset_s=7200, distance_m=5000.0, elapsed_s=1500, moving_s=1400)
    put(store, "alice", utc(2024, 5, 8, 17, 0), offset_s=None, distance_m=20000.0, elapsed_s=3600, moving_s=None)
    put(store, "alice", utc(2024, 5, 12, 6, 0), offset_s=7200, distance_m=None, elapsed_s=1200, moving_s=1000)
    put(store, "bob", utc(2024, 5, 7, 6, 0), offset_s=7200, distance_m=123456.0)

    state = stats.person_state(store, "alice", now=utc(2024, 5, 12, 20, 0))
    week = state.week
    assert (week.first_day, week.last_day) == (date(2024, 5, 6), date(2024, 5, 12))
    assert week.activities == 3
    assert week.distance_m == pytest.approx(25000.0)
    # Stored elapsed times get +n%50 from put(); read them back rather than guess.
    elapsed = {a.activity.start: a.activity.elapsed_s for a in store.list_activities(person="alice")}
    in_week = [utc(2024, 5, 5, 22, 30), utc(2024, 5, 8, 17, 0), utc(2024, 5, 12, 6, 0)]
    assert week.elapsed_s == pytest.approx(sum(elapsed[t] for t in in_week))
    assert week.moving_s == pytest.approx(1400 + elapsed[utc(2024, 5, 8, 17, 0)] + 1000)  # no moving time: elapsed
    assert stats.totals(store, "alice", date(2024, 5, 5), date(2024, 5, 5)).distance_m == pytest.approx(9999.0)


def test_state_from_real_files_matches_the_store(store: Store) -> None:
    for sample in ("morning_run.gpx", "evening_ride.tcx", "strength_sets.fit", "weight_scale.fit"):
        data = (SAMPLES / sample).read_bytes()
        assert isinstance(ingest(store, data, name=sample, decoders=decoders(), sniff=sniff, person="alice"), Imported)
    put_measurement(store, "alice", "resting_hr_bpm", utc(2024, 5, 20, 6, 0), 48.0)
    put_measurement(store, "alice", "resting_hr_bpm", utc(2024, 5, 21, 6, 0), 51.0)

    activities = store.list_activities(person="alice")
    newest = activities[-1]
    weights = store.measurements(person="alice", kind="weight_kg")
    state = stats.person_state(store, "alice", now=newest.activity.start + timedelta(hours=2))

    assert state.last_activity is not None
    assert state.last_activity.id == newest.id
    assert state.last_activity.sport == newest.activity.sport == "cycling"
    assert state.last_activity.distance_m == pytest.approx(newest.activity.distance_m)
    assert state.last_activity.elapsed_s == pytest.approx(newest.activity.elapsed_s)
    assert state.weight is not None and state.weight.value == pytest.approx(weights[-1].value)
    assert state.weight.time == weights[-1].time
    assert state.resting_hr is not None and state.resting_hr.value == 51.0
    # The ride (Tuesday 05-21) and the run (Saturday 05-18) are in different ISO weeks.
    assert state.week.activities == 1 and state.week.distance_m == pytest.approx(newest.activity.distance_m)
    assert state.streak_days == 1

    doc = state.as_json()
    assert doc["last_activity_sport"] == "cycling"
    assert doc["weight_kg"] == pytest.approx(weights[-1].value)
    assert doc["resting_hr_bpm"] == 51.0
    assert doc["week_start"] == "2024-05-20"
    assert doc["last_activity_start"].endswith("Z")


def test_unknown_person_has_an_empty_state(store: Store) -> None:
    state = stats.person_state(store, "nobody", now=utc(2024, 5, 12, 20, 0))
    assert state.last_activity is None and state.weight is None and state.streak_days == 0
    doc = state.as_json()
    assert doc["last_activity_sport"] is None and doc["weight_kg"] is None
    assert doc["week_distance_m"] == 0.0 and doc["week_activities"] == 0


def test_database_local_days_agree_with_local_day(store: Store) -> None:
    """active_days computes local days in SQL (per backend); it must follow the
    same rule as the pure local_day(), at day boundaries and for every offset sign."""
    import random

    rng = random.Random(7)
    home = -5 * 3600
    put(store, "dana", utc(2024, 3, 1, 12, 0), offset_s=home)  # the newest with an offset sets home
    starts = []
    for i in range(40):
        start = utc(2024, 2, 1) + timedelta(minutes=rng.randrange(0, 28 * 24 * 60))
        offset = rng.choice([None, -12 * 3600, -9000, 0, 3600, 19800, 14 * 3600])
        put(store, "dana", start, offset_s=offset)
        starts.append((start, offset))
    put(store, "dana", utc(2024, 2, 10, 23, 59, 59), offset_s=1)  # one second into the next day
    starts += [(utc(2024, 2, 10, 23, 59, 59), 1), (utc(2024, 3, 1, 12, 0), home)]
    stored = [a.activity for a in store.list_activities(person="dana")]
    assert sorted((a.start, a.utc_offset_s) for a in stored) == sorted(starts)  # none merged
    expected = {stats.local_day(a.start, a.utc_offset_s, home) for a in stored}
    assert stats.active_days(store, "dana", date(2024, 1, 1), date(2024, 3, 31)) == expected
    # A narrower range keeps only its own days, judged locally.
    inside = {d for d in expected if date(2024, 2, 5) <= d <= date(2024, 2, 12)}
    assert stats.active_days(store, "dana", date(2024, 2, 5), date(2024, 2, 12)) == inside

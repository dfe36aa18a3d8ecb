"""Dedupe benchmark: matching one new activity against a large history.

    .venv/bin/python bench/bench_dedupe.py [--n 100000] [--trials 200] [--db URL] [--seed 1]

Fills a fresh database (SQLite in a temporary folder unless --db names another, e.g.
an empty PostgreSQL database) with --n stored workouts of one person spread over
ten years: synthetic summary-only activities with a few samples each, saved
through ``Store.save_file`` in batches (one "file" of many activities per
transaction, the cheapest way in that still goes through matching and merging).
Then it measures, over --trials fresh activities each:

  (a) match: the storage candidate query for the activity's time window plus
      ``hub.dedupe.match`` against what it returns (what every import pays);
  (b) insert: ``Store.save_file`` of one new activity that matches nothing
      (the whole write, which includes (a));

and prints the medians, the 95th percentiles and the ratio (a) / (b). The target is
a median for (a) below 10 ms at 100,000 workouts. Everything random comes from
--seed, so a run can be repeated exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hub.dedupe import match  # noqa: E402
from hub.model import Activity, Provenance, SampleStream  # noqa: E402
from hub.storage import Store  # noqa: E402
from hub.storage.schema import persons  # noqa: E402
from hub.storage.workouts import WorkoutWriter  # noqa: E402

PERSON = "bench"
YEARS = 10
EPOCH = datetime(2015, 1, 1, tzinfo=timezone.utc)
SPORTS = ("running", "cycling", "walking", "swimming", "generic")
SAMPLES = 5  # a handful per activity: the matcher never reads samples


@dataclass(frozen=True)
class Slot:
    """Where one stored workout sits: its start, and the free gap after it."""

    start: datetime
    duration_s: float
    gap_s: float


def layout(n: int, rng: random.Random) -> list[Slot]:
    """``n`` workouts over ten years on an even grid with jitter, never overlapping.

    An even grid is the worst case for the candidate query (every window holds
    the most workouts the density allows) and keeps stored workouts from matching
    each other by accident: each lasts at most half its slot.
    """
    spacing = YEARS * 365.25 * 86400 / n
    slots = []
    for i in range(n):
        jitter = rng.uniform(0, spacing * 0.1)
        duration = rng.uniform(0.2, 0.5) * spacing
        start = EPOCH + timedelta(seconds=round(i * spacing + jitter))
        slots.append(Slot(start=start, duration_s=round(duration), gap_s=spacing - jitter - duration))
    return slots


def synthetic(start: datetime, duration_s: float, sport: str, rng: random.Random, tag: str) -> Activity:
    """A summary-only activity with a few samples along a short straight line."""
    offsets = [duration_s * k / (SAMPLES - 1) for k in range(SAMPLES)]
    lat0, lon0 = 45 + rng.uniform(-1, 1), 5 + rng.uniform(-1, 1)
    speed = {"running": 3.0, "cycling": 7.5, "walking": 1.4, "swimming": 0.8}.get(sport, 2.0)
    distance = speed * duration_s
    columns = {
        "lat_deg": [lat0 + distance / 111_000 * k / (SAMPLES - 1) for k in range(SAMPLES)],
        "lon_deg": [lon0] * SAMPLES,
        "hr_bpm": [float(rng.randint(100, 170)) for _ in range(SAMPLES)],
    }
    return Activity(
        person=PERSON,
        sport=sport,
        start=start,
        elapsed_s=duration_s,
        moving_s=duration_s,
        distance_m=distance,
        avg_hr_bpm=sum(columns["hr_bpm"]) / SAMPLES,
        samples=SampleStream(offsets_s=offsets, columns=columns),
        source_id=f"bench:{tag}",
    )


def save(store: Store, activities: list[Activity], tag: str):
    data = f"fithub dedupe benchmark {tag}".encode()
    sha = hashlib.sha256(data).hexdigest()
    now = datetime.now(timezone.utc)
    return store.save_file(
        data=data, sha256=sha, name=f"bench-{tag}", fmt="bench", source="bench", person=PERSON,
        received_at=now, activities=[_with_provenance(a, sha, now) for a in activities], measurements=[],
    )


def _with_provenance(activity: Activity, sha: str, now: datetime) -> Activity:
    from dataclasses import replace

    return replace(activity, provenance=Provenance(source="bench", sha256=sha, received_at=now))


def fill(store: Store, slots: list[Slot], rng: random.Random, batch: int) -> float:
    began = time.perf_counter()
    for b in range(0, len(slots), batch):
        chunk = [
            synthetic(s.start, s.duration_s, SPORTS[(b + i) % len(SPORTS)], rng, f"{b + i}")
            for i, s in enumerate(slots[b : b + batch])
        ]
        saved = save(store, chunk, f"fill-{b}")
        if len(saved.activity_ids) != len(chunk):
            raise SystemExit(f"batch {b}: {len(chunk) - len(saved.activity_ids)} synthetic workouts matched "
                             "others; the layout should keep them apart")
        done = b + len(chunk)
        if done % max(batch, len(slots) // 20) < batch or done == len(slots):
            rate = done / (time.perf_counter() - began)
            print(f"  {done:>7} / {len(slots)} stored ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    return time.perf_counter() - began


def in_gap(slot: Slot, rng: random.Random, tag: str) -> Activity:
    """A short activity in the free time after ``slot``: it overlaps no stored workout."""
    length = min(300.0, slot.gap_s / 3)
    start = slot.start + timedelta(seconds=slot.duration_s + slot.gap_s / 3)
    return synthetic(start, round(length), rng.choice(SPORTS), rng, tag)


def timed_match(conn, person_id: int, activity: Activity, key: str) -> tuple[float, int, object]:
    """Seconds for the storage candidate query plus ``match``, as ``save_file`` runs them."""
    began = time.perf_counter()
    writer = WorkoutWriter(conn, None, None)
    candidates = writer.candidates(activity, person_id=person_id, key=key, same_file=None)
    found = match(activity, key, candidates)
    return time.perf_counter() - began, len(candidates), found


def person_id(conn) -> int:
    return conn.execute(sa.select(persons.c.id).where(persons.c.name == PERSON)).scalar_one()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="stored workouts (default 100,000)")
    parser.add_argument("--trials", type=int, default=200, help="timed activities per measurement")
    parser.add_argument("--batch", type=int, default=1000, help="activities per saved file while filling")
    parser.add_argument("--db", help="database URL (must be empty); default: SQLite in a temporary folder")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fithub-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        with Store(url, Path(tmp) / "home") as store:
            if store.list_activities(person=PERSON, start_from=EPOCH, start_to=EPOCH + timedelta(days=1)):
                raise SystemExit(f"{store.safe_url} already holds benchmark data; give an empty database")
            slots = layout(args.n, rng)
            print(f"filling {store.safe_url} with {args.n:,} workouts over {YEARS} years ...", file=sys.stderr)
            fill_s = fill(store, slots, rng, args.batch)

            picks = rng.sample(range(len(slots) - 1), min(args.trials, len(slots) - 1))
            match_s, counts, dup_s = [], [], []
            # One read connection for all trials: the pool hands save_file one the same way.
            with store.engine.connect() as conn:
                pid = person_id(conn)
                for t, i in enumerate(picks):
                    probe = in_gap(slots[i], rng, f"probe-{t}")
                    seconds, count, found = timed_match(conn, pid, probe, f"probe:{t}")
                    if found is not None:
                        raise SystemExit(f"probe {t} matched {found}; it was placed in a gap")
                    match_s.append(seconds)
                    counts.append(count)
                # A copy of a stored workout (same times, another identity): a real duplicate.
                for t, i in enumerate(picks):
                    s = slots[i]
                    copy = synthetic(s.start, s.duration_s, SPORTS[i % len(SPORTS)], rng, f"copy-{t}")
                    seconds, _, found = timed_match(conn, pid, copy, f"copy:{t}")
                    if found is None:
                        raise SystemExit(f"copy {t} of stored workout {i} found no match")
                    dup_s.append(seconds)

            insert_s = []
            for t, i in enumerate(picks):
                probe = in_gap(slots[i], rng, f"insert-{t}")
                began = time.perf_counter()
                saved = save(store, [probe], f"insert-{t}")
                insert_s.append(time.perf_counter() - began)
                if len(saved.activity_ids) != 1:
                    raise SystemExit(f"insert {t} merged into an existing workout")

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    p95 = lambda xs: sorted(xs)[int(0.95 * (len(xs) - 1))] * 1000  # noqa: E731
    print(f"database            {url.split(':', 1)[0]}")
    print(f"stored workouts     {args.n:,} (filled in {fill_s:,.1f} s, {args.n / fill_s:,.0f}/s)")
    print(f"candidates/window   median {statistics.median(counts):.0f}, max {max(counts)}")
    print(f"(a) match, no hit   median {ms(match_s):7.3f} ms   p95 {p95(match_s):7.3f} ms   ({len(match_s)} trials)")
    print(f"    match, copy     median {ms(dup_s):7.3f} ms   p95 {p95(dup_s):7.3f} ms")
    print(f"(b) insert          median {ms(insert_s):7.3f} ms   p95 {p95(insert_s):7.3f} ms")
    print(f"ratio (a) / (b)     {ms(match_s) / ms(insert_s):.2f}")
    target = ms(match_s) < 10.0
    print(f"target (a) < 10 ms  {'met' if target else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The import's fast paths (issue 6) give exactly what the plain one-value-at-a-time
rules give: sparse FIT columns made dense, sessions given their records, valid
points counted, summary statistics; and a new single-version workout is not
recounted value by value."""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.files.fit_build import Part, _assign_rows, dense
from connectors.files.fit_scan import Sparse
from hub.dedupe_merge import GROUPS, Version, _count, merge
from hub.derive import finite_values, moving_time
from hub.model import Activity, Provenance, SampleStream
from hub.storage.rows import Blobs

T0 = datetime(2024, 5, 1, 7, 0, tzinfo=timezone.utc)

# What a FIT column can hold after a damaged or odd file: numbers, NaN and
# infinities, None, bools, tuples (array fields), strings.
odd_values = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.tuples(st.integers(0, 255)),
    st.text(max_size=3),
)
numbers = st.one_of(st.integers(-(2**31), 2**31), st.floats(-1e6, 1e6))


def dense_one_by_one(sparse: Sparse, n: int, scale: float | None, limit: float | None) -> list | None:
    """dense()'s rule stated plainly: each finite int/float, scaled, within the limit,
    lands on its row; a later value for the same row wins; nothing at all -> None."""
    if not sparse.rows:
        return None
    out: list = [None] * n
    found = False
    for i, v in zip(sparse.rows, sparse.values):
        if type(v) in (int, float) and math.isfinite(v):
            if scale is not None:
                v = v * scale
            if limit is not None and not -limit <= v <= limit:
                continue
            out[i] = v
            found = True
    return out if found else None


@st.composite
def sparse_columns(draw):
    n = draw(st.integers(1, 60))
    shape = draw(st.sampled_from(["all", "stretches", "random", "repeats"]))
    if shape == "all":
        rows = list(range(n))
    elif shape == "stretches":  # a sensor that drops out and returns
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
        bounds = [0, *cuts, n]
        rows = [i for k in range(0, len(bounds) - 1, 2) for i in range(bounds[k], bounds[k + 1])] or [0]
    elif shape == "random":
        rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n))
    else:  # one record with a field and its component: the same row twice
        rows = sorted(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n)))
    values = draw(st.lists(st.one_of(numbers, numbers, odd_values), min_size=len(rows), max_size=len(rows)))
    scale, limit = draw(st.sampled_from([(None, None), (180.0 / 2**31, 90.0), (0.5, 100.0), (None, 1000.0)]))
    return Sparse(rows, values), n, scale, limit


@settings(max_examples=500, deadline=None)
@given(sparse_columns())
def test_dense_matches_the_one_by_one_rule(case) -> None:
    sparse, n, scale, limit = case
    want = dense_one_by_one(sparse, n, scale, limit)
    assert dense(sparse, n, scale, limit) == want
    assert dense(sparse, n, scale, limit, list(range(n))) == want  # with a shared index


def test_dense_result_is_never_the_scanners_own_list() -> None:
    # build_samples fixes lat/lon gaps in place: it must not write into the scan.
    values = [1.0, 2.0, 3.0]
    out = dense(Sparse([0, 1, 2], values), 3)
    assert out == values and out is not values


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 10_000), min_size=2, max_size=5, unique=True),
    st.lists(st.integers(0, 12_000), max_size=80),
)
def test_records_go_to_the_last_session_started_before_them(starts, ts) -> None:
    starts.sort()
    parts = [Part(summary={}, start=s) for s in starts]
    _assign_rows(parts, starts, ts)
    for i, t in enumerate(ts):
        owner = max(0, bisect_right(starts, t) - 1)
        assert i in parts[owner].rows
    assert sorted(i for p in parts for i in p.rows) == list(range(len(ts)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5))))
def test_finite_values_keeps_measured_values_in_order(column) -> None:
    assert finite_values(column) == [v for v in column if v is not None and math.isfinite(v)]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_valid_point_counts_match_the_plain_count(data) -> None:
    n = data.draw(st.integers(0, 30))
    value = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5))
    columns = {c: data.draw(st.lists(value, min_size=n, max_size=n)) for c in ("lat_deg", "lon_deg", "hr_bpm")}
    activity = Activity(start=T0, samples=SampleStream(offsets_s=[float(i) for i in range(n)], columns=columns))
    for name in ("position", "hr_bpm", "power_w"):
        wanted = [columns.get(c) for c in GROUPS.get(name, (name,))]
        plain = 0 if None in wanted else sum(
            all(v is not None and math.isfinite(v) for v in values) for values in zip(*wanted)
        )
        assert _count(activity, name) == plain


def _long_ride(n: int) -> Activity:
    columns = {
        "lat_deg": [46.0 + i * 1e-6 for i in range(n)],
        "lon_deg": [7.0 + i * 1e-6 for i in range(n)],
        "hr_bpm": [None if i % 50 == 0 else 120.0 + i % 30 for i in range(n)],
        "power_w": [None] * (n // 2) + [200.0] * (n - n // 2),  # a power meter paired late
        "speed_mps": [5.0] * n,
    }
    origin = Provenance(source="file:fit", sha256="a" * 64, received_at=T0)
    return Activity(
        sport="cycling",
        start=T0,
        samples=SampleStream(offsets_s=[float(i) for i in range(n)], columns=columns),
        provenance=origin,
    )


def test_a_single_version_names_its_channels_without_counting_every_sample() -> None:
    ride = _long_ride(200_000)
    best = math.inf
    for _ in range(3):
        began = time.perf_counter()
        merged = merge([Version(key="k", activity=ride)])
        best = min(best, time.perf_counter() - began)
    assert merged.activity is ride
    assert {k for k, v in merged.channel_sources.items() if v == "k"} >= {"position", "hr_bpm", "power_w", "speed_mps"}
    # Counting 1.2 million values one by one took about half a second here.
    assert best < 0.05


def test_one_blob_for_the_workout_and_its_single_version() -> None:
    ride = _long_ride(1000)
    blobs = Blobs()
    first = blobs.samples(ride.samples)
    assert blobs.samples(ride.samples) is first  # the same stream: compressed once
    copy = SampleStream(offsets_s=list(ride.samples.offsets_s), columns=dict(ride.samples.columns))
    assert blobs.samples(copy) == first and blobs.samples(copy) is not first  # another stream: its own


def moving_time_one_by_one(offsets: list[float], speed: list[float]) -> float | None:
    """derive.moving_time's rule with a speed at every sample, stated as a loop."""
    if len(offsets) < 2:
        return None
    total = 0.0
    for i in range(1, len(offsets)):
        dt = offsets[i] - offsets[i - 1]
        if speed[i] >= 0.5 and 0 < dt <= 60.0:
            total += dt
    return total


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_moving_time_from_speed_adds_the_same_steps_in_the_same_order(data) -> None:
    n = data.draw(st.integers(0, 40))
    offsets = data.draw(st.lists(st.floats(-1e5, 1e5), min_size=n, max_size=n))
    speed = data.draw(st.lists(st.one_of(st.floats(allow_nan=True), st.integers(0, 5)), min_size=n, max_size=n))
    got, want = moving_time(offsets, None, speed), moving_time_one_by_one(offsets, speed)
    assert got == want and (want is None or math.copysign(1, got) == math.copysign(1, want))

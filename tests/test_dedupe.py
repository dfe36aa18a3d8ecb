"""Matching and merging source versions of one workout (pure, no database).

Versions are real corpus files decoded here: the Edge 1000 ride as FIT and as the
GPX Garmin Connect exported from it (the same ride, per the corpus manifest), the
FIT written out as GPX and TCX by fithub's exporters and decoded again, and copies
made the way real duplicates arise (clock shifted by a time zone, first and last
minutes cut). Truth for merged values is read independently with raw fitdecode and
gpxpy; negative cases are real recordings cut or moved to where they must not merge.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fitdecode
import gpxpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.export import export
from connectors.files import decoders
from hub.dedupe import (
    DEFAULT_RULES,
    Candidate,
    Match,
    MatchRules,
    MergePolicy,
    Version,
    VersionSummary,
    candidate_window,
    match,
    merge,
)
from hub.dedupe_merge import STREAM_FIELDS
from hub.derive import fill_summary
from hub.errors import ConfigError
from hub.model import Activity, Device, Provenance, SampleStream

RIDE_FIT = "fit/agpl/sportslib__edge1000-ride_3939576645.fit"
RIDE_GPX = "gpx/agpl/sportslib__edge1000-ride_3939576645.gpx"
RUN_FIT = "fit/runpandas__fr645m-run.fit"
DEV_FIT = "fit/fitparser-js__running-with-developer-data.fit"
RECEIVED = datetime(2024, 1, 1, tzinfo=timezone.utc)
SEMI = 180 / 2**31
FIT_EPOCH = datetime(1989, 12, 31, tzinfo=timezone.utc)


def _origin(fmt: str, name: str, source: str | None = None) -> Provenance:
    return Provenance(source=source or f"file:{fmt}", sha256=None, received_at=RECEIVED, name=name)


def _decode(data: bytes, fmt: str, name: str) -> Activity:
    decoded = decoders()[fmt](data, _origin(fmt, name))
    assert len(decoded.activities) == 1, name
    return decoded.activities[0]


@pytest.fixture(scope="module")
def ride(shared: Path) -> dict[str, Activity]:
    """The Edge 1000 ride in every form it reaches fithub."""
    fit = _decode((shared / RIDE_FIT).read_bytes(), "fit", RIDE_FIT)
    return {
        "fit": fit,
        "gpx": _decode((shared / RIDE_GPX).read_bytes(), "gpx", RIDE_GPX),
        "fit_as_gpx": _decode(export(fit, "gpx"), "gpx", "export.gpx"),
        "fit_as_tcx": _decode(export(fit, "tcx"), "tcx", "export.tcx"),
    }


@pytest.fixture(scope="module")
def run(shared: Path) -> Activity:
    return _decode((shared / RUN_FIT).read_bytes(), "fit", RUN_FIT)


def shifted(a: Activity, **delta: float) -> Activity:
    """The same recording with every clock moved (the time-zone export bug)."""
    d = timedelta(**delta)
    return replace(a, start=a.start + d, laps=tuple(replace(lap, start=lap.start + d) for lap in a.laps))


def cut(a: Activity, head_s: float = 0.0, tail_s: float = 0.0, keep_s: float | None = None) -> Activity:
    """A copy holding only samples in [head_s, end - tail_s] (or head_s + keep_s), as a
    trimming app writes it: new start, summary recomputed from what is left, no laps,
    and no source identity (it is a new file)."""
    s = a.samples
    end = s.offsets_s[-1] - tail_s if keep_s is None else head_s + keep_s
    rows = [i for i, t in enumerate(s.offsets_s) if head_s <= t <= end]
    first = s.offsets_s[rows[0]]
    samples = SampleStream(
        offsets_s=[s.offsets_s[i] - first for i in rows],
        columns={k: [v[i] for i in rows] for k, v in s.columns.items()},
        units=dict(s.units),
    )
    blank = {name: None for name in STREAM_FIELDS}
    return fill_summary(
        replace(a, start=a.start + timedelta(seconds=first), samples=samples, laps=(), source_id=None, **blank)
    )


def summary(key: str, a: Activity, shift_s: int = 0) -> VersionSummary:
    return VersionSummary(
        key=key,
        sport=a.sport,
        start=a.start,
        elapsed_s=a.elapsed_s,
        distance_m=a.distance_m,
        source_id=a.source_id,
        shift_s=shift_s,
    )


def workout(id: int, *versions: tuple[str, Activity], person: str = "default", **manual) -> Candidate:
    return Candidate(id=id, person=person, versions=tuple(summary(k, a) for k, a in versions), **manual)


def _fit_records(path: Path) -> dict[datetime, dict]:
    """Raw record values by timestamp, read with fitdecode (independent of fithub)."""
    out: dict[datetime, dict] = {}
    with fitdecode.FitReader(str(path)) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "record":
                values = {f.name: f.value for f in frame.fields}
                out[values["timestamp"].astimezone(timezone.utc)] = values
    return out


def _gpx_points(path: Path) -> dict[datetime, tuple[float, float]]:
    with path.open() as fh:
        gpx = gpxpy.parse(fh)
    return {
        p.time.astimezone(timezone.utc): (p.latitude, p.longitude)
        for t in gpx.tracks
        for seg in t.segments
        for p in seg.points
    }


def _at(a: Activity, column: str) -> dict[datetime, float | None]:
    """Column values by absolute time (whole seconds, as FIT and GPX record them)."""
    s = a.samples
    return {
        (a.start + timedelta(seconds=t)).replace(microsecond=0): v
        for t, v in zip(s.offsets_s, s.columns[column])
    }


# --------------------------------------------------------------------- matching


def test_same_ride_from_fit_and_garmin_gpx_matches(ride):
    got = match(ride["gpx"], "gpx", [workout(7, ("fit", ride["fit"]))])
    assert got == Match(candidate_id=7, layer="fuzzy", shift_s=0)


@pytest.mark.parametrize("form", ["fit_as_gpx", "fit_as_tcx"])
def test_exported_copies_match_their_origin(ride, form):
    assert match(ride[form], form, [workout(1, ("fit", ride["fit"]))]) == Match(1, "fuzzy", 0)


@pytest.mark.parametrize(
    "delta, expected",
    [
        (timedelta(hours=1), 3600),
        (timedelta(hours=-7), -25200),
        (timedelta(hours=5, minutes=30), 19800),  # India
        (timedelta(hours=5, minutes=45, seconds=2), 20700),  # Nepal, a rounding second off
        (timedelta(hours=14), 50400),
    ],
)
def test_time_zone_shifted_copy_matches_with_its_shift(ride, delta, expected):
    copy = shifted(ride["gpx"], seconds=delta.total_seconds())
    got = match(copy, "copy", [workout(3, ("fit", ride["fit"]))])
    assert got == Match(3, "fuzzy_tz_shift", expected)
    # Aligning by the returned shift puts the copy back on the original start
    # (up to the rounding second the Nepal case carries).
    aligned = copy.start - timedelta(seconds=got.shift_s)
    assert abs(aligned - ride["fit"].start) <= timedelta(seconds=2)


@pytest.mark.parametrize(
    "delta",
    [
        timedelta(hours=2, minutes=7),  # not a time-zone offset
        timedelta(hours=1, minutes=15),  # no time zone is 1:15 from UTC
        timedelta(hours=15),  # beyond the widest offsets in use
        timedelta(hours=3, seconds=40),  # minute:second differ
    ],
)
def test_other_shifts_do_not_match(ride, delta):
    copy = shifted(ride["gpx"], seconds=delta.total_seconds())
    assert match(copy, "copy", [workout(3, ("fit", ride["fit"]))]) is None


def test_shifted_copy_must_also_have_the_same_duration(ride):
    # Same minute:second one hour later, but 20 minutes shorter: another ride.
    other = cut(shifted(ride["gpx"], hours=1), tail_s=1200)
    assert match(other, "other", [workout(3, ("fit", ride["fit"]))]) is None


def test_trimmed_copy_matches(ride):
    trimmed = cut(ride["gpx"], head_s=300, tail_s=300)
    assert trimmed.start - ride["fit"].start >= timedelta(seconds=300)
    assert match(trimmed, "trimmed", [workout(2, ("fit", ride["fit"]))]) == Match(2, "fuzzy", 0)
    # ... and the other way round, the full file arriving after the trimmed one.
    assert match(ride["fit"], "fit", [workout(2, ("trimmed", trimmed))]) == Match(2, "fuzzy", 0)


def test_same_source_id_matches_first_even_across_a_shift(ride):
    redownloaded = shifted(ride["fit"], hours=2)
    stored = Candidate(1, "default", (summary("fit", ride["fit"], shift_s=0),))
    assert match(redownloaded, "again", [stored]) == Match(1, "source_id", 7200)
    # A stored version that was itself shifted passes its correction on.
    odd = Candidate(2, "default", (summary("odd", shifted(ride["fit"], hours=-3), shift_s=-10800),))
    assert match(ride["fit"], "fit", [odd]) == Match(2, "source_id", 0)


def test_different_person_never_matches(ride):
    assert match(ride["gpx"], "gpx", [workout(1, ("fit", ride["fit"]), person="bob")]) is None


def test_morning_and_evening_rides_do_not_match(ride):
    evening = replace(shifted(ride["gpx"], hours=9, minutes=13, seconds=27), name="evening")
    assert match(evening, "evening", [workout(1, ("fit", ride["fit"]))]) is None


def test_back_to_back_intervals_do_not_match(run):
    first = cut(run, keep_s=1500)
    second = cut(run, head_s=1501)
    assert second.start > first.end - timedelta(seconds=1)
    assert match(second, "second", [workout(1, ("first", first))]) is None
    assert match(first, "first", [workout(1, ("second", second))]) is None


def test_warm_up_inside_a_run_stays_apart(run):
    warm_up = cut(run, head_s=60, keep_s=600)
    assert run.start <= warm_up.start and warm_up.end <= run.end  # fully inside
    assert match(warm_up, "warm", [workout(1, ("run", run))]) is None
    assert match(run, "run", [workout(1, ("warm", warm_up))]) is None


@pytest.mark.parametrize(
    "sport, other, same",
    [
        ("running", "cycling", False),
        ("swimming", "cycling", False),
        ("generic", "cycling", True),
        ("fitness_equipment", "cycling", True),
        ("virtual_ride", "cycling", True),
        ("road_biking", "mountain_biking", True),
        ("trail_running", "treadmill", True),
        ("hiking", "walking", True),
        ("hiking", "running", False),
    ],
)
def test_sport_compatibility(ride, sport, other, same):
    stored = workout(1, ("fit", replace(ride["fit"], sport=other)))
    got = match(replace(ride["gpx"], sport=sport), "gpx", [stored])
    assert (got is not None) == same


def test_manual_decisions(ride, run):
    gpx = ride["gpx"]
    # together: joins even a workout with nothing in common
    assert match(gpx, "gpx", [workout(4, ("run", run), together=frozenset({"gpx"}))]) == Match(4, "manual", 0)
    # apart: never joins, even the exact twin
    assert match(gpx, "gpx", [workout(1, ("fit", ride["fit"]), apart=frozenset({"gpx"}))]) is None
    # apart on one candidate leaves the other one
    split = workout(1, ("fit", ride["fit"]), apart=frozenset({"gpx"}))
    other = workout(9, ("tcx", ride["fit_as_tcx"]))
    assert match(gpx, "gpx", [split, other]) == Match(9, "fuzzy", 0)
    # a manual merge of a shifted copy still reports the alignment
    moved = shifted(gpx, hours=-4)
    merged_by_hand = workout(2, ("fit", ride["fit"]), together=frozenset({"m"}))
    assert match(moved, "m", [merged_by_hand]) == Match(2, "manual", -14400)


def test_best_candidate_wins_regardless_of_order(ride):
    fit, gpx = ride["fit"], ride["gpx"]
    by_tz = workout(3, ("late", shifted(gpx, hours=1)))
    by_fuzzy = workout(5, ("gpx", gpx))
    trimmed = workout(2, ("trim", cut(gpx, head_s=300, tail_s=900)))
    by_id = workout(8, ("tcx", ride["fit_as_tcx"]))
    candidates = [by_tz, by_fuzzy, trimmed]
    # Fuzzy beats a time-zone shift; the larger overlap ratio beats a smaller one.
    new = replace(fit, source_id=None)
    for order in (candidates, candidates[::-1], candidates[1:] + candidates[:1]):
        assert match(new, "fit", order) == Match(5, "fuzzy", 0)
    # The source identity beats every fuzzy match.
    ided = workout(11, ("fit", fit))
    assert match(shifted(fit, hours=1), "again", [by_fuzzy, ided, by_tz]).candidate_id == 11
    # Equal overlap: the smaller id.
    assert match(new, "fit", [by_id, by_fuzzy]) == Match(5, "fuzzy", 0)


def test_candidate_window_covers_shifts_and_trims(ride):
    lo, hi = candidate_window(ride["fit"])
    start = ride["fit"].start
    for delta in (timedelta(hours=14), timedelta(hours=-14), timedelta(minutes=10), timedelta(minutes=-10)):
        assert lo <= start + delta + timedelta(minutes=5) <= hi
        assert lo <= start + delta - timedelta(minutes=5) <= hi
    assert hi - lo < timedelta(hours=36)


def test_match_is_fast(ride):
    fit = ride["fit"]
    candidates = [
        workout(i, (f"k{i}", shifted(fit, minutes=47 * i)), (f"j{i}", shifted(ride["gpx"], minutes=47 * i + 3)))
        for i in range(30)
    ]
    new = replace(ride["gpx"], source_id=None)
    assert match(new, "new", candidates) is not None
    runs = 300
    began = time.perf_counter()
    for _ in range(runs):
        match(new, "new", candidates)
    assert (time.perf_counter() - began) / runs < 1e-3


def test_rules_are_configurable(ride):
    trimmed = cut(ride["gpx"], head_s=300, tail_s=300)
    strict = MatchRules(max_start_diff_s=120)
    assert match(trimmed, "t", [workout(1, ("fit", ride["fit"]))], strict) is None
    assert match(trimmed, "t", [workout(1, ("fit", ride["fit"]))], DEFAULT_RULES) is not None


# ---------------------------------------------------------------------- merging


def _only(a: Activity, *columns: str, source: str | None = None) -> Activity:
    s = a.samples
    kept = SampleStream(offsets_s=list(s.offsets_s), columns={c: s.columns[c] for c in columns})
    blank = {name: None for name in STREAM_FIELDS}
    provenance = a.provenance if source is None else replace(a.provenance, source=source)
    return replace(a, samples=kept, provenance=provenance, **blank)


def test_positions_from_gpx_and_heart_rate_from_fit(ride, shared):
    gpx_pos = _only(ride["gpx"], "lat_deg", "lon_deg")
    fit_hr = _only(ride["fit"], "hr_bpm")
    merged = merge([Version("gpx", gpx_pos), Version("fit", fit_hr)])
    a = merged.activity
    assert merged.channel_sources["position"] == "gpx"
    assert merged.channel_sources["hr_bpm"] == "fit"
    assert set(a.samples.columns) == {"lat_deg", "lon_deg", "hr_bpm"}

    records = _fit_records(shared / RIDE_FIT)
    points = _gpx_points(shared / RIDE_GPX)
    hr, lat, lon = _at(a, "hr_bpm"), _at(a, "lat_deg"), _at(a, "lon_deg")
    common = [t for t in records if t in points and records[t].get("heart_rate") is not None]
    assert len(common) > 2000
    for t in common:
        assert hr[t] == records[t]["heart_rate"]
        assert lat[t] == pytest.approx(points[t][0], abs=1e-9)
        assert lon[t] == pytest.approx(points[t][1], abs=1e-9)
    # Summary recomputed from the merged streams: HR from the FIT records, the
    # distance from the GPX positions (hand-rolled haversine over gpxpy's points).
    raw_hr = [r["heart_rate"] for r in records.values() if r.get("heart_rate") is not None]
    assert a.max_hr_bpm == max(raw_hr)
    assert a.avg_hr_bpm == pytest.approx(sum(raw_hr) / len(raw_hr), rel=1e-3)
    track = [points[t] for t in sorted(points)]
    expected = sum(_haversine(*p, *q) for p, q in itertools.pairwise(track))
    assert a.distance_m == pytest.approx(expected, rel=1e-3)


def _haversine(lat1, lon1, lat2, lon2):
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def test_chest_strap_heart_rate_wins_over_the_watch(ride):
    fit = ride["fit"]
    strap_hr = [None if v is None else v + 3 for v in fit.samples.columns["hr_bpm"]]
    strap = Activity(
        start=fit.start,
        sport="generic",
        samples=SampleStream(offsets_s=list(fit.samples.offsets_s), columns={"hr_bpm": strap_hr}),
        provenance=_origin("ble", "strap", source="ble:hr"),
    )
    merged = merge([Version("watch", fit), Version("strap", strap)])
    assert merged.channel_sources["hr_bpm"] == "strap"
    assert merged.channel_sources["position"] == "watch"
    assert merged.primary == "watch"  # equal span: the better format is the base
    assert merged.activity.samples.columns["hr_bpm"] == strap_hr
    assert merged.activity.sport == "cycling"
    # A FIT from an HRM product is a strap too; without either, FIT beats GPX.
    hrm = replace(ride["gpx"], device=Device(manufacturer="garmin", product="hrm_pro"))
    assert merge([Version("a", fit), Version("b", hrm)]).channel_sources["hr_bpm"] == "b"
    assert merge([Version("a", ride["gpx"]), Version("b", fit)]).channel_sources["hr_bpm"] == "b"


def test_trimmed_base_is_extended_so_no_span_is_lost(ride):
    fit = ride["fit"]
    late_fit = cut(fit, tail_s=1200)  # device stopped 20 min early
    late_gpx = cut(ride["gpx"], head_s=300)  # app cut the first 5 min
    merged = merge([Version("gpx", late_gpx), Version("fit", late_fit)])
    a = merged.activity
    assert merged.primary == "gpx"  # the wider span
    assert a.start == fit.start
    assert a.elapsed_s == pytest.approx(fit.samples.offsets_s[-1], abs=1)
    axis = [a.start + timedelta(seconds=t) for t in a.samples.offsets_s]
    assert axis == sorted(axis)
    recorded = [late_fit.start + timedelta(seconds=t) for t in late_fit.samples.offsets_s] + [
        late_gpx.start + timedelta(seconds=t) for t in late_gpx.samples.offsets_s
    ]
    # Every recorded instant has an axis point within the mapping tolerance.
    for t in recorded:
        i = bisect.bisect_left(axis, t)
        near = min(abs(axis[j] - t) for j in (i - 1, i) if 0 <= j < len(axis))
        assert near <= timedelta(seconds=2)
    assert len(axis) > len(late_gpx.samples)
    # The FIT's HR (its format ranks first) covers the early part the GPX lacks.
    hr = _at(a, "hr_bpm")
    fit_hr = _at(late_fit, "hr_bpm")
    early = [t for t in fit_hr if t < late_gpx.start - timedelta(seconds=2)]
    assert len(early) > 50 and all(hr[t] == fit_hr[t] for t in early)
    shared_times = [t for t in fit_hr if t in hr]
    assert len(shared_times) > 0.95 * len(fit_hr)
    assert all(hr[t] == fit_hr[t] for t in shared_times)


def test_shift_aligns_a_version_before_merging(ride):
    fit, gpx = ride["fit"], ride["gpx"]
    plain = merge([Version("fit", fit), Version("gpx", gpx)])
    late = merge([Version("fit", shifted(fit, hours=1), shift_s=3600), Version("gpx", gpx)])
    assert late.activity == plain.activity
    assert late.activity.laps[0].start == fit.laps[0].start
    alone = merge([Version("fit", shifted(fit, hours=-7), shift_s=-25200)]).activity
    assert alone.start == fit.start and alone.laps == fit.laps


def test_summary_recomputed_and_carried_values(ride, shared):
    merged = merge([Version("gpx", ride["gpx"]), Version("fit", ride["fit"])])
    a = merged.activity
    records = _fit_records(shared / RIDE_FIT)
    session = _fit_session(shared / RIDE_FIT)
    distances = [r["distance"] for r in records.values() if r.get("distance") is not None]
    assert a.distance_m == pytest.approx(max(distances), abs=0.01)  # FIT distance column wins
    assert a.max_hr_bpm == max(r["heart_rate"] for r in records.values() if r.get("heart_rate") is not None)
    assert a.energy_j == pytest.approx(session["total_calories"] * 4184)
    assert merged.channel_sources["energy_j"] == "fit"
    with (shared / RIDE_GPX).open() as fh:
        track_name = gpxpy.parse(fh).tracks[0].name
    assert track_name and a.name == track_name and merged.channel_sources["name"] == "gpx"
    assert merged.channel_sources["laps"] == "fit" and len(a.laps) == len(ride["fit"].laps)
    assert a.provenance == ride["fit"].provenance and merged.primary == "fit"
    assert a.device == ride["fit"].device and merged.channel_sources["device"] == "fit"
    assert a.elapsed_s == pytest.approx(session["total_elapsed_time"], abs=0.01)


def _fit_session(path: Path) -> dict:
    with fitdecode.FitReader(str(path)) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "session":
                return {f.name: f.value for f in frame.fields}
    raise AssertionError("no session")


def test_developer_columns_are_kept(shared):
    fit = _decode((shared / DEV_FIT).read_bytes(), "fit", DEV_FIT)
    gpx = _decode(export(fit, "gpx"), "gpx", "export.gpx")
    dev = [c for c in fit.samples.columns if c not in gpx.samples.columns]
    assert "Form Power" in dev
    merged = merge([Version("gpx", gpx), Version("fit", fit)])
    for column in dev:
        assert merged.channel_sources[column] == "fit"
        assert _at(merged.activity, column) == _at(fit, column)
        assert merged.activity.samples.units.get(column) == fit.samples.units.get(column)


def test_details_come_from_the_primary_else_the_richest(shared):
    rel = "fit/agpl/sportslib__suunto9baro-trail_6909950168.fit"
    fit = _decode((shared / rel).read_bytes(), "fit", rel)
    gpx = _decode(export(fit, "gpx"), "gpx", "export.gpx")
    assert fit.hrv_rr_s and fit.laps and not gpx.hrv_rr_s and not gpx.laps
    # The GPX covers more time, so it is the primary; beat intervals still come
    # from the FIT, the only version that has them.
    short_fit = replace(cut(fit, tail_s=60), hrv_rr_s=fit.hrv_rr_s)
    merged = merge([Version("fit", short_fit), Version("gpx", gpx)])
    assert merged.primary == "gpx"
    assert merged.activity.hrv_rr_s == fit.hrv_rr_s and merged.channel_sources["hrv"] == "fit"
    assert "laps" not in merged.channel_sources and merged.activity.laps == ()
    # With the full FIT present it is the primary and supplies its laps.
    full = merge([Version("fit", fit), Version("gpx", gpx)])
    assert full.primary == "fit" and full.activity.laps == fit.laps and full.channel_sources["laps"] == "fit"


def test_single_version_is_returned_unchanged(ride):
    merged = merge([Version("only", ride["gpx"])])
    assert merged.activity is ride["gpx"]
    assert merged.primary == "only" and merged.channel_sources["position"] == "only"


def test_merge_is_fast_for_two_10k_sample_versions():
    n = 10_000
    start = datetime(2024, 5, 1, 6, 0, tzinfo=timezone.utc)

    def version(key, step, source, phase):
        offsets = [i * step + phase for i in range(n)]
        columns = {
            "lat_deg": [47 + i * 1e-5 for i in range(n)],
            "lon_deg": [8 + i * 1e-5 for i in range(n)],
            "hr_bpm": [float(120 + i % 40) for i in range(n)],
        }
        act = Activity(start=start, samples=SampleStream(offsets_s=offsets, columns=columns),
                       provenance=_origin(source, key, f"file:{source}"))
        return Version(key, act)

    versions = [version("a", 1.0, "fit", 0.0), version("b", 1.0, "gpx", 0.4)]
    began = time.perf_counter()
    merge(versions)
    assert time.perf_counter() - began < 0.5


def test_policy_from_dict():
    policy = MergePolicy.from_dict({"format_rank": ["gpx", "fit"], "prefer_products": {"power_w": ["kickr"]}})
    assert policy.format_rank == ("gpx", "fit")
    assert policy.prefer_products["power_w"] == ("kickr",)
    assert policy.prefer_products["hr_bpm"] == MergePolicy().prefer_products["hr_bpm"]
    with pytest.raises(ConfigError) as err:
        MergePolicy.from_dict({"format_rank": "fit", "tolerance_s": -1, "colour": "red"})
    text = str(err.value)
    assert "format_rank" in text and "tolerance_s" in text and "colour" in text


def test_policy_changes_the_winner(ride):
    versions = [Version("fit", ride["fit"]), Version("gpx", ride["gpx"])]
    assert merge(versions).channel_sources["hr_bpm"] == "fit"
    gpx_first = MergePolicy.from_dict({"format_rank": ["gpx", "fit"]})
    assert merge(versions, gpx_first).channel_sources["hr_bpm"] == "gpx"


# ------------------------------------------------------------ order independence


@pytest.fixture(scope="module")
def ride_versions(ride) -> list[Version]:
    return [
        Version("fit", ride["fit"]),
        Version("gpx", ride["gpx"]),
        Version("tcx", ride["fit_as_tcx"]),
        Version("late", shifted(ride["gpx"], hours=1), shift_s=3600),
        Version("trim", cut(ride["fit"], head_s=300, tail_s=300)),
        Version("hr", _only(ride["fit"], "hr_bpm", source="ble:hr")),
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_merge_depends_only_on_the_set(ride_versions, data):
    chosen = data.draw(st.lists(st.sampled_from(ride_versions), min_size=1, max_size=4, unique_by=lambda v: v.key))
    reordered = data.draw(st.permutations(chosen))
    a, b = merge(chosen), merge(reordered)
    assert a.activity == b.activity
    assert a.channel_sources == b.channel_sources and a.primary == b.primary


@pytest.fixture(scope="module")
def arrivals(ride, run) -> dict[str, tuple[str, Activity]]:
    """Every version with the workout it truly belongs to."""
    fit, gpx = ride["fit"], ride["gpx"]
    return {
        "ride.fit": ("ride", fit),
        "ride.gpx": ("ride", gpx),
        "ride.export.gpx": ("ride", ride["fit_as_gpx"]),
        "ride.export.tcx": ("ride", ride["fit_as_tcx"]),
        "ride.fit+1h": ("ride", shifted(fit, hours=1)),
        "ride.gpx-7h": ("ride", shifted(gpx, hours=-7)),
        "evening": ("evening", shifted(gpx, hours=9, minutes=13, seconds=27)),
        "bob.gpx": ("bob", replace(gpx, person="bob")),
        "run.fit": ("run", run),
        "run.trimmed": ("run", cut(run, head_s=300)),
        "run.gpx": ("run", _decode(export(run, "gpx"), "gpx", "run.gpx")),
        "warm-up": ("warm-up", cut(run, head_s=30, keep_s=600)),
    }


def _store(order: list[str], arrivals) -> set[frozenset[str]]:
    """An in-memory store: each arrival joins the workout it matches, or starts one."""
    workouts: dict[int, tuple[str, list[VersionSummary]]] = {}
    for key in order:
        new = arrivals[key][1]
        lo, hi = candidate_window(new)
        candidates = [
            Candidate(id, person, tuple(vs))
            for id, (person, vs) in workouts.items()
            if person == new.person and any(lo <= v.start <= hi for v in vs)
        ]
        found = match(new, key, candidates)
        if found is None:
            workouts[len(workouts) + 1] = (new.person, [summary(key, new)])
        else:
            workouts[found.candidate_id][1].append(summary(key, new, found.shift_s))
    return {frozenset(v.key for v in vs) for _, vs in workouts.values()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_matching_outcome_does_not_depend_on_arrival_order(arrivals, data):
    order = data.draw(st.permutations(sorted(arrivals)))
    truth: dict[str, set[str]] = {}
    for key, (group, _) in arrivals.items():
        truth.setdefault(group, set()).add(key)
    assert _store(list(order), arrivals) == {frozenset(keys) for keys in truth.values()}

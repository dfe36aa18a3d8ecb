"""The model's invariants and the derived values, against hand-computed numbers."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from hub import derive
from hub.model import Activity, Measurement, SampleStream

T0 = datetime(2024, 5, 4, 7, 30, tzinfo=timezone.utc)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        Activity(start=datetime(2024, 1, 1, 8, 0))


def test_aware_datetimes_are_normalised_to_utc():
    cest = timezone(timedelta(hours=2))
    a = Activity(start=datetime(2024, 5, 4, 9, 30, tzinfo=cest))
    assert a.start == T0 and a.start.tzinfo == timezone.utc


def test_columns_must_match_offsets():
    with pytest.raises(ValueError, match="hr_bpm"):
        SampleStream(offsets_s=[0.0, 1.0], columns={"hr_bpm": [120.0]})


def test_unknown_measurement_kind_is_refused():
    with pytest.raises(ValueError, match="unknown measurement kind"):
        Measurement(kind="weight_lb", time=T0, value=150)


def test_haversine_one_degree_of_latitude():
    # One degree of latitude on a sphere of the mean Earth radius: 2*pi*R/360.
    assert derive.haversine_m(0, 0, 1, 0) == pytest.approx(2 * math.pi * derive.EARTH_RADIUS_M / 360, rel=1e-9)
    assert derive.haversine_m(52.0, 13.0, 52.0, 13.0) == 0


def test_cumulative_distance_skips_gaps():
    lat = [0.0, None, 0.001, 0.002]
    lon = [0.0, None, 0.0, 0.0]
    dist = derive.cumulative_distance(lat, lon)
    step = derive.haversine_m(0, 0, 0.001, 0)
    assert dist[0] == 0 and dist[1] is None
    assert dist[2] == pytest.approx(step) and dist[3] == pytest.approx(2 * step)


def test_elevation_gain_ignores_noise_below_threshold():
    # +-1 m jitter around 100 m, then a real 10 m climb and a 6 m drop.
    alt = [100, 101, 99, 100, 101, 110, 111, 109, 104, None, 104]
    up, down = derive.elevation_gain(alt, threshold_m=3.0)
    assert up == pytest.approx(10)  # 100 -> 110 once the band is left
    assert down == pytest.approx(6)  # 110 -> 104


def test_moving_time_excludes_stops_and_long_gaps():
    offsets = [0, 1, 2, 3, 4, 100, 101]
    speed = [3.0, 3.0, 0.0, 0.0, 3.0, 3.0, 3.0]
    # moving intervals ending at 1, 4, 101 count; 2 and 3 are stopped; 4->100 is a pause
    assert derive.moving_time(offsets, None, speed) == pytest.approx(3.0)


def test_fill_summary_derives_only_what_is_missing():
    n = 61
    offsets = [float(i) for i in range(n)]
    lat = [47.0 + i * 0.0001 for i in range(n)]
    samples = SampleStream(
        offsets_s=offsets,
        columns={
            "lat_deg": lat,
            "lon_deg": [8.0] * n,
            "altitude_m": [400.0 + i * 0.5 for i in range(n)],
            "hr_bpm": [float(120 + i) if i % 10 else None for i in range(n)],
        },
    )
    a = derive.fill_summary(Activity(start=T0, samples=samples, max_hr_bpm=200.0))
    expected_distance = derive.haversine_m(47.0, 8.0, lat[-1], 8.0)
    assert a.elapsed_s == 60
    assert a.distance_m == pytest.approx(expected_distance, rel=1e-6)
    assert a.ascent_m == pytest.approx(30, abs=3)
    assert a.max_hr_bpm == 200.0  # the device's value wins
    hrs = [120 + i for i in range(n) if i % 10]
    assert a.avg_hr_bpm == pytest.approx(sum(hrs) / len(hrs))
    assert a.moving_s == pytest.approx(60)
    assert a.avg_speed_mps == pytest.approx(expected_distance / 60, rel=1e-6)

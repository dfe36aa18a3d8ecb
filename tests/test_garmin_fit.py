"""Garmin monitoring and sleep FIT decoding, checked against the constants the
synthetic files were written from (fixtures/make_garmin_fit.py)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.garmin import MONITORING, SLEEP
from connectors.garmin.formats import decoders, sniff
from connectors.garmin.monitoring import decode_monitoring
from connectors.garmin.sleep import decode_sleep
from hub.model import Provenance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import make_garmin_fit as fx  # noqa: E402

ORIGIN = Provenance(source="test:fit", sha256=None, received_at=datetime(2024, 5, 1, tzinfo=timezone.utc), name="t.fit")


@pytest.fixture(scope="module")
def monitor_bytes() -> bytes:
    return fx.monitor_b()


@pytest.fixture(scope="module")
def sleep_bytes() -> bytes:
    return fx.sleep()


def by_kind(decoded, kind: str) -> dict[datetime, float]:
    return {m.time: m.value for m in decoded.measurements if m.kind == kind}


def test_committed_fixtures_match_the_generator(own: Path, monitor_bytes: bytes, sleep_bytes: bytes) -> None:
    assert (own / "garmin" / "monitor_b.fit").read_bytes() == monitor_bytes
    assert (own / "garmin" / "sleep.fit").read_bytes() == sleep_bytes


def test_steps_per_interval_follow_daily_resets(monitor_bytes: bytes) -> None:
    decoded = decode_monitoring(monitor_bytes, ORIGIN)
    assert decoded.warnings == []
    assert by_kind(decoded, "steps") == fx.EXPECTED_STEP_INTERVALS
    assert by_kind(decoded, "steps_day_cumulative") == fx.EXPECTED_DAY_CUMULATIVE


def test_heart_rate_from_timestamp_16(monitor_bytes: bytes) -> None:
    decoded = decode_monitoring(monitor_bytes, ORIGIN)
    assert by_kind(decoded, "hr_bpm") == dict(fx.HR_SAMPLES)


def test_stress_skips_not_measured_and_resting_hr_is_todays(monitor_bytes: bytes) -> None:
    decoded = decode_monitoring(monitor_bytes, ORIGIN)
    assert by_kind(decoded, "stress_score") == fx.EXPECTED_STRESS
    assert by_kind(decoded, "resting_hr_bpm") == {fx.RESTING_HR_TIME: fx.RESTING_HR_TODAY}
    assert all(m.provenance == ORIGIN for m in decoded.measurements)


def test_sleep_stages_and_duration(sleep_bytes: bytes) -> None:
    decoded = decode_sleep(sleep_bytes, ORIGIN)
    found = {m.kind: (m.time, m.value) for m in decoded.measurements}
    assert found == {kind: (fx.SLEEP_END, value) for kind, value in fx.EXPECTED_SLEEP.items()}


def test_sniffing_routes_watch_files_to_their_decoders(shared: Path, monitor_bytes: bytes, sleep_bytes: bytes) -> None:
    activity = (shared / "fit" / "fitparse__garmin-fenix-5-run.fit").read_bytes()
    assert sniff("a.fit", monitor_bytes) == "garmin_monitoring" == MONITORING.format
    assert sniff("a.fit", sleep_bytes) == "garmin_sleep" == SLEEP.format
    assert sniff("a.fit", activity) == "fit"
    assert MONITORING.sniff("a.fit", monitor_bytes[:512]) and not MONITORING.sniff("a.fit", activity[:512])
    assert SLEEP.sniff("a.fit", sleep_bytes[:512]) and not SLEEP.sniff("a.fit", monitor_bytes[:512])
    assert set(decoders()) >= {"fit", "gpx", "tcx", "garmin_monitoring", "garmin_sleep"}


def test_truncated_monitoring_file_keeps_what_came_before(monitor_bytes: bytes) -> None:
    cut = monitor_bytes[: len(monitor_bytes) * 2 // 3]
    decoded = decode_monitoring(cut, ORIGIN)
    assert decoded.warnings and "damaged" in decoded.warnings[0]
    full = decode_monitoring(monitor_bytes, ORIGIN).measurements
    assert 0 < len(decoded.measurements) < len(full)
    # Intervals and samples are a subset; the day's running total is simply the
    # latest the damaged file still shows.
    assert {m for m in decoded.measurements if m.kind != "steps_day_cumulative"} <= set(full)


def test_garbage_is_a_decode_error_naming_the_file() -> None:
    from hub.errors import DecodeError

    with pytest.raises(DecodeError) as info:
        decode_monitoring(b"\x0e\x10\x00\x00\x10\x00\x00\x00.FIT" + b"\xff" * 40, ORIGIN)
    assert "t.fit" in str(info.value)


def test_activity_file_is_not_monitoring(shared: Path) -> None:
    activity = (shared / "fit" / "fitparse__garmin-fenix-5-run.fit").read_bytes()
    decoded = decode_monitoring(activity, ORIGIN)
    assert decoded.not_activity and not decoded.measurements


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from connectors.garmin.connect_export import decode_summary  # noqa: E402
from connectors.garmin.connect_json import decode as decode_json  # noqa: E402
from hub.errors import DecodeError  # noqa: E402
from hub.model import Decoded  # noqa: E402

_MONITOR = fx.monitor_b()
_SLEEP = fx.sleep()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["monitor", "sleep"]), cut=st.integers(0, 4000), flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6))
def test_damaged_watch_files_never_crash(which: str, cut: int, flips) -> None:
    data = bytearray(_MONITOR if which == "monitor" else _SLEEP)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    data = bytes(data[: max(cut, 1)] if cut < len(data) else data)
    for decode in (decode_monitoring, decode_sleep):
        try:
            assert isinstance(decode(data, ORIGIN), Decoded)
        except DecodeError:
            pass


@settings(max_examples=150, deadline=None)
@given(doc=st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8), lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(["activityId", "summaryDTO", "startTimeGMT", "startTimeGmt", "distance", "duration", "elapsedDuration", "activityType", "calories", "avgSpeed", "startTimeLocal", "parent"]), kids, max_size=6), max_leaves=20))
def test_arbitrary_connect_json_never_crashes(doc) -> None:
    import json

    data = json.dumps(doc).encode()
    for decode in (decode_json, decode_summary):
        try:
            assert isinstance(decode(data, ORIGIN), Decoded)
        except DecodeError:
            pass

"""GPX decoder against the real-world corpus and hand-written samples.

Expected values come from an independent reading of the same bytes with the stdlib
ElementTree or plain regular expressions (the corpus files are trusted here), from
the FIT recording of the same ride, or from numbers written into the fixtures.
"""

from __future__ import annotations

import math
import random
import re
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.files.gpx import decode_gpx, sport_of
from hub.errors import DecodeError
from hub.model import CHANNELS, Decoded, Provenance

SHARED_GPX_DIRS = ("gpx", "gpx/gpxpy", "gpx/agpl")
GPS_EPOCH = datetime(1980, 1, 6, tzinfo=timezone.utc)


def origin(name: str) -> Provenance:
    return Provenance(source="file:gpx", sha256=None, received_at=datetime.now(timezone.utc), name=name)


def decode(path: Path) -> Decoded:
    return decode_gpx(path.read_bytes(), origin(path.name))


def corpus_files() -> list[Path]:
    from conftest import SHARED  # the same path the `shared` fixture serves

    files = [p for d in SHARED_GPX_DIRS for p in sorted((SHARED / d).glob("*.gpx"))]
    files += sorted((SHARED / "apple_health").glob("**/workout-routes/*.gpx"))
    return files


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def independent_tracks(path: Path) -> list[dict]:
    """Per <trk>: the usable points (finite in-range coordinates, a real time) and the HR values."""
    root = ET.parse(path).getroot()
    tracks = []
    for trk in (e for e in root if local(e.tag) == "trk"):
        times, hrs = [], []
        points = [e for e in trk.iter() if local(e.tag) == "trkpt"]
        for pt in points:
            lat, lon = float(pt.get("lat")), float(pt.get("lon"))
            if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
                continue
            stamp = next((e.text for e in pt if local(e.tag) == "time"), None)
            if not stamp or utc(stamp) < GPS_EPOCH:
                continue
            times.append(utc(stamp))
            hr = [float(e.text) for e in pt.iter() if local(e.tag) in ("hr", "heartrate")]
            if hr:
                hrs.append(hr[0])
        tracks.append({"times": times, "hrs": hrs, "points": len(points)})
    return tracks


# ------------------------------------------------------------------ the corpus


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p).split("fixtures/")[-1])
def test_every_corpus_gpx_decodes_or_is_rejected_with_a_reason(path: Path, shared: Path) -> None:
    result = decode(path)
    expected = [t for t in independent_tracks(path) if t["times"]]
    if not expected:
        assert result.activities == []
        assert result.not_activity and "not an activity" in result.not_activity
        return
    assert result.not_activity is None
    # One activity per track with timed points, in file order.
    assert len(result.activities) == len(expected)
    for activity, track in zip(result.activities, expected):
        assert len(activity.samples) == len(track["times"])
        assert activity.start == min(track["times"])
        assert activity.start.tzinfo is not None and activity.start.utcoffset().total_seconds() == 0
        assert activity.elapsed_s == pytest.approx((max(track["times"]) - min(track["times"])).total_seconds())
        assert activity.provenance is not None and activity.provenance.name == path.name
        assert activity.person == "default"
        assert activity.source_id is None
        assert set(activity.samples.columns) <= set(CHANNELS)
        assert min(activity.samples.offsets_s) == 0.0
        if track["hrs"]:
            assert activity.max_hr_bpm == max(track["hrs"])
            assert activity.samples.values("hr_bpm") == track["hrs"]
        else:
            assert "hr_bpm" not in activity.samples.columns
        lats = activity.samples.values("lat_deg")
        assert lats and all(-90 <= v <= 90 for v in lats)


def test_same_ride_as_gpx_and_fit_agrees(shared: Path) -> None:
    fitdecode = pytest.importorskip("fitdecode")
    gpx = decode(shared / "gpx/agpl/sportslib__edge1000-ride_3939576645.gpx").activities[0]
    records, heart = [], []
    with fitdecode.FitReader(str(shared / "fit/agpl/sportslib__edge1000-ride_3939576645.fit")) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "record":
                records.append(frame.get_value("timestamp"))
                if frame.has_field("heart_rate") and frame.get_value("heart_rate") is not None:
                    heart.append(frame.get_value("heart_rate"))
    assert len(gpx.samples) == len(records)
    assert gpx.start == records[0]
    assert gpx.elapsed_s == (records[-1] - records[0]).total_seconds()
    assert gpx.max_hr_bpm == max(heart)
    assert (gpx.sport, gpx.sub_sport) == ("cycling", "road")  # <type>road_biking</type>
    assert gpx.samples.values("temperature_c")  # Garmin <ns3:atemp>


def test_gpx_10_speed_element_is_read(shared: Path) -> None:
    path = shared / "gpx/gpxpy/track_with_speed.gpx"
    speeds = [float(v) for v in re.findall(r"<speed>([^<]+)</speed>", path.read_text())]
    activity = decode(path).activities[0]
    assert activity.samples.column("speed_mps") == speeds


def test_trackpointextension_v1_values(shared: Path) -> None:
    path = shared / "gpx/runpandas__garmin_connect.gpx"
    text = path.read_text()
    assert "TrackPointExtension/v1" in text
    activity = decode(path).activities[0]
    assert activity.samples.column("hr_bpm") == [float(v) for v in re.findall(r"<ns3:hr>(\d+)<", text)]
    assert activity.samples.column("cadence_rpm") == [float(v) for v in re.findall(r"<ns3:cad>(\d+)<", text)]
    assert activity.sport == "running"


def test_trackpointextension_v2_with_power_and_segments_joined(shared: Path) -> None:
    path = shared / "gpx/opentracks__legacy_gpx_trackpointextensions_incorrect.gpx"
    text = path.read_text()
    assert "TrackPointExtension/v2" in text and text.count("<trkseg>") == 3
    result = decode(path)
    assert len(result.activities) == 1  # three segments, one workout
    activity = result.activities[0]
    assert len(activity.samples) == text.count("<trkpt")
    assert activity.samples.column("hr_bpm") == [None, 69.0, None, None, None]
    assert activity.samples.column("power_w") == [None, 50.0, None, None, None]
    assert activity.samples.column("speed_mps") == [float(v) for v in re.findall(r"<gpxtpx:speed>([^<]+)<", text)]
    assert (activity.sport, activity.sub_sport) == ("cycling", "mountain")  # "mountain biking"


def test_time_offsets_become_utc(shared: Path) -> None:
    activity = decode(shared / "gpx/opentracks__gpx_timezone.gpx").activities[0]
    # 2021-01-07T21:51:59.179+01:15 in the file
    assert activity.start == datetime(2021, 1, 7, 20, 36, 59, 179000, tzinfo=timezone.utc)


def test_pause_markers_outside_the_globe_are_dropped_with_a_count(shared: Path) -> None:
    path = shared / "gpx/opentracks__legacy_gpx_pause_resume.gpx"
    bad = len(re.findall(r'<trkpt lat="(?:100|200)"', path.read_text()))
    activity = decode(path).activities[0]
    assert bad == 2
    assert any(f"dropped {bad} track point(s) with invalid coordinates" in w for w in activity.warnings)
    assert len(activity.samples) == path.read_text().count("<trkpt") - bad


def test_one_activity_per_timed_track(shared: Path) -> None:
    path = shared / "gpx/gpxpy/cerknicko-jezero.gpx"
    tracks = [t for t in independent_tracks(path) if t["times"]]
    result = decode(path)
    assert len(tracks) > 1
    assert [a.start for a in result.activities] == [min(t["times"]) for t in tracks]


def test_untimed_tracks_next_to_timed_ones_are_skipped_with_a_warning(shared: Path) -> None:
    path = shared / "gpx/gpxpy/cerknicko-without-times.gpx"
    tracks = independent_tracks(path)
    result = decode(path)
    timed = sum(1 for t in tracks if t["times"])
    untimed = sum(1 for t in tracks if t["points"] and not t["times"])
    assert untimed and len(result.activities) == timed
    assert sum("no timestamps" in w for w in result.warnings) == untimed


@pytest.mark.parametrize(
    "relpath, reason",
    [
        ("gpx/gpxpy/route.gpx", "route"),
        ("gpx/fittool__old_stage_left_hand_lee.gpx", "no timestamps"),
        ("gpx/gpxpy/track-with-extremes.gpx", "no timestamps"),
        ("gpx/gpxpy/gpx_with_garmin_extension.gpx", "waypoints"),
        ("gpx/gpxpy/unicode_with_bom.gpx", "waypoints"),
        # every point carries 1901-12-13T20:45:52Z, the 32-bit time placeholder
        ("gpx/gpxpy/Mojstrovka.gpx", "no timestamps"),
    ],
)
def test_routes_waypoints_and_untimed_tracks_are_not_activities(shared: Path, relpath: str, reason: str) -> None:
    result = decode(shared / relpath)
    assert result.activities == []
    assert reason in result.not_activity and "not an activity" in result.not_activity


def test_sport_mapping() -> None:
    assert sport_of("9") == ("running", None)  # Strava's numeric running type
    assert sport_of("1") == ("cycling", None)
    assert sport_of("Ride") == ("cycling", None)
    assert sport_of("road_biking") == ("cycling", "road")
    assert sport_of("Mountain Biking") == ("cycling", "mountain")
    assert sport_of("trail-running") == ("running", "trail")
    assert sport_of("Hike") == ("hiking", None)
    assert sport_of("open_water_swimming") == ("swimming", "open_water")
    assert sport_of("the category") == ("generic", None)
    assert sport_of(None) == ("generic", None)


def test_strava_numeric_type(shared: Path) -> None:
    path = shared / "gpx/runpandas__strava_export.gpx"
    assert "<type>9</type>" in path.read_text()
    assert decode(path).activities[0].sport == "running"


# ---------------------------------------------------------- hand-written samples


def test_showcase_morning_run(own: Path) -> None:
    path = own / "samples" / "morning_run.gpx"
    text = path.read_text()
    times = [utc(t) for t in re.findall(r"<time>([^<]+)</time>", text)[1:]]  # [0] is <metadata>
    hrs = [float(v) for v in re.findall(r"<gpxtpx:hr>(\d+)<", text)]
    watts = [float(v) for v in re.findall(r"<power>(\d+)<", text)]
    activity = decode(path).activities[0]
    assert len(activity.samples) == text.count("<trkpt") == len(times) >= 300
    assert (activity.sport, activity.name) == ("running", "Morning Run")
    assert activity.start == times[0] == datetime(2024, 5, 18, 6, 12, tzinfo=timezone.utc)
    assert activity.elapsed_s == (times[-1] - times[0]).total_seconds()
    assert activity.max_hr_bpm == max(hrs)
    assert activity.avg_hr_bpm == pytest.approx(sum(hrs) / len(hrs))
    assert activity.max_power_w == max(watts)
    # The generator ran the loop for 5 km along a dense ellipse; samples every 4 s
    # cut its curves slightly.
    assert 4850 < activity.distance_m < 5050
    # 24 s at a crossing standing still: moving time is shorter than elapsed.
    assert activity.moving_s is not None and activity.elapsed_s - 60 < activity.moving_s < activity.elapsed_s
    assert activity.ascent_m and activity.ascent_m > 10
    assert set(activity.samples.columns) == {
        "lat_deg", "lon_deg", "altitude_m", "hr_bpm", "cadence_rpm", "power_w", "temperature_c"
    }


def test_power_in_any_namespace_and_extension_versions(own: Path) -> None:
    activity = decode(own / "power_ext.gpx").activities[0]
    cols = activity.samples.columns
    assert cols["power_w"] == [201.0, 245.0, 310.0, None]  # bare, Garmin PowerExtension, foreign ns
    assert cols["hr_bpm"] == [121.0, 127.0, 133.0, 138.0]  # v1 then v2
    assert cols["cadence_rpm"] == [85.0, 88.0, None, 91.0]
    assert cols["temperature_c"] == [17.5, None, 18.0, None]  # wtemp, atemp
    assert cols["speed_mps"] == [None, None, 6.4, 6.9]
    assert activity.samples.offsets_s == [0.0, 10.0, 20.0, 30.0]
    assert activity.sport == "cycling"
    assert activity.avg_power_w == pytest.approx((201 + 245 + 310) / 3)


def test_bom_leading_whitespace_and_utf8_names(own: Path) -> None:
    raw = (own / "bom_utf8.gpx").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf\n")
    activity = decode(own / "bom_utf8.gpx").activities[0]
    assert activity.name == "Rundgang am Zürichsee"
    assert activity.samples.column("speed_mps") == [1.40, 1.55, 1.60, 1.50]  # GPX 1.0 <speed>
    assert activity.start == datetime(2023, 9, 2, 9, 0, tzinfo=timezone.utc)


def test_utf16_and_declared_latin1_encodings(own: Path) -> None:
    text = (own / "bom_utf8.gpx").read_bytes().decode("utf-8-sig")
    as_utf16 = decode_gpx(text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"), origin("u16.gpx"))
    assert as_utf16.activities[0].name == "Rundgang am Zürichsee"
    latin1 = text.lstrip().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")
    assert decode_gpx(latin1, origin("l1.gpx")).activities[0].name == "Rundgang am Zürichsee"


def test_bad_coordinates_dropped_with_count_and_naive_times_are_utc(own: Path) -> None:
    activity = decode(own / "bad_coords.gpx").activities[0]
    assert activity.samples.offsets_s == [0.0, 10.0, 20.0, 35.0, 40.0]
    assert activity.samples.column("lat_deg") == [48.85, 48.8501, 48.8502, 48.8505, 48.8506]
    assert any("dropped 4 track point(s) with invalid coordinates" in w for w in activity.warnings)
    assert activity.start == datetime(2021, 3, 14, 8, 0, tzinfo=timezone.utc)


def test_route_only_file(own: Path) -> None:
    result = decode(own / "route_only.gpx")
    assert result.not_activity == "GPX has a route but no timed track: not an activity"
    assert result.activities == [] and result.measurements == []


# ------------------------------------------------------------------ failures


def test_entity_bomb_is_refused_quickly(own: Path) -> None:
    began = time.monotonic()
    with pytest.raises(DecodeError) as info:
        decode(own / "billion_laughs.gpx")
    assert time.monotonic() - began < 1.0
    assert info.value.name == "billion_laughs.gpx"
    assert "entit" in info.value.why
    assert info.value.where == "line 3, column 16"  # the first <!ENTITY declaration


def test_external_entity_is_refused() -> None:
    doc = (
        b'<?xml version="1.0"?>\n<!DOCTYPE gpx [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        b'<gpx version="1.1" creator="&x;"><trk><trkseg><trkpt lat="1" lon="1"><time>2020-01-01T00:00:00Z</time>'
        b"</trkpt></trkseg></trk></gpx>"
    )
    with pytest.raises(DecodeError, match="refused"):
        decode_gpx(doc, origin("xxe.gpx"))


def test_truncated_xml_names_line_and_column(own: Path) -> None:
    raw = (own / "samples" / "morning_run.gpx").read_bytes()
    cut = raw[: len(raw) // 2]
    with pytest.raises(DecodeError) as info:
        decode_gpx(cut, origin("cut.gpx"))
    lines = cut.decode().split("\n")
    assert info.value.where == f"line {len(lines)}, column {len(lines[-1]) + 1}"
    assert isinstance(info.value.__cause__, ET.ParseError)


def test_position_counts_stripped_leading_lines() -> None:
    with pytest.raises(DecodeError) as info:
        decode_gpx(b'\n\n<?xml version="1.0"?>\n<gpx version="1.1"><trk></gpx>', origin("x.gpx"))
    # line 4 of the original bytes, not line 2 of what the parser saw
    assert info.value.where.startswith("line 4, column ")


def test_not_a_gpx_root(shared: Path) -> None:
    with pytest.raises(DecodeError, match="not <gpx>"):
        decode_gpx((shared / "tcx/tcxparser__test.tcx").read_bytes(), origin("really.tcx"))


def test_invalid_gpx_content_is_one_chained_error() -> None:
    doc = b'<gpx version="1.1"><trk><trkseg><trkpt lat="1x" lon="1"><time>2020-01-01T00:00:00Z</time></trkpt></trkseg></trk></gpx>'
    with pytest.raises(DecodeError) as info:
        decode_gpx(doc, origin("t.gpx"))
    assert info.value.name == "t.gpx" and "1x" in info.value.why
    assert info.value.__cause__ is not None


def test_unreadable_times_make_points_untimed() -> None:
    doc = b'<gpx version="1.1"><trk><trkseg><trkpt lat="1" lon="1"><time>yesterday</time></trkpt></trkseg></trk></gpx>'
    assert "no timestamps" in decode_gpx(doc, origin("t.gpx")).not_activity


def test_absurd_nesting_is_refused_not_crashed() -> None:
    # Deep-copying a tree this deep recurses in C and would kill the interpreter.
    depth = 200_000
    doc = (
        b'<gpx version="1.1"><trk><trkseg><trkpt lat="1" lon="1"><time>2020-01-01T00:00:00Z</time><extensions>'
        + b"<a>" * depth + b"</a>" * depth + b"</extensions></trkpt></trkseg></trk></gpx>"
    )
    with pytest.raises(DecodeError, match="nest deeper"):
        decode_gpx(doc, origin("deep.gpx"))


def test_crafted_namespace_like_text_stays_fast() -> None:
    # " xmlns" with no "=" after it made gpxpy's own text preprocessing quadratic.
    doc = b'<gpx version="1.1"><metadata><desc>' + b" xmlns" * 200_000 + b"</desc></metadata></gpx>"
    began = time.monotonic()
    assert decode_gpx(doc, origin("x.gpx")).not_activity == "GPX holds no track points: not an activity"
    assert time.monotonic() - began < 2.0


def test_prefixed_gpx_namespace() -> None:
    doc = (
        b'<g:gpx xmlns:g="http://www.topografix.com/GPX/1/1" version="1.1"><g:trk><g:type>run</g:type><g:trkseg>'
        b'<g:trkpt lat="1.5" lon="2.5"><g:time>2020-01-01T00:00:00Z</g:time></g:trkpt></g:trkseg></g:trk></g:gpx>'
    )
    activity = decode_gpx(doc, origin("p.gpx")).activities[0]
    assert (activity.sport, activity.samples.column("lat_deg")) == ("running", [1.5])


def test_mutants_never_escape_as_foreign_errors(shared: Path, own: Path) -> None:
    rng = random.Random(7)
    seeds = [own / "power_ext.gpx", shared / "gpx/runpandas__garmin_connect.gpx", own / "bad_coords.gpx"]
    for n in range(300):
        data = bytearray(seeds[n % len(seeds)].read_bytes())
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.5:
                data[i] = rng.randrange(256)
            elif choice < 0.75:
                del data[i : i + rng.randint(1, 20)]
            else:
                data[i:i] = bytes(rng.choice([b"<", b"&", b"NaN", b"-999", b"\x00", b"]]>", b"9" * 40]))
        try:
            result = decode_gpx(bytes(data), origin(f"mutant{n}.gpx"))
        except DecodeError:
            continue
        assert isinstance(result, Decoded)


def test_fithub_distance_extension_is_read_back_and_others_ignored():
    from datetime import datetime, timezone

    from connectors.files.gpx import decode_gpx
    from hub.model import Provenance

    def gpx(ns: str) -> bytes:
        pts = "".join(
            f'<trkpt lat="47.0" lon="{8.0 + i * 0.001}"><time>2024-05-01T10:00:{i:02d}Z</time>'
            f"<extensions><d:distance>{i * 80.0}</d:distance></extensions></trkpt>"
            for i in range(3)
        )
        return (f'<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1" xmlns:d="{ns}">'
                f"<trk><trkseg>{pts}</trkseg></trk></gpx>").encode()

    origin = Provenance(source="t", sha256=None, received_at=datetime.now(timezone.utc), name="d.gpx")
    ours = decode_gpx(gpx("urn:fithub:gpx:1"), origin).activities[0]
    assert ours.samples.columns["distance_m"] == [0.0, 80.0, 160.0]
    assert ours.distance_m == 160.0
    theirs = decode_gpx(gpx("http://www.cluetrust.com/XML/GPXDATA/1/0"), origin).activities[0]
    assert "distance_m" not in theirs.samples.columns
    # Positions 0.001 deg of longitude apart at 47 N: about 76 m per step.
    assert theirs.distance_m == pytest.approx(2 * 75.85, rel=0.01)

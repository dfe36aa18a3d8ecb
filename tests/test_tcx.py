"""TCX decoder against the real-world corpus and hand-written samples.

Expected values come from an independent reading of the same bytes with the stdlib
ElementTree or regular expressions (the corpus files are trusted here), or from
numbers written into the hand-made fixtures.
"""

from __future__ import annotations

import random
import re
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.files.tcx import decode_tcx
from hub.errors import DecodeError
from hub.model import CHANNELS, Decoded, Provenance

SPORT = {"Running": "running", "Biking": "cycling", "Other": "generic"}


def origin(name: str) -> Provenance:
    return Provenance(source="file:tcx", sha256=None, received_at=datetime.now(timezone.utc), name=name)


def decode(path: Path) -> Decoded:
    return decode_tcx(path.read_bytes(), origin(path.name))


def corpus_files() -> list[Path]:
    from conftest import SHARED

    return sorted((SHARED / "tcx").glob("*.tcx")) + sorted((SHARED / "tcx/agpl").glob("*.tcx"))


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def kids(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element if local(e.tag) == name]


def values(element: ET.Element, *path: str) -> list[float]:
    """Numbers at a child path, e.g. values(lap, "AverageHeartRateBpm", "Value")."""
    found = [element]
    for name in path:
        found = [c for e in found for c in kids(e, name)]
    return [float(e.text) for e in found]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.strip()).astimezone(timezone.utc)


def independent(path: Path) -> list[dict]:
    """What each <Activity> holds, read with the stdlib parser."""
    root = ET.parse(path).getroot()
    out = []
    for act in (e for e in root.iter() if local(e.tag) == "Activity"):
        laps = kids(act, "Lap")
        points = [p for lap in laps for tr in kids(lap, "Track") for p in kids(tr, "Trackpoint")]
        timed = [p for p in points if kids(p, "Time")]
        out.append(
            {
                "sport": act.get("Sport"),
                "id": kids(act, "Id")[0].text.strip(),
                "lap_starts": [utc(lap.get("StartTime")) for lap in laps],
                "lap_time": [values(lap, "TotalTimeSeconds")[0] for lap in laps],
                "lap_distance": [values(lap, "DistanceMeters")[0] for lap in laps],
                "kcal": [values(lap, "Calories")[0] for lap in laps],
                "lap_max_hr": [v for lap in laps for v in values(lap, "MaximumHeartRateBpm", "Value")],
                "times": [utc(kids(p, "Time")[0].text) for p in timed],
                "hr": [v for p in timed for v in values(p, "HeartRateBpm", "Value")],
                "creator": [e.text for c in kids(act, "Creator") for e in kids(c, "Name")],
            }
        )
    return out


# ------------------------------------------------------------------ the corpus


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p).split("fixtures/")[-1])
def test_every_corpus_tcx_matches_an_independent_reading(path: Path, shared: Path) -> None:
    result = decode(path)
    expected = independent(path)
    assert result.not_activity is None
    assert len(result.activities) == len(expected)
    for activity, want in zip(result.activities, expected):
        assert activity.sport == SPORT[want["sport"]]
        assert activity.source_id == f"tcx:{want['id']}"
        assert activity.provenance is not None and activity.provenance.name == path.name
        assert activity.start == min([utc(want["id"]), want["lap_starts"][0], want["times"][0]])
        assert activity.elapsed_s == (max(want["times"]) - activity.start).total_seconds()
        # Laps: count, starts, timer time, distance, energy, as the file states them.
        assert [lap.start for lap in activity.laps] == want["lap_starts"]
        assert [lap.moving_s for lap in activity.laps] == want["lap_time"]
        assert [lap.distance_m for lap in activity.laps] == want["lap_distance"]
        assert [lap.energy_j for lap in activity.laps] == [k * 4184 for k in want["kcal"]]
        assert activity.moving_s == pytest.approx(sum(want["lap_time"]))
        assert activity.distance_m == pytest.approx(sum(want["lap_distance"]))
        assert activity.energy_j == (pytest.approx(sum(want["kcal"]) * 4184) if sum(want["kcal"]) else None)
        # Samples: every timed trackpoint, offsets from the start, HR as recorded.
        assert len(activity.samples) == len(want["times"])
        assert activity.samples.offsets_s[0] == (want["times"][0] - activity.start).total_seconds()
        assert activity.samples.values("hr_bpm") == want["hr"]
        assert set(activity.samples.columns) <= set(CHANNELS)
        if want["lap_max_hr"]:
            assert activity.max_hr_bpm == max(want["lap_max_hr"])
        elif want["hr"]:
            assert activity.max_hr_bpm == max(want["hr"])
        assert (activity.device.product if activity.device else None) == (want["creator"][0] if want["creator"] else None)


def test_lap_details_of_a_garmin_export(shared: Path) -> None:
    path = shared / "tcx/runpandas__fr620_run_garmin.tcx"
    text = path.read_text()
    activity = decode(path).activities[0]
    lap = activity.laps[0]
    assert lap.avg_hr_bpm == 137 and lap.max_hr_bpm == 150 and lap.max_speed_mps == pytest.approx(3.0420000553131104)
    assert [lap.avg_cadence_rpm for lap in activity.laps] == [float(v) for v in re.findall(r"<ns3:AvgRunCadence>(\d+)<", text)]
    assert [lap.max_cadence_rpm for lap in activity.laps] == [float(v) for v in re.findall(r"<ns3:MaxRunCadence>(\d+)<", text)]
    assert [lap.avg_speed_mps for lap in activity.laps] == [float(v) for v in re.findall(r"<ns3:AvgSpeed>([^<]+)<", text)]
    assert [lap.trigger for lap in activity.laps] == [t.lower() for t in re.findall(r"<TriggerMethod>(\w+)<", text)]
    # Elapsed runs to the next lap's start.
    assert activity.laps[0].elapsed_s == (activity.laps[1].start - activity.laps[0].start).total_seconds()
    assert activity.samples.values("speed_mps") == [float(v) for v in re.findall(r"<ns3:Speed>([^<]+)<", text)]
    assert activity.samples.values("cadence_rpm") == [float(v) for v in re.findall(r"<ns3:RunCadence>(\d+)<", text)]
    assert activity.device.serial_number == 3878368635 and activity.device.software_version == "3.30"


def test_trackpoints_without_hr_have_no_hr_column(shared: Path) -> None:
    activity = decode(shared / "tcx/tcxparser__no_hr.tcx").activities[0]
    assert "hr_bpm" not in activity.samples.columns
    assert activity.avg_hr_bpm is None and activity.max_hr_bpm is None
    assert [lap.trigger for lap in activity.laps] == ["distance", "distance", "manual"]


def test_malformed_tcx_names_line_and_column(shared: Path) -> None:
    path = shared / "tcx/broken/runpandas__malformed.tcx"
    with pytest.raises(DecodeError) as info:
        decode(path)
    err = info.value
    assert err.name == path.name
    match = re.fullmatch(r"line (\d+), column (\d+)", err.where)
    assert match
    # Without the root element its namespace declarations are missing, so the parser
    # stops at the first use of the xsi: prefix.
    lines = path.read_text().split("\n")
    first_xsi = next(i for i, line in enumerate(lines, start=1) if "xsi:" in line)
    assert int(match.group(1)) == first_xsi
    assert "unbound prefix" in err.why
    assert isinstance(err.__cause__, ET.ParseError)


def test_large_polar_file_is_fast(shared: Path) -> None:
    path = shared / "tcx/agpl/sportslib__polar-v800.tcx"
    began = time.monotonic()
    activity = decode(path).activities[0]
    assert time.monotonic() - began < 5.0
    assert len(activity.samples) == path.read_text().count("<Trackpoint>")


# ---------------------------------------------------------- hand-written samples


def test_showcase_evening_ride(own: Path) -> None:
    path = own / "samples" / "evening_ride.tcx"
    want = independent(path)[0]
    text = path.read_text()
    activity = decode(path).activities[0]
    assert (activity.sport, activity.device.product) == ("cycling", "Edge 530")
    assert activity.start == datetime(2024, 5, 21, 17, 40, tzinfo=timezone.utc)
    assert len(activity.laps) == 2 and len(activity.samples) == len(want["times"]) >= 300
    assert [lap.distance_m for lap in activity.laps] == want["lap_distance"]
    assert [lap.trigger for lap in activity.laps] == ["distance", "manual"]
    watts = [float(v) for v in re.findall(r"<ns3:Watts>(\d+)<", text)]
    assert activity.samples.values("power_w") == watts
    lap_watts = [float(v) for v in re.findall(r"<ns3:AvgWatts>(\d+)<", text)]
    assert [lap.avg_power_w for lap in activity.laps] == lap_watts
    # Lap averages combine weighted by each lap's timer time.
    expected_avg = sum(w * t for w, t in zip(lap_watts, want["lap_time"])) / sum(want["lap_time"])
    assert activity.avg_power_w == pytest.approx(expected_avg)
    assert activity.max_power_w == max(float(v) for v in re.findall(r"<ns3:MaxWatts>(\d+)<", text))
    assert activity.energy_j == pytest.approx(sum(want["kcal"]) * 4184)
    assert activity.avg_speed_mps == pytest.approx(sum(want["lap_distance"]) / sum(want["lap_time"]))
    # Trackpoint cadence is followed by the point's extensions, lap cadence by its trigger.
    point_cadence = re.findall(r"<Cadence>(\d+)</Cadence>\s*<Extensions>", text)
    assert activity.samples.values("cadence_rpm") == [float(v) for v in point_cadence]
    assert activity.ascent_m and activity.ascent_m > 50  # derived from AltitudeMeters


def test_one_line_document(own: Path) -> None:
    raw = (own / "one_line.tcx").read_bytes()
    assert b"\n" not in raw
    activity = decode(own / "one_line.tcx").activities[0]
    assert activity.samples.offsets_s == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert activity.samples.column("cadence_rpm") == [0.0, 82.0, 84.0, 85.0, 86.0, 86.0]
    assert activity.samples.column("hr_bpm") == [95.0, 104.0, 112.0, 119.0, 124.0, 127.0]
    assert activity.laps[0].avg_cadence_rpm == 85.0 and activity.laps[0].max_cadence_rpm == 86.0
    assert activity.device.serial_number == 3987654321
    # A one-line document broken near its end still gets a position.
    with pytest.raises(DecodeError) as info:
        decode_tcx(raw[:-40], origin("cut.tcx"))
    assert info.value.where.startswith("line 1, column ")


def test_multisport_session(own: Path) -> None:
    result = decode(own / "multisport.tcx")
    run, ride = result.activities
    assert (run.sport, ride.sport) == ("running", "cycling")
    assert run.multisport_group == ride.multisport_group is not None
    assert "2021-08-15T07:00:00Z" in run.multisport_group  # from the session's own Id
    assert (run.multisport_index, ride.multisport_index) == (0, 1)
    assert (run.source_id, ride.source_id) == ("tcx:2021-08-15T07:00:00Z", "tcx:2021-08-15T07:01:00Z")
    assert ride.samples.column("power_w") == [180.0, 240.0, 255.0]
    assert ride.samples.column("cadence_rpm") == [85.0, 92.0, 93.0]
    assert run.distance_m == 62 and ride.distance_m == 240 and ride.energy_j == 7 * 4184
    # The same bytes always group the same way.
    again = decode(own / "multisport.tcx").activities
    assert again[0].multisport_group == run.multisport_group


def test_courses_only_is_not_an_activity(own: Path) -> None:
    result = decode(own / "courses_only.tcx")
    assert result.activities == []
    assert "courses" in result.not_activity and "not an activity" in result.not_activity


@pytest.mark.parametrize("name", ["billion_laughs.tcx", "external_entity.tcx"])
def test_entities_are_refused_quickly(own: Path, name: str) -> None:
    began = time.monotonic()
    with pytest.raises(DecodeError) as info:
        decode(own / name)
    assert time.monotonic() - began < 1.0
    assert info.value.name == name and "refused" in info.value.why
    assert info.value.where.startswith("line 3, ")  # the first <!ENTITY declaration


def test_invalid_coordinates_drop_only_the_position() -> None:
    doc = (
        b'<TrainingCenterDatabase><Activities><Activity Sport="Running"><Id>2020-05-01T10:00:00Z</Id>'
        b'<Lap StartTime="2020-05-01T10:00:00Z"><TotalTimeSeconds>10</TotalTimeSeconds><Track>'
        b"<Trackpoint><Time>2020-05-01T10:00:00Z</Time><Position><LatitudeDegrees>91</LatitudeDegrees>"
        b"<LongitudeDegrees>1</LongitudeDegrees></Position><HeartRateBpm><Value>100</Value></HeartRateBpm></Trackpoint>"
        b"<Trackpoint><Time>2020-05-01T10:00:10</Time><Position><LatitudeDegrees>45</LatitudeDegrees>"
        b"<LongitudeDegrees>1</LongitudeDegrees></Position><HeartRateBpm><Value>110</Value></HeartRateBpm></Trackpoint>"
        b"</Track></Lap></Activity></Activities></TrainingCenterDatabase>"
    )
    activity = decode_tcx(doc, origin("p.tcx")).activities[0]
    assert activity.samples.column("lat_deg") == [None, 45.0]
    assert activity.samples.column("hr_bpm") == [100.0, 110.0]
    assert activity.samples.offsets_s == [0.0, 10.0]  # a time without offset is UTC
    assert any("1 trackpoint(s) with invalid coordinates" in w for w in activity.warnings)


def test_not_a_tcx_root(shared: Path) -> None:
    with pytest.raises(DecodeError, match="not <TrainingCenterDatabase>"):
        decode_tcx((shared / "gpx/runpandas__garmin_connect.gpx").read_bytes(), origin("really.gpx"))


def test_absurd_nesting_is_refused() -> None:
    doc = b"<TrainingCenterDatabase><Activities>" + b"<Activity>" * 100_000 + b"</Activity>" * 100_000
    with pytest.raises(DecodeError, match="nest deeper") as info:
        decode_tcx(doc + b"</Activities></TrainingCenterDatabase>", origin("deep.tcx"))
    assert info.value.where.startswith("line 1, column ")


def test_mutants_never_escape_as_foreign_errors(own: Path) -> None:
    rng = random.Random(11)
    seeds = [own / "one_line.tcx", own / "multisport.tcx"]
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
                data[i:i] = bytes(rng.choice([b"<", b"&", b"NaN", b"1e400", b"\x00", b"99999-01-01", b"9" * 40]))
        try:
            result = decode_tcx(bytes(data), origin(f"mutant{n}.tcx"))
        except DecodeError:
            continue
        assert isinstance(result, Decoded)

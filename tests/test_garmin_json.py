"""Garmin Connect web-API JSON (connectors/garmin/connect_json.py) on the real
responses in ../shared/fixtures/garmin/connect_api_json, values checked against
the JSON itself."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.garmin import CONNECT_JSON
from hub.errors import DecodeError
from hub.model import Provenance
from hub.pipeline import Imported, Rejected, ingest
from hub.plugins import FileDecoder
from hub.storage import Store

DIR = "garmin/connect_api_json"


def origin(name: str) -> Provenance:
    return Provenance(source="test:garmin_json", sha256=None, received_at=datetime(2024, 1, 1, tzinfo=timezone.utc), name=name)


def decode(shared: Path, name: str):
    data = (shared / DIR / name).read_bytes()
    assert CONNECT_JSON.sniff(name, data[:65536])
    return CONNECT_JSON.decode(data, origin(name)), json.loads(data)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=timezone.utc)


def test_is_a_file_decoder() -> None:
    assert isinstance(CONNECT_JSON, FileDecoder)
    assert CONNECT_JSON.format == "garmin_json"


@pytest.mark.parametrize(
    "name", ["activity_2541953812.json", "activity_emoji.json", "activity_multisport_child.json", "activity_154105348_gpx_device_null.json"]
)
def test_detail_values_match_the_json(shared: Path, name: str) -> None:
    decoded, doc = decode(shared, name)
    summary = doc["summaryDTO"]
    [a] = decoded.activities
    assert a.start == utc(summary["startTimeGMT"])
    assert a.utc_offset_s == (utc(summary["startTimeLocal"]) - utc(summary["startTimeGMT"])).total_seconds()
    assert a.elapsed_s == pytest.approx(summary["elapsedDuration"])
    assert a.moving_s == pytest.approx(summary["movingDuration"])
    assert a.distance_m == pytest.approx(summary["distance"])
    assert a.ascent_m == pytest.approx(summary.get("elevationGain")) if "elevationGain" in summary else a.ascent_m is None
    assert a.avg_speed_mps == pytest.approx(summary["averageSpeed"])
    if "calories" in summary:
        assert a.energy_j == pytest.approx(summary["calories"] * 4184)
    if "averageHR" in summary:
        assert (a.avg_hr_bpm, a.max_hr_bpm) == (summary["averageHR"], summary["maxHR"])
    assert a.name == doc["activityName"]
    assert a.source_id == f"garmin_connect:{doc['activityId']}"
    assert a.provenance.name == name


def test_known_values_of_one_ski_tour(shared: Path) -> None:
    decoded, _ = decode(shared, "activity_2541953812.json")
    [a] = decoded.activities
    assert (a.sport, a.start, a.utc_offset_s) == ("cross_country_skiing", datetime(2018, 3, 8, 11, 23, 22, tzinfo=timezone.utc), 3600)
    assert a.distance_m == pytest.approx(8225.53) and a.elapsed_s == pytest.approx(2627.38)
    assert a.device.manufacturer == "garmin"


def test_list_gives_one_activity_per_entry_and_skips_the_multisport_parent(shared: Path) -> None:
    decoded, doc = decode(shared, "activities-list.json")
    kept = [e for e in doc if e["activityType"]["typeKey"] != "multi_sport"]
    assert [a.source_id for a in decoded.activities] == [f"garmin_connect:{e['activityId']}" for e in kept]
    assert len(decoded.warnings) == 1 and "multisport" in decoded.warnings[0]
    for a, e in zip(decoded.activities, kept):
        assert a.sport == e["activityType"]["typeKey"]
        assert a.start == utc(e["startTimeGMT"])
        # List items give elapsedDuration in milliseconds, duration in seconds.
        assert a.elapsed_s == pytest.approx(e["elapsedDuration"] / 1000)
        assert a.distance_m == pytest.approx(e["distance"])
        assert a.avg_cadence_rpm == pytest.approx(e["averageRunningCadenceInStepsPerMinute"] / 2)


def test_multisport_parent_alone_is_not_an_activity(shared: Path) -> None:
    decoded, _ = decode(shared, "activity_multisport_detail.json")
    assert decoded.not_activity and "multisport" in decoded.not_activity and not decoded.activities


@pytest.mark.parametrize("name", ["activity_2541953812_samples.json", "activity_2541953812_zones.json", "device_856399.json", "userstats.json", "activityTypes.json"])
def test_other_connect_json_is_not_claimed(shared: Path, name: str) -> None:
    data = (shared / DIR / name).read_bytes()
    assert not CONNECT_JSON.sniff(name, data[:65536])
    assert CONNECT_JSON.decode(data, origin(name)).not_activity


def test_broken_json_names_the_place() -> None:
    with pytest.raises(DecodeError, match=r"bad\.json at line 1"):
        CONNECT_JSON.decode(b'{"activityId": 1, "summaryDTO": {', origin("bad.json"))


def test_detail_and_overview_of_one_activity_are_one_workout(db_url: str, tmp_path: Path, shared: Path) -> None:
    decoders = {"garmin_json": CONNECT_JSON.decode}
    sniff = lambda name, data: "garmin_json" if CONNECT_JSON.sniff(name, data[:65536]) else None  # noqa: E731
    with Store(db_url, tmp_path / "home") as store:
        outcomes = [
            ingest(store, (shared / DIR / n).read_bytes(), name=n, decoders=decoders, sniff=sniff)
            for n in ("activity_2541953812.json", "activity_2541953812_overview.json", "activitylist-service.json", "activity_2541953812_zones.json")
        ]
        assert [type(o) for o in outcomes] == [Imported, Imported, Imported, Rejected]
        assert outcomes[0].activity_ids and outcomes[1].merged_ids == outcomes[0].activity_ids == outcomes[2].merged_ids
        [stored] = store.list_activities()
        assert stored.activity.start == datetime(2018, 3, 8, 11, 23, 22, tzinfo=timezone.utc)
        assert len(store.sources(stored.id)) == 3

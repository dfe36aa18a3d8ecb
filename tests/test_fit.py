"""FIT decoder against the real-world corpus and independent truth.

Truth comes from outside the decoder: a plain fitdecode pass with its default
settings (done here, in the test), the upstream CSVs in ``fit/expected/``, and the
constants the synthetic fixtures were written from (fixtures/make_fit_fixtures.py).
"""

from __future__ import annotations

import functools
import io
import math
import random
import struct
import subprocess
import sys
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fitdecode
import pytest
from garmin_fit_sdk import Encoder, Profile

from connectors.files.fit import decode_fit
from hub.errors import DecodeError
from hub.model import CHANNELS, Decoded, Provenance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import make_fit_fixtures as fx  # noqa: E402

FIT_EPOCH = datetime(1989, 12, 31, tzinfo=timezone.utc)
SEMICIRCLE_DEG = 180 / 2**31
MESG = Profile["mesg_num"]


# ---------------------------------------------------------------------------- helpers


def origin(name: str = "test.fit", sha256: str | None = "ab" * 32) -> Provenance:
    return Provenance(source="file:fit", sha256=sha256, received_at=datetime(2024, 1, 1, tzinfo=timezone.utc), name=name)


@functools.lru_cache(maxsize=None)
def decode_path(path: Path) -> Decoded:
    """Decode once per test session: the results are frozen model objects."""
    return decode_fit(path.read_bytes(), origin(path.name))


def corpus(shared: Path, rel: str) -> Path:
    path = shared / "fit" / rel
    if not path.exists():  # the agpl/ folders may be dropped from a redistribution
        pytest.skip(f"{rel} not present")
    return path


class Raw:
    """An independent decode: plain fitdecode, default processor (datetimes, CRC check)."""

    SUMMARIES = {"session": "sessions", "lap": "laps", "length": "lengths", "set": "sets", "activity": "activity"}

    def __init__(self, data: bytes, *, stop_on_error: bool = False) -> None:
        self.records: list[dict] = []
        self.sessions: list[dict] = []
        self.laps: list[dict] = []
        self.lengths: list[dict] = []
        self.sets: list[dict] = []
        self.hrv: list[float] = []
        self.activity: list[dict] = []
        self.file_id: dict | None = None
        self.field_descriptions: list[dict] = []
        self.dev_record_values: list[dict] = []
        self.headers = 0
        self.error: Exception | None = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                for frame in fitdecode.FitReader(io.BytesIO(data)):
                    if isinstance(frame, fitdecode.FitHeader):
                        self.headers += 1
                    if not isinstance(frame, fitdecode.FitDataMessage):
                        continue
                    values = {}
                    for f in frame.fields:
                        if f.value is not None and f.name not in values:
                            values[f.name] = f.value
                    if frame.name == "record":
                        self.records.append(values)
                        self.dev_record_values.append(
                            {f.field.name: f.value for f in frame.fields if f.field_def is not None and f.field_def.is_dev}
                        )
                    elif frame.name == "hrv":
                        times = frame.get_value("time")
                        times = times if isinstance(times, tuple) else (times,)
                        self.hrv.extend(t for t in times if t is not None)
                    elif frame.name == "file_id" and self.file_id is None:
                        self.file_id = values
                    elif frame.name == "field_description":
                        self.field_descriptions.append(values)
                    elif frame.name in self.SUMMARIES:
                        getattr(self, self.SUMMARIES[frame.name]).append(values)
            except Exception as exc:  # the truth for broken files is "where it stopped"
                if not stop_on_error:
                    raise
                self.error = exc

    def max_hr(self) -> int | None:
        values = [r["heart_rate"] for r in self.records if isinstance(r.get("heart_rate"), int)]
        return max(values) if values else None


def close(a: float | None, b: float | None, tol: float = 1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


# ---------------------------------------------------------------------------- the whole corpus


def activity_files(shared: Path) -> list[Path]:
    folder = shared / "fit"
    return sorted(p for p in folder.glob("*.fit")) + sorted((folder / "agpl").glob("*.fit"))


def test_every_corpus_activity_file_decodes(shared):
    files = activity_files(shared)
    assert len(files) >= 60
    for path in files:
        decoded = decode_path(path)
        assert decoded.not_activity is None, path.name
        assert decoded.activities, path.name
        for activity in decoded.activities:
            assert activity.provenance.name == path.name
            assert activity.start.tzinfo is not None
            assert activity.person == "default"
            assert len(activity.samples.offsets_s) == len(activity.samples)
            # Only channels the file really has, and never an all-empty column.
            for name, column in activity.samples.columns.items():
                assert any(v is not None for v in column), (path.name, name)


# A dozen-plus makers, each checked against an independent plain-fitdecode decode.
MAKERS = [
    "fitparse__Edge810-Vector-2013-08-16-15-35-10.fit",  # Garmin
    "fitparse__garmin-edge-500-activity.fit",  # Garmin, 12-byte header
    "agpl/sportslib__suunto9-run_6914538454.fit",  # Suunto
    "fitparser-js__test2-suunto-xc-ski.fit",  # Suunto (2015)
    "fitparse__2019-02-17-062644-ELEMNT-297E-195-0.fit",  # Wahoo
    "agpl/sportslib__coros-apexpro-run_6916663933.fit",  # COROS
    "fittool__palisade.fit",  # Stages
    "fittool__activity_multiple_developer_index.fit",  # Stages M200
    "fit4s__zwift_activity.fit",  # Zwift
    "muktihari__big_activity.fit",  # Bryton, 100k records
    "agpl/sportslib__broken-start-latlng.fit",  # SRM
    "tormoder__onelap-indoor_0134902991.fit",  # Onelap
    "agpl/sportslib__magellan-27-days-activity.fit",  # Magellan
    "fit4s__tomtom_run-20180322T212609.fit",  # TomTom
    "agpl/sportslib__inverted-times.fit",  # Nielsen-Kellerman
    "fitparse__developer-types-sample.fit",  # Stryd
]


@pytest.mark.parametrize("rel", MAKERS)
def test_single_session_files_match_an_independent_decode(shared, rel):
    path = corpus(shared, rel)
    data = path.read_bytes()
    raw = Raw(data)
    (activity,) = decode_fit(data, origin(path.name)).activities
    (session,) = raw.sessions
    assert activity.start == session["start_time"]
    assert len(activity.samples) == len(raw.records)
    assert activity.samples.offsets_s[0] == (raw.records[0]["timestamp"] - session["start_time"]).total_seconds()
    assert activity.max_hr_bpm == session.get("max_heart_rate", raw.max_hr())
    hr = activity.samples.values("hr_bpm")
    assert (max(hr) if hr else None) == raw.max_hr()
    assert close(activity.distance_m, session.get("total_distance")) or session.get("total_distance") is None
    assert close(activity.elapsed_s, session["total_elapsed_time"])
    sport = session.get("sport")
    assert activity.sport == (sport if isinstance(sport, str) else f"sport_{sport}")
    fid = raw.file_id
    assert activity.device.serial_number == fid.get("serial_number")
    assert activity.provenance.name == path.name


def test_session_without_start_time_starts_at_first_record(shared):
    path = corpus(shared, "agpl/sportslib__broken-dates.fit")
    raw = Raw(path.read_bytes())
    assert "start_time" not in raw.sessions[0]
    (activity,) = decode_path(path).activities
    assert activity.start == raw.records[0]["timestamp"]
    assert len(activity.samples) == len(raw.records)
    assert activity.device.manufacturer == "1052"  # an id the profile does not name


# ---------------------------------------------------------------------------- upstream CSVs


def _csv_time(text: str) -> datetime:
    # "Sun Sep 25 06:00:22 PDT 2011"
    _, mon, day, clock, zone, year = text.split()
    offset = {"PDT": -7, "PST": -8}[zone]
    local = datetime.strptime(f"{year} {mon} {day} {clock}", "%Y %b %d %H:%M:%S")
    return (local - timedelta(hours=offset)).replace(tzinfo=timezone.utc)


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().strip().splitlines()
    return [h.strip() for h in lines[0].split(",")], [line.split(",") for line in lines[1:]]


def _value(text: str) -> float | None:
    text = text.strip()
    return None if text in ("", "null") else float(text)


CSV_CHANNELS = {
    "heart_rate": ("hr_bpm", 1.0),
    "cadence": ("cadence_rpm", 1.0),
    "speed": ("speed_mps", 1.0),
    "distance": ("distance_m", 1.0),
    "position_lat": ("lat_deg", SEMICIRCLE_DEG),
    "position_long": ("lon_deg", SEMICIRCLE_DEG),
    "altitude": ("altitude_m", 1.0),
    "temperature": ("temperature_c", 1.0),
}


@pytest.mark.parametrize(
    "stem",
    ["garmin-edge-500-activity", "garmin-edge-820-bike", "garmin-fenix-5-bike", "garmin-fenix-5-run", "garmin-fenix-5-walk"],
)
def test_records_match_upstream_csv(shared, stem):
    header, rows = _csv_rows(corpus(shared, f"expected/fitparse__{stem}-records.csv"))
    path = corpus(shared, f"fitparse__{stem}.fit")
    raw = Raw(path.read_bytes())
    (activity,) = decode_path(path).activities
    samples = activity.samples
    assert len(samples) == len(rows)
    for i, row in enumerate(rows):
        when = activity.start + timedelta(seconds=samples.offsets_s[i])
        assert when == _csv_time(row[0]), i
        for name, text in zip(header[1:], row[1:]):
            channel, scale = CSV_CHANNELS[name]
            expected = _value(text)
            column = samples.column(channel)
            got = column[i] if column is not None else None
            if expected is None:
                assert got is None, (i, name)
            elif got is None:
                # Where a record has no value the upstream CSV writes 0 (cadence) or
                # repeats the previous row (position); fithub keeps the gap. The raw
                # record confirms there is nothing there.
                assert name not in raw.records[i], (i, name)
                previous = _value(rows[i - 1][header.index(name)]) if i else None
                assert expected in (0.0, previous), (i, name)
            elif name == "cadence" and "fractional_cadence" in raw.records[i]:
                # The CSV has the whole cadence; fithub adds the FIT fractional part.
                assert close(got, expected + raw.records[i]["fractional_cadence"]), i
            else:
                assert close(got, expected * scale, 1e-9), (i, name, got, expected)


def test_compressed_timestamps_and_speed_distance_match_upstream_csv(shared):
    header, rows = _csv_rows(corpus(shared, "expected/fitparse__compressed-speed-distance-records.csv"))
    path = corpus(shared, "fitparse__compressed-speed-distance.fit")
    raw = Raw(path.read_bytes())
    (activity,) = decode_path(path).activities
    samples = activity.samples
    # The CSV lists the records that carry values; the file's first record is a bare time.
    # Its timestamps are device-relative seconds: compare them as offsets from the session.
    start_raw = raw.sessions[0]["start_time"]  # a plain int: below the calendar threshold
    by_offset = {off: i for i, off in enumerate(samples.offsets_s)}
    assert len(samples) == len(rows) + 1
    for row in rows:
        i = by_offset[float(int(row[0]) - start_raw)]
        hr, speed, dist, cad = (_value(v) for v in row[1:])
        assert samples.column("hr_bpm")[i] == hr
        assert close(samples.column("speed_mps")[i], speed)
        assert close(samples.column("distance_m")[i], dist)
        assert samples.column("cadence_rpm")[i] == cad


# ---------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    "rel", ["fit4s__2775379975.fit", "fitdecode__garmin-fr935-cr.fit", "agpl/sportslib__fr935-poolswim_6688025408.fit"]
)
def test_chained_segments_are_read_whole(shared, rel):
    path = corpus(shared, rel)
    raw = Raw(path.read_bytes())
    assert raw.headers >= 3
    (activity,) = decode_path(path).activities
    assert len(activity.samples) == len(raw.records)
    assert len(activity.laps) == len(raw.laps)
    assert len(activity.lengths) == len(raw.lengths)


def _summary(activity):
    return (
        activity.sport,
        activity.sub_sport,
        activity.start,
        activity.elapsed_s,
        activity.distance_m,
        activity.max_hr_bpm,
        len(activity.samples),
        activity.samples.offsets_s,
        activity.samples.columns,
        activity.laps,
        activity.source_id,
        activity.multisport_group,
        activity.multisport_index,
    )


def test_triathlon_summary_first_equals_summary_last(shared):
    first = decode_path(corpus(shared, "muktihari__triathlon_summary_first.fit")).activities
    last = decode_path(corpus(shared, "muktihari__triathlon_summary_last.fit")).activities
    assert [_summary(a) for a in first] == [_summary(a) for a in last]


@pytest.mark.parametrize(
    "rel",
    [
        "muktihari__triathlon_summary_first.fit",
        "muktihari__triathlon_summary_last.fit",
        "fitparse__sample_mulitple_header.fit",
        "fitparse__activity-large-fenxi2-multisport.fit",
    ],
)
def test_multisport_sessions_share_a_group_and_split_the_records(shared, rel):
    path = corpus(shared, rel)
    raw = Raw(path.read_bytes())
    activities = decode_path(path).activities
    sessions = sorted(raw.sessions, key=lambda s: s["start_time"])
    assert len(activities) == len(sessions) >= 5
    assert [a.multisport_index for a in activities] == list(range(len(sessions)))
    group = activities[0].multisport_group
    fid = raw.file_id
    assert group is not None and str(fid["serial_number"]) in group  # from the file identity
    assert all(a.multisport_group == group for a in activities)
    assert [a.sport for a in activities] == [s["sport"] for s in sessions]
    assert [a.start for a in activities] == [s["start_time"] for s in sessions]
    assert len({a.source_id for a in activities}) == len(activities)
    assert all(a.source_id.endswith(f":{a.multisport_index}") for a in activities)
    assert sum(len(a.samples) for a in activities) == len(raw.records)
    for a, b in zip(activities, activities[1:]):
        # Every sample of a leg lies before the next leg's start and, after the first
        # leg (which also takes what was recorded before it), after its own start.
        assert all(a.start + timedelta(seconds=off) < b.start for off in a.samples.offsets_s)
        assert all(0 <= off for off in b.samples.offsets_s)
    assert sum(len(a.laps) for a in activities) == len(raw.laps)


@pytest.mark.parametrize(
    "rel", ["fit4s__fenix5_lapswim_254.fit", "fit4s__68270818303.fit", "fitparse__event_timestamp.fit", "agpl/sportslib__fenix3-poolswim_6021532030.fit"]
)
def test_pool_swim_lengths(shared, rel):
    path = corpus(shared, rel)
    raw = Raw(path.read_bytes())
    (activity,) = decode_path(path).activities
    assert activity.sub_sport == "lap_swimming"
    assert len(activity.lengths) == len(raw.lengths) > 0
    raw_active = [x for x in raw.lengths if x.get("length_type") == "active"]
    assert sum(1 for x in activity.lengths if x.length_type == "active") == len(raw_active)
    assert sum(x.strokes or 0 for x in activity.lengths) == sum(x.get("total_strokes", 0) for x in raw.lengths)
    assert [x.start for x in activity.lengths] == sorted(x["start_time"] for x in raw.lengths)
    strokes = {x.stroke for x in activity.lengths if x.length_type == "active"}
    assert strokes <= {"freestyle", "backstroke", "breaststroke", "butterfly", "drill", "mixed", "im"}


def test_strength_sets_from_fixture(own):
    decoded = decode_path(own / "samples" / "strength_sets.fit")
    (activity,) = decoded.activities
    assert (activity.sport, activity.sub_sport) == ("training", "strength_training")
    assert len(activity.sets) == len(fx.STRENGTH_SETS)
    for got, (offset, duration, kind, category, reps, weight) in zip(activity.sets, fx.STRENGTH_SETS):
        assert got.start == fx.STRENGTH_START + timedelta(seconds=offset)
        assert got.duration_s == duration
        assert got.set_type == kind
        assert got.category == category
        assert got.reps == reps
        assert got.weight_kg == weight  # stored as 1/16 kg; 82.5 kg survives exactly
    assert activity.samples.column("hr_bpm") == fx.STRENGTH_HR
    assert activity.utc_offset_s == fx.STRENGTH_UTC_OFFSET_S
    created = int((fx.STRENGTH_START - FIT_EPOCH).total_seconds())
    assert activity.source_id == f"fit:1:3290:{fx.STRENGTH_SERIAL}:{created}"
    assert activity.energy_j == 85 * 4184


def test_set_message_in_a_real_file_without_laps(shared):
    path = corpus(shared, "fitparser-js__failed.fit")
    raw = Raw(path.read_bytes())
    (activity,) = decode_path(path).activities
    assert raw.laps == [] and len(raw.sets) == 1
    (item,) = activity.sets
    assert item.duration_s == raw.sets[0]["duration"]
    assert item.set_type == raw.sets[0]["set_type"]
    assert item.reps is None and item.weight_kg is None  # 0xFFFF sentinels
    assert activity.laps == ()
    assert (activity.sport, activity.sub_sport) == ("training", "yoga")


@pytest.mark.parametrize(
    "rel", ["fitparse-rs__hrv-activity.fit", "fitparse__garmin-fenix-5-run.fit", "agpl/sportslib__suunto9baro-trail_6909950168.fit"]
)
def test_hrv_rr_intervals(shared, rel):
    path = corpus(shared, rel)
    raw = Raw(path.read_bytes())
    (activity,) = decode_path(path).activities
    assert len(activity.hrv_rr_s) == len(raw.hrv) > 0
    assert math.isclose(sum(activity.hrv_rr_s), sum(raw.hrv))
    assert all(0.2 < rr < 3.0 for rr in activity.hrv_rr_s)  # padding 0xFFFF (65.535 s) dropped


@pytest.mark.parametrize("rel", ["fitparser-js__running-with-developer-data.fit", "fitparse__20170518-191602-1740899583.fit"])
def test_developer_fields_keep_their_names_and_units(shared, rel):
    path = corpus(shared, rel)
    raw = Raw(path.read_bytes())
    (activity,) = decode_path(path).activities
    units = {d["field_name"]: d.get("units") for d in raw.field_descriptions}
    used = {name for values in raw.dev_record_values for name, v in values.items() if v is not None}
    assert used and used <= set(activity.samples.columns)
    for name in used:
        if units.get(name):
            assert activity.samples.units[name] == units[name]
        expected = [values.get(name) for values in raw.dev_record_values]
        assert activity.samples.column(name) == expected, name
    assert not set(activity.samples.units) & set(CHANNELS)


def test_developer_field_without_description_gets_a_stable_name(own):
    (activity,) = decode_path(own / "developer_fields.fit").activities
    samples = activity.samples
    temp = samples.column(fx.DEV_DESCRIBED_NAME)
    assert samples.unit(fx.DEV_DESCRIBED_NAME) == fx.DEV_DESCRIBED_UNITS
    assert all(math.isclose(t, fx.dev_core_temp(i), rel_tol=1e-6) for i, t in enumerate(temp))  # float32
    assert samples.column("dev_1_3") == [fx.dev_undescribed(i) for i in range(fx.DEV_RECORDS)]
    assert samples.column("hr_bpm") == [120 + i for i in range(fx.DEV_RECORDS)]


@pytest.mark.parametrize(
    "rel", ["fitparse__garmin-edge-820-bike.fit", "fitparser-js__test2-suunto-xc-ski.fit", "tormoder__bpg-garmin-edge530.fit"]
)
def test_local_time_offset(shared, rel):
    path = corpus(shared, rel)
    raw = Raw(path.read_bytes())
    (act,) = raw.activity
    expected = int((act["local_timestamp"] - act["timestamp"]).total_seconds())
    (activity,) = decode_path(path).activities
    assert activity.utc_offset_s == expected != 0


def test_device_relative_timestamps_are_anchored(shared):
    path = corpus(shared, "fitparse__antfs-dump.63.fit")
    raw = Raw(path.read_bytes())
    session, act = raw.sessions[0], raw.activity[0]
    # Relative times stay plain ints in fitdecode; local_timestamp is a calendar value.
    assert isinstance(session["start_time"], int) and isinstance(act["timestamp"], int)
    expected = act["local_timestamp"] - timedelta(seconds=act["timestamp"] - session["start_time"])
    decoded = decode_path(path)
    (activity,) = decoded.activities
    assert activity.start == expected
    assert activity.utc_offset_s is None
    assert any("power-on" in w for w in activity.warnings)
    assert len(activity.samples) == len(raw.records)


def test_device_relative_timestamps_without_anchor_are_refused(tmp_path):
    enc = Encoder()
    enc.write_mesg({"mesg_num": MESG["FILE_ID"], "type": "activity", "manufacturer": "garmin", "serial_number": 7, "time_created": 1000})
    for i in range(5):
        enc.write_mesg({"mesg_num": MESG["RECORD"], "timestamp": 1000 + i, "heart_rate": 100})
    enc.write_mesg({"mesg_num": MESG["SESSION"], "timestamp": 1004, "start_time": 1000, "sport": "running"})
    with pytest.raises(DecodeError) as err:
        decode_fit(enc.close(), origin("relative.fit"))
    assert err.value.name == "relative.fit"
    assert "power-on" in err.value.why


def _tiny_activity(file_id: dict, sport: int | str = "running") -> bytes:
    enc = Encoder()
    start = datetime(2024, 2, 2, 10, tzinfo=timezone.utc)
    enc.write_mesg({"mesg_num": MESG["FILE_ID"], "type": "activity", **file_id})
    for i in range(3):
        enc.write_mesg({"mesg_num": MESG["RECORD"], "timestamp": start + timedelta(seconds=i), "heart_rate": 100 + i})
    enc.write_mesg({"mesg_num": MESG["SESSION"], "timestamp": start + timedelta(seconds=2), "start_time": start, "sport": sport})
    return enc.close()


def test_unknown_sport_value_gets_a_numbered_name():
    (activity,) = decode_fit(_tiny_activity({"manufacturer": "garmin", "serial_number": 5}, sport=250), origin()).activities
    assert activity.sport == "sport_250"


def test_source_id_needs_serial_or_time_created():
    (activity,) = decode_fit(_tiny_activity({"manufacturer": "garmin"}), origin()).activities
    assert activity.source_id is None
    (activity,) = decode_fit(_tiny_activity({"manufacturer": "garmin", "serial_number": 5}), origin()).activities
    assert activity.source_id == "fit:1::5:"


# ---------------------------------------------------------------------------- non-activity files


def test_non_activity_files_are_rejected_with_their_type(shared):
    folder = shared / "fit" / "non_activity"
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".fit")
    assert len(files) >= 10
    for path in files:
        raw = Raw(path.read_bytes())
        decoded = decode_path(path)
        assert decoded.activities == [] and decoded.measurements == []
        kind = raw.file_id.get("type")
        if kind != "activity":
            assert f"FIT file type '{kind}'" in decoded.not_activity, path.name
        else:  # a file_id and a lone record: nothing recorded
            assert "no session" in decoded.not_activity


def test_course_reason_reads_well(shared):
    decoded = decode_path(corpus(shared, "non_activity/fittool__old_stage_lefthand_lee.fit"))
    assert decoded.not_activity == "FIT file type 'course' is a course (a planned route), not an activity"


def test_weight_scale_file_gives_measurements(own):
    decoded = decode_path(own / "samples" / "weight_scale.fit")
    assert decoded.activities == [] and decoded.not_activity is None
    got = {(m.kind, m.time): m.value for m in decoded.measurements}
    expected = {}
    for when, weight, fat, water, muscle, bone, visceral, bmi, bmr in fx.WEIGHINGS:
        for kind, value in (
            ("weight_kg", weight),
            ("body_fat_pct", fat),
            ("body_water_pct", water),
            ("muscle_mass_kg", muscle),
            ("bone_mass_kg", bone),
            ("visceral_fat_rating", visceral),
            ("bmi_kg_m2", bmi),
            ("basal_metabolic_rate_j", bmr * 4184 if bmr is not None else None),
        ):
            if value is not None:
                expected[(kind, when)] = value
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9), key
    assert all(m.provenance.name == "weight_scale.fit" for m in decoded.measurements)


def test_weight_setting_inside_an_activity_is_not_a_measurement(shared):
    # The SRM head unit stores the rider's configured weight with timestamp 0.
    decoded = decode_path(corpus(shared, "agpl/sportslib__broken-start-latlng.fit"))
    assert decoded.measurements == [] and len(decoded.activities) == 1


# ---------------------------------------------------------------------------- broken files


def test_zero_byte_file(shared):
    with pytest.raises(DecodeError) as err:
        decode_path(corpus(shared, "broken/agpl/sportslib__empty-sessions.fit"))
    assert err.value.why == "empty file" and err.value.name == "sportslib__empty-sessions.fit"


def test_header_declaring_no_data_is_salvaged(shared):
    path = corpus(shared, "broken/agpl/sportslib__empty-activities.fit")
    data = path.read_bytes()
    assert struct.unpack_from("<I", data, 4)[0] == 0
    # Truth: plain fitdecode over the same bytes with the header's size set to the rest.
    fixed = bytearray(data)
    struct.pack_into("<I", fixed, 4, len(data) - data[0])
    raw = Raw(bytes(fixed), stop_on_error=True)
    assert isinstance(raw.error, fitdecode.FitEOFError)
    (activity,) = decode_fit(data, origin(path.name)).activities
    assert len(activity.samples) == len(raw.records) > 2000
    assert activity.start == raw.records[0]["timestamp"]
    assert activity.distance_m == raw.records[-1]["distance"]  # derived: there is no session
    text = " | ".join(activity.warnings)
    assert "header declares 0 bytes" in text and "truncated at byte" in text and "no session" in text


def test_bad_crc_is_a_warning(shared):
    broken = decode_path(corpus(shared, "broken/fit4s__610464_bad_crc.fit"))
    clean = decode_path(corpus(shared, "fit4s__610464.fit"))
    (a,), (b,) = broken.activities, clean.activities
    assert "CRC mismatch: file may be corrupt" in a.warnings and b.warnings == ()
    assert (a.start, a.samples, a.laps, a.source_id) == (b.start, b.samples, b.laps, b.source_id)


def test_missing_definition_with_nothing_before_it_is_refused(shared):
    path = corpus(shared, "broken/fit4s__610464_no_defmsg.fit")
    raw = Raw(path.read_bytes(), stop_on_error=True)
    assert isinstance(raw.error, fitdecode.FitParseError)
    with pytest.raises(DecodeError) as err:
        decode_path(path)
    assert err.value.where == f"byte {raw.error.offset}"
    assert "never defined" in err.value.why
    assert isinstance(err.value.__cause__, fitdecode.FitParseError)


@pytest.mark.parametrize(
    "rel",
    ["broken/fitparse__nick.fit", "broken/fitparse__strava-android-app-201.10-b1218918.fit"],
)
def test_file_cut_short_keeps_the_records_before_the_defect(shared, rel):
    path = corpus(shared, rel)
    raw = Raw(path.read_bytes(), stop_on_error=True)
    assert raw.error is not None
    (activity,) = decode_path(path).activities
    assert len(activity.samples) == len(raw.records)
    offset = getattr(raw.error, "offset")
    assert any(f"at byte {offset}: kept the {len(raw.records)} records before it" in w for w in activity.warnings)
    if not raw.sessions:
        assert activity.start == raw.records[0]["timestamp"]
        assert any("no session" in w for w in activity.warnings)
        last = next(r["distance"] for r in reversed(raw.records) if "distance" in r)
        assert activity.distance_m == last


@pytest.mark.parametrize(
    "rel",
    [
        "broken/fitparse__coros-pace-2-cycling-misaligned-fields.fit",
        "broken/fitparse__elemnt-bolt-no-application-id-inside-developer-data-id.fit",
    ],
)
def test_malformed_but_readable_files_decode(shared, rel):
    path = corpus(shared, rel)
    raw = Raw(path.read_bytes())  # fitdecode's lenient default reads them too
    (activity,) = decode_path(path).activities
    assert len(activity.samples) == len(raw.records)
    assert activity.start == raw.sessions[0]["start_time"]


def test_every_broken_file_decodes_or_is_refused_cleanly(shared):
    for path in sorted((shared / "fit" / "broken").rglob("*.fit")):
        try:
            decoded = decode_path(path)
        except DecodeError as err:
            assert err.name == path.name and err.why
        else:
            assert decoded.activities, path.name


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty file"),
        (b"hello, this is not a FIT file at all", "not a FIT file: bad header"),
        (random.Random(3).randbytes(5000), "not a FIT file: bad header"),
        (b"\x0e\x10\x00\x00\x00\x00\x00\x00.FIT", "truncated FIT header"),  # 12 of 14 bytes
    ],
)
def test_garbage_is_a_decode_error(data, why):
    with pytest.raises(DecodeError) as err:
        decode_fit(data, origin("junk.fit"))
    assert err.value.name == "junk.fit"
    assert why in err.value.why


def test_valid_header_with_garbage_body_names_the_position():
    body = random.Random(5).randbytes(300)
    header = bytearray(struct.pack("<BBHI4s", 12, 0x10, 2100, len(body), b".FIT"))
    with pytest.raises(DecodeError) as err:
        decode_fit(bytes(header) + body + b"\x00\x00", origin("junk.fit"))
    assert err.value.where is not None and err.value.where.startswith(("byte ", "message "))


def test_mutants_only_ever_raise_decode_error(shared, own):
    """A short smoke run; tests/test_fuzz.py does the long one."""
    seeds = [p.read_bytes() for p in sorted((shared / "fit").glob("*.fit")) if p.stat().st_size < 8000]
    seeds += [(own / "samples" / "strength_sets.fit").read_bytes()]
    rng = random.Random(11)
    for _ in range(300):
        buf = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(buf))
            buf[pos : pos + rng.randint(1, 6)] = rng.randbytes(rng.randint(0, 6))
        try:
            decoded = decode_fit(bytes(buf), origin("mutant.fit"))
        except DecodeError:
            continue
        assert isinstance(decoded, Decoded)


# ---------------------------------------------------------------------------- cost


@pytest.fixture(scope="module")
def ten_hour_ride(tmp_path_factory) -> Path:
    enc = Encoder()
    start = datetime(2024, 7, 1, 5, tzinfo=timezone.utc)
    enc.write_mesg({"mesg_num": MESG["FILE_ID"], "type": "activity", "manufacturer": "garmin", "serial_number": 9, "time_created": start})
    n = 10 * 3600
    for i in range(n):
        enc.write_mesg(
            {
                "mesg_num": MESG["RECORD"],
                "timestamp": start + timedelta(seconds=i),
                "position_lat": 540000000 + 40 * i,
                "position_long": 100000000 + 40 * i,
                "enhanced_altitude": 200.0 + (i % 600) / 10,
                "distance": 8.0 * i,
                "enhanced_speed": 8.0,
                "heart_rate": 120 + i % 30,
                "cadence": 85 + i % 10,
                "power": 180 + i % 50,
                "temperature": 20,
            }
        )
    enc.write_mesg({"mesg_num": MESG["SESSION"], "timestamp": start + timedelta(seconds=n - 1), "start_time": start, "sport": "cycling"})
    path = tmp_path_factory.mktemp("long") / "ten_hours.fit"
    path.write_bytes(enc.close())
    return path


MEASURE_PEAK = """
import sys
from datetime import datetime, timezone
from connectors.files.fit import decode_fit
from hub.model import Provenance

def high_water_kib():
    # VmHWM belongs to this process image (ru_maxrss would carry the parent's peak).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

data = open(sys.argv[1], "rb").read()
before = high_water_kib()
(activity,) = decode_fit(data, Provenance(source="file:fit", sha256=None, received_at=datetime.now(timezone.utc))).activities
print(len(activity.samples), activity.samples.column("power_w")[123], before, high_water_kib())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_ten_hour_ride_memory(ten_hour_ride):
    # A fresh interpreter, so the peak is this decode's and not the test session's.
    out = subprocess.run(
        [sys.executable, "-c", MEASURE_PEAK, str(ten_hour_ride)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    samples, power, before_kib, peak_kib = (int(x) for x in out)
    assert samples == 36000
    assert power == 180 + 123 % 50
    # The whole process, interpreter and imports included.
    assert peak_kib < 150 * 1024, f"peak {peak_kib / 1024:.0f} MiB (before decoding {before_kib / 1024:.0f} MiB)"


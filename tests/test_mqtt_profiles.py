"""MQTT payload profiles: real payload shapes of each gateway kind, fithub's own
schema, and everything malformed, which must come back as PayloadError (only)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.mqtt.profiles import PROFILES, IgnoredPayload, ProfileOptions, parse, parse_strict
from connectors.mqtt.profiles_common import RANGES
from connectors.mqtt.profiles_esphome import check_target
from connectors.mqtt.readings import ActivityReading, MeasurementReading, PayloadError, SampleReading
from hub.model import CHANNELS, MEASUREMENT_KINDS

UTC = timezone.utc
NOW = datetime(2024, 6, 1, 8, 0, 0, 734000, tzinfo=UTC)
THEENGS = "home/TheengsGateway/BTtoMQTT/C47C8D6A1B2C"
OMG = "home/OMG_ESP32_BLE/BTtoMQTT/C47C8D6A1B2C"

# As Theengs Gateway publishes a Mi Body Composition Scale 2 (decoder model XMTZC05HM).
MI_SCALE_2 = {
    "name": "MIBFS", "id": "C4:7C:8D:6A:1B:2C", "rssi": -76, "brand": "Xiaomi", "model": "Mi_Body_Scale_2",
    "model_id": "XMTZC05HM", "type": "SCALE", "weighing_mode": "person", "unit": "kg", "weight": 72.35,
    "impedance": 503,
}  # fmt: skip
# OpenMQTTGateway: the same decoder output plus the raw advertisement fields.
OMG_SCALE = {
    "id": "c4:7c:8d:6a:1b:2c", "mac_type": 0, "adv_type": 0, "name": "MIBFS", "rssi": -89,
    "servicedata": "0224b20701010a1e0ff4012c3b", "servicedatauuid": "0x181b", "brand": "Xiaomi",
    "model": "Mi_Body_Scale_2", "model_id": "XMTZC05HM", "type": "SCALE", "weighing_mode": "person",
    "unit": "lbs", "weight": 159.5,
}  # fmt: skip
MI_BAND = {"id": "D1:22:33:44:55:66", "rssi": -60, "brand": "Xiaomi/Amazfit", "model": "Mi Band/Smart Watch",
           "model_id": "MB/SW", "steps": 8412, "act_bpm": 71, "device": "Xiaomi/Amazfit Tracker"}


def j(value) -> bytes:
    return json.dumps(value).encode()


def why(profile: str, topic: str, payload: bytes, **kw) -> str:
    with pytest.raises(PayloadError) as info:
        parse(profile, topic, payload, NOW, **kw)
    assert info.value.topic == topic
    assert str(info.value).startswith(f"{topic}: ")
    return info.value.why


# -- Theengs Gateway / OpenMQTTGateway ---------------------------------------------------------------


def test_theengs_mi_scale_weight_and_impedance() -> None:
    [r] = parse("theengs", THEENGS, j(MI_SCALE_2), NOW)
    assert isinstance(r, MeasurementReading)
    assert (r.device, r.kind, r.value, r.extra) == ("C4:7C:8D:6A:1B:2C", "weight_kg", 72.35, {"impedance_ohm": 503.0})
    assert r.time == datetime(2024, 6, 1, 8, 0, 0, tzinfo=UTC)  # no time in the payload: received, to the second
    assert r.person is None


@pytest.mark.parametrize(("unit", "weight", "kg"), [("kg", 72.35, 72.35), ("lbs", 159.5, 72.3480), ("jin", 144.7, 72.35)])
def test_scale_units_are_converted_to_kg(unit: str, weight: float, kg: float) -> None:
    [r] = parse("omg", OMG, j({**OMG_SCALE, "unit": unit, "weight": weight}), NOW)
    assert r.value == pytest.approx(kg, abs=1e-4)
    assert r.device == "C4:7C:8D:6A:1B:2C"  # lower-case MAC from OMG, same device as Theengs's


def test_same_advertisement_within_a_second_has_one_key_and_a_new_reading_another() -> None:
    first = parse("theengs", THEENGS, j(MI_SCALE_2), NOW)[0]
    # rssi differs per advertisement and is not part of the reading
    again = parse("theengs", THEENGS, j({**MI_SCALE_2, "rssi": -81}), NOW + timedelta(milliseconds=200))[0]
    later = parse("theengs", THEENGS, j(MI_SCALE_2), NOW + timedelta(seconds=1))[0]
    other = parse("theengs", THEENGS, j({**MI_SCALE_2, "weight": 72.4}), NOW)[0]
    assert first.key == again.key
    assert len({first.key, later.key, other.key}) == 3


def test_scale_without_impedance_and_zero_impedance() -> None:
    v1 = {k: v for k, v in MI_SCALE_2.items() if k not in ("impedance", "weighing_mode")} | {"model_id": "XMTZC04HM"}
    assert parse("theengs", THEENGS, j(v1), NOW)[0].extra == {}
    assert parse("theengs", THEENGS, j({**MI_SCALE_2, "impedance": 0}), NOW)[0].extra == {}


def test_mi_band_steps_and_heart_rate() -> None:
    readings = parse("theengs", "home/TheengsGateway/BTtoMQTT/D12233445566", j(MI_BAND), NOW)
    assert [(r.kind, r.value) for r in readings] == [("steps_day_cumulative", 8412.0), ("hr_bpm", 71.0)]
    assert len({r.key for r in readings}) == 2


def test_device_id_from_the_topic_when_the_payload_has_none() -> None:
    payload = {k: v for k, v in MI_SCALE_2.items() if k != "id"}
    assert parse("theengs", THEENGS, j(payload), NOW)[0].device == "C4:7C:8D:6A:1B:2C"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"id": "A4:C1:38:00:11:22", "brand": "Xiaomi", "model": "LYWSD03MMC", "tempc": 21.5, "hum": 48}, "no fitness data"),
        ({"id": "C4:7C:8D:6A:1B:2C", "rssi": -80, "servicedata": "0224b2"}, "undecoded advertisement"),
        ({**MI_SCALE_2, "weighing_mode": "object"}, "weighed an object"),
    ],
)
def test_other_devices_and_objects_are_ignored_not_errors(payload: dict, reason: str) -> None:
    with pytest.raises(IgnoredPayload, match=reason):
        parse("theengs", THEENGS, j(payload), NOW)


def test_gateway_lwt_and_retained_are_ignored() -> None:
    with pytest.raises(IgnoredPayload):
        parse("theengs", "home/TheengsGateway/LWT", b"online", NOW)
    with pytest.raises(IgnoredPayload, match="retained"):
        parse("theengs", THEENGS, j(MI_SCALE_2), NOW, retained=True)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (j({**MI_SCALE_2, "weight": 900}), "outside the plausible range"),
        (j({**MI_SCALE_2, "weight": 900, "unit": "lbs"}), "outside the plausible range"),
        (j({**MI_SCALE_2, "unit": "stone"}), "unknown weight unit"),
        (j({k: v for k, v in MI_SCALE_2.items() if k != "unit"}), "without its unit"),
        (j({**MI_SCALE_2, "weight": "72.3"}), "weight must be a number, got a string"),
        (j({**MI_SCALE_2, "weight": True}), "weight must be a number, got a boolean"),
        (j({**MI_SCALE_2, "impedance": 99999}), "impedance"),
        (j({**MI_BAND, "act_bpm": 400}), "act_bpm = 400 is outside"),
        (j({**MI_BAND, "steps": 12.5}), "not a whole number"),
        (j({**MI_SCALE_2, "id": "bad#id"}), "wildcard"),
        (j({**MI_SCALE_2, "weighing_mode": "ghost"}), "weighing_mode"),
        (b'{"id": "C4:7C:8D:6A:1B:2C", "weight": NaN, "unit": "kg"}', "NaN is not a number"),
        (b'{"id": "C4:7C:8D:6A:1B:2C", "weight": Infinity, "unit": "kg"}', "Infinity is not a number"),
        (b'{"id": "C4:7C:8D:6A:1B:2C", "weight": 1e400, "unit": "kg"}', "not finite"),
        (b'{"id": "C4:7C:8D:6A:1B:2C", "weight": 72.1, "weight": 80, "unit": "kg"}', "duplicate key 'weight'"),
        (j(MI_SCALE_2)[:40], "malformed JSON"),
        (b"", "empty payload"),
        (b"[1, 2]", "expected a JSON object, got an array"),
        (b'{"weight": 72.1, "unit": "kg", "id": "\xff\xfe"}', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
        (b'{"id": "C4:7C:8D:6A:1B:2C", "unit": "kg", "weight": ' + b"9" * 5000 + b"}", "malformed JSON"),
    ],
)
def test_malformed_gateway_payloads_name_what_is_wrong(payload: bytes, reason: str) -> None:
    assert reason in why("theengs", THEENGS, payload)


# -- ESPHome ------------------------------------------------------------------------------------------


def test_esphome_state_topics() -> None:
    [r] = parse("esphome", "bathroom-scale/sensor/xiaomi_mi_scale_weight/state", b"72.35", NOW)
    assert (r.device, r.kind, r.value) == ("bathroom-scale", "weight_kg", 72.35)
    options = ProfileOptions(esphome_sensors={"trainer/pulse": "sample.hr_bpm", "scale_lb": "weight_kg:lb"})
    [s] = parse("esphome", "trainer/sensor/pulse/state", b"142", NOW, options)
    assert isinstance(s, SampleReading) and s.channels == {"hr_bpm": 142.0} and s.device == "trainer"
    [w] = parse("esphome", "home/esp1/sensor/scale_lb/state", b"160.0", NOW, options)
    assert w.device == "home/esp1" and w.value == pytest.approx(72.5748, abs=1e-4)


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "ignored"),
    [
        ("node/sensor/wifi_signal/state", b"-61", "not mapped", True),
        ("node/sensor/xiaomi_mi_scale_impedance/state", b"503", "not mapped", True),
        ("node/sensor/scale_weight/state", b"nan", "no value yet", True),
        ("node/status", b"online", "availability", True),
        ("node/sensor/scale_weight/state", b"seventy", "not a number", False),
        ("node/sensor/scale_weight/state", b"0x48", "not a number", False),
        ("node/sensor/scale_weight/state", b"inf", "not a number", False),
        ("node/sensor/scale_weight/state", b"900.0", "outside the plausible range", False),
        ("node/sensor/heart_rate/state", b"400", "outside the plausible range", False),
        ("node/sensor/scale_weight/state", b"\xff72", "not UTF-8", False),
    ],
)
def test_esphome_bad_and_unrelated_states(topic: str, payload: bytes, reason: str, ignored: bool) -> None:
    with pytest.raises(PayloadError, match=reason) as info:
        parse("esphome", topic, payload, NOW)
    assert isinstance(info.value, IgnoredPayload) is ignored


def test_esphome_retained_state_is_skipped() -> None:
    # ESPHome retains states; after a hub restart the old weight must not be stored as new.
    with pytest.raises(IgnoredPayload, match="retained"):
        parse("esphome", "node/sensor/scale_weight/state", b"72.3", NOW, retained=True)


def test_esphome_target_check() -> None:
    assert check_target("weight_kg") is None and check_target("sample.power_w") is None
    assert check_target("weight_kg:lbs") is None
    assert "unknown measurement kind" in check_target("weight")
    assert "unknown sample channel" in check_target("sample.watts")
    assert "unit" in check_target("weight_kg:stone")


# -- openScale-sync -------------------------------------------------------------------------------


OPENSCALE = {"id": 42, "userId": 1, "date": "2024-06-01T07:30+0200", "weight": 72.4, "body_fat": 18.5,
             "water": 55.0, "muscle": 40.0, "lbm": 0.0, "bone": 4.0, "username": "alice"}


def test_openscale_measurement() -> None:
    readings = parse("openscale", "openScaleSync/1/measurements/insert", j(OPENSCALE), NOW)
    got = {r.kind: r.value for r in readings}
    assert got == pytest.approx({"weight_kg": 72.4, "body_fat_pct": 18.5, "body_water_pct": 55.0,
                                 "muscle_mass_kg": 28.96, "bone_mass_kg": 2.896})  # lbm 0 = not measured
    assert {r.device for r in readings} == {"openscale:1"}
    assert {r.time for r in readings} == {datetime(2024, 6, 1, 5, 30, tzinfo=UTC)}
    assert len({r.key for r in readings}) == len(readings)
    # the same measurement delivered again (or as an update) has the same keys
    again = parse("openscale", "openScaleSync/1/measurements/update", j({**OPENSCALE, "weight": 72.4}), NOW)
    assert [r.key for r in again] == [r.key for r in readings]


def test_openscale_older_shape_and_epoch_ms() -> None:
    old = {"id": 3, "date": 1717219800000, "weight": 80.0, "fat": 21.0, "water": 0, "muscle": 0}
    readings = parse("openscale", "openScaleSync/measurements/insert", j(old), NOW)
    assert [(r.kind, r.value) for r in readings] == [("weight_kg", 80.0), ("body_fat_pct", 21.0)]
    assert readings[0].time == datetime(2024, 6, 1, 5, 30, tzinfo=UTC) and readings[0].device == "openscale:0"


def test_openscale_naive_date_needs_a_zone() -> None:
    payload = j({**OPENSCALE, "date": "2024-06-01T07:30"})
    assert "no UTC offset" in why("openscale", "openScaleSync/1/measurements/insert", payload)
    zurich = ProfileOptions(zone=ZoneInfo("Europe/Zurich"))
    [r, *_] = parse("openscale", "openScaleSync/1/measurements/insert", payload, NOW, zurich)
    assert r.time == datetime(2024, 6, 1, 5, 30, tzinfo=UTC)
    gap = j({**OPENSCALE, "date": "2024-03-31T02:30"})  # the spring-forward hour does not exist
    with pytest.raises(PayloadError, match="does not exist"):
        parse("openscale", "openScaleSync/1/measurements/insert", gap, NOW, zurich)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("openScaleSync/1/measurements/insert", {**OPENSCALE, "userId": 2}, "differs"),
        ("openScaleSync/1/measurements/insert", {**OPENSCALE, "date": "Jun 1, 2024 7:30:00 AM"}, "not an ISO 8601"),
        ("openScaleSync/1/measurements/insert", {**OPENSCALE, "date": 0}, "before 2000"),
        ("openScaleSync/1/measurements/insert", {**OPENSCALE, "date": "2031-01-01T00:00Z"}, "more than a day after"),
        ("openScaleSync/1/measurements/insert", {**OPENSCALE, "weight": 900.0}, "outside"),
        ("openScaleSync/1/measurements/insert", {**OPENSCALE, "water": 150.0}, "outside"),
        ("openScaleSync/1/measurements/insert", {k: v for k, v in OPENSCALE.items() if k != "date"}, "without a date"),
    ],
)
def test_openscale_bad_payloads(topic: str, payload: dict, reason: str) -> None:
    assert reason in why("openscale", topic, j(payload))


def test_openscale_delete_and_clear_are_ignored() -> None:
    with pytest.raises(IgnoredPayload, match="does not delete"):
        parse("openscale", "openScaleSync/1/measurements/delete", b'{"dateTime": "2024-06-01T07:30+0200"}', NOW)
    with pytest.raises(IgnoredPayload):
        parse("openscale", "openScaleSync/1/measurements/clear", b"true", NOW)


# -- fithub's own schema ----------------------------------------------------------------------------


def test_fithub_single_sample() -> None:
    payload = {"v": 1, "t": "2024-06-01T07:00:00.500+02:00", "seq": 7, "hr": 142, "power": 230, "cadence": 88,
               "speed": 8.3, "lat": 47.3769, "lon": 8.5417, "alt": 408, "dist": 1234.5, "temp": 21.5,
               "sport": "cycling", "person": "alice"}
    [s] = parse("fithub", "fithub/kickr-1/samples", j(payload), NOW)
    assert isinstance(s, SampleReading)
    assert s.channels == {"hr_bpm": 142.0, "power_w": 230.0, "cadence_rpm": 88.0, "speed_mps": 8.3, "lat_deg": 47.3769,
                          "lon_deg": 8.5417, "altitude_m": 408.0, "distance_m": 1234.5, "temperature_c": 21.5}
    assert s.time == datetime(2024, 6, 1, 5, 0, 0, 500000, tzinfo=UTC)
    assert (s.device, s.sport, s.person) == ("kickr-1", "cycling", "alice")
    assert s.key == "fithub|kickr-1|2024-06-01T05:00:00.500000+00:00|7"


def test_fithub_batch_with_epoch_seconds_and_milliseconds() -> None:
    t0 = int(datetime(2024, 6, 1, 7, 0, tzinfo=UTC).timestamp())
    payload = {"v": 1, "sport": "running", "samples": [{"t": t0, "hr": 140}, {"t": (t0 + 1) * 1000, "hr": 141},
                                                        {"t": t0 + 2.5, "hr": 142, "seq": 3}]}
    readings = parse("fithub", "fithub/watch/samples", j(payload), NOW)
    assert [r.time - readings[0].time for r in readings] == [timedelta(0), timedelta(seconds=1), timedelta(seconds=2.5)]
    assert {r.sport for r in readings} == {"running"}
    assert len({r.key for r in readings}) == 3
    # redelivery gives the same keys
    assert [r.key for r in parse("fithub", "fithub/watch/samples", j(payload), NOW + timedelta(hours=1))] == [r.key for r in readings]


def test_fithub_measurement_and_batch() -> None:
    [m] = parse("fithub", "fithub/scale/measurement",
                j({"v": 1, "t": "2024-06-01T06:00:00Z", "kind": "weight_kg", "value": 72.4, "extra": {"impedance_ohm": 480}}), NOW)
    assert (m.kind, m.value, m.extra, m.person) == ("weight_kg", 72.4, {"impedance_ohm": 480.0}, None)
    batch = {"v": 1, "person": "bob", "measurements": [
        {"t": "2024-06-01T06:00:00Z", "kind": "resting_hr_bpm", "value": 52},
        {"t": "2024-06-01T06:00:00Z", "kind": "hrv_rmssd_ms", "value": 61.5}]}
    readings = parse("fithub", "fithub/ring/measurement", j(batch), NOW)
    assert [(r.kind, r.person) for r in readings] == [("resting_hr_bpm", "bob"), ("hrv_rmssd_ms", "bob")]


def test_fithub_activity_file(own: Path) -> None:
    for name in ("morning_run.gpx", "evening_ride.tcx", "strength_sets.fit"):
        data = (own / "samples" / name).read_bytes()
        [a] = parse("fithub", "fithub/watch/activity", data, NOW)
        assert isinstance(a, ActivityReading)
        assert a.data == data and a.device == "watch" and a.name.endswith("." + name.rsplit(".", 1)[1])
    assert "not a FIT, GPX or TCX" in why("fithub", "fithub/watch/activity", b"PK\x03\x04 zip")
    assert "empty" in why("fithub", "fithub/watch/activity", b"")


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("fithub/d/samples", {"t": "2024-06-01T07:00:00Z", "hr": 140}, 'missing schema version "v"'),
        ("fithub/d/samples", {"v": 2, "t": "2024-06-01T07:00:00Z", "hr": 140}, "unsupported schema version"),
        ("fithub/d/samples", {"v": True, "t": "2024-06-01T07:00:00Z", "hr": 140}, "unsupported schema version"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "heart": 140}, "unknown field(s) 'heart'"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z"}, "at least one of"),
        ("fithub/d/samples", {"v": 1, "hr": 140}, "missing time t"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00", "hr": 140}, "no UTC offset"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "hr": 400}, "hr = 400 is outside"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "hr": None}, "hr must be a number, got null"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "lat": 47.1}, "lat and lon"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "lat": 91, "lon": 8}, "outside"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "hr": 140, "seq": -1}, "seq must be"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "hr": 140, "sport": "Cycling!"}, "sport"),
        ("fithub/d/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "hr": 140, "person": ""}, "person"),
        ("fithub/d/samples", {"v": 1, "t": [], "hr": 140}, "t must be an ISO 8601 string or epoch"),
        ("fithub/d/samples", {"v": 1, "samples": []}, "non-empty array"),
        ("fithub/d/samples", {"v": 1, "samples": [{"t": 1717225200, "hr": 140}, 5]}, "samples[1]: expected an object"),
        ("fithub/d/samples", {"v": 1, "samples": [{"t": 1717225200, "hr": 140}, {"t": 1717225200, "hr": 141}]},
         "samples[1]: a second sample"),
        ("fithub/d/samples", {"v": 1, "samples": [{"t": 1717225200, "hr": 140}], "hr": 150}, "unknown field(s) 'hr'"),
        ("fithub/d/measurement", {"v": 1, "t": "2024-06-01T06:00:00Z", "kind": "weight", "value": 72}, "unknown measurement kind"),
        ("fithub/d/measurement", {"v": 1, "t": "2024-06-01T06:00:00Z", "kind": "weight_kg", "value": 900}, "outside"),
        ("fithub/d/measurement", {"v": 1, "t": "2024-06-01T06:00:00Z", "kind": "weight_kg"}, "missing value"),
        ("fithub/d/measurement", {"v": 1, "t": "2024-06-01T06:00:00Z", "kind": "weight_kg", "value": 70, "extra": {"fat": 2}},
         "unknown extra"),
        ("fithub/d+/samples", {"v": 1, "t": "2024-06-01T07:00:00Z", "hr": 140}, "wildcard"),
    ],
)
def test_fithub_schema_is_strict(topic: str, payload: dict, reason: str) -> None:
    assert reason in why("fithub", topic, j(payload))


def test_fithub_unknown_message_type_is_ignored() -> None:
    with pytest.raises(IgnoredPayload):
        parse("fithub", "fithub/d/settings", b"{}", NOW)


# -- all profiles -------------------------------------------------------------------------------------


def test_unknown_profile() -> None:
    assert "unknown payload profile" in why("garmin", "x/y", b"{}")


def test_every_kind_and_channel_has_a_plausible_range() -> None:
    assert set(MEASUREMENT_KINDS) <= set(RANGES) and set(CHANNELS) <= set(RANGES)


TOPICS = {
    "theengs": THEENGS, "omg": OMG, "esphome": "node/sensor/scale_weight/state",
    "openscale": "openScaleSync/1/measurements/insert", "fithub": "fithub/dev/samples",
}  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)
# Objects built from the fields the profiles read, so the fuzzing reaches past the
# first "unknown field" check.
FIELDS = ["v", "t", "seq", "hr", "power", "lat", "lon", "samples", "kind", "value", "extra", "id", "weight", "unit",
          "impedance", "weighing_mode", "steps", "act_bpm", "date", "userId", "body_fat", "fat", "muscle", "person", "sport"]
NEAR_VALID = st.dictionaries(
    st.sampled_from(FIELDS),
    st.sampled_from([1, 0, -1, 72.5, 1e308, 1717225200, 1717225200123, "kg", "lbs", "2024-06-01T07:00:00Z",
                     "2024-06-01T07:00", "person", "weight_kg", "C4:7C:8D:6A:1B:2C", None, True, [], {},
                     [{"t": 1717225200, "hr": 140}], {"impedance_ohm": 500}, 2**70]),
    max_size=8,
)


def _check(profile: str, payload: bytes, retained: bool = False, zone: str | None = None) -> None:
    options = ProfileOptions(zone=ZoneInfo(zone) if zone else None, esphome_sensors={"scale_weight": "weight_kg:lb"})
    try:
        readings = parse_strict(profile, TOPICS[profile], payload, NOW, options, retained=retained)
    except PayloadError:
        return
    for r in readings:  # what comes out is SI, UTC and finite
        assert r.time.tzinfo is not None and r.time.utcoffset() == timedelta(0) or isinstance(r, ActivityReading)
        values = list(r.channels.values()) if isinstance(r, SampleReading) else [getattr(r, "value", 0.0)]
        assert all(math.isfinite(v) for v in values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(PROFILES), payload=st.binary(max_size=200), retained=st.booleans())
def test_random_bytes_raise_only_payload_error(profile: str, payload: bytes, retained: bool) -> None:
    _check(profile, payload, retained)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(PROFILES), value=JSON_VALUES)
def test_random_json_raises_only_payload_error(profile: str, value) -> None:
    _check(profile, json.dumps(value).encode())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(PROFILES), value=NEAR_VALID, zone=st.sampled_from([None, "Europe/Zurich", "Pacific/Kiritimati"]))
def test_near_valid_json_raises_only_payload_error(profile: str, value: dict, zone: str | None) -> None:
    _check(profile, json.dumps(value).encode(), zone=zone)


TIME_TEXT = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.text(max_size=30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=TIME_TEXT, zone=st.sampled_from([None, "Europe/Zurich", "America/St_Johns"]))
def test_any_time_value_raises_only_payload_error(t, zone: str | None) -> None:
    _check("fithub", json.dumps({"v": 1, "t": t, "hr": 120}).encode(), zone=zone)
    _check("openscale", json.dumps({"date": t, "weight": 70.0}).encode(), zone=zone)


# -- the fithub samples fast path -----------------------------------------------------------------------
#
# _samples_fast must accept exactly what the strict path accepts, with the same
# readings, and leave everything else to it (or raise the very error it would).

from connectors.mqtt import profiles_fithub  # noqa: E402
from connectors.mqtt.profiles_common import EARLIEST, load_object  # noqa: E402
from connectors.mqtt.utctext import naive_utc_text  # noqa: E402

FAST_TOPIC = "fithub/strap-7/samples"
NOW_S = NOW.timestamp()
# Times at and around every boundary the paths check, in each form a device may send.
SAMPLE_TIMES = [
    NOW_S - 3600, NOW_S - 0.0000004, int(NOW_S * 1000) - 1, NOW_S + 86400, NOW_S + 86400.000001, NOW_S + 86401,
    int(EARLIEST.timestamp()), EARLIEST.timestamp() - 0.0000004, EARLIEST.timestamp() - 1, 1e11, 1e11 + 1, 0, -1,
    int(NOW_S), 2**64, -(2**64), 1e308, "2024-06-01T07:00:00.250Z", "2024-06-01T09:00:00+02:00",
    "2024-06-01T07:00:00", "2024-13-01T07:00:00Z", True, None, [],
]
SAMPLE_VALUES = [0, 1, 19, 20, 250, 251, 20.0, 249.99, 250.0000001, -0.0, -1, 3000, 3000.5, 60, 89.5, -90, 180,
                 -180.5, 5_000_000, 10**400 // 10**390, 2**80, "140", True, None, {}]
SAMPLE_KEYS = ["t", "seq", "hr", "power", "cadence", "speed", "lat", "lon", "alt", "dist", "temp", "heart", "v"]
SAMPLE_ITEM = st.dictionaries(
    st.sampled_from(SAMPLE_KEYS),
    st.one_of(st.sampled_from(SAMPLE_TIMES), st.sampled_from(SAMPLE_VALUES), st.integers(min_value=-2, max_value=2**64)),
    max_size=6,
)


def _fast_and_strict(payload: bytes, zone: str | None = None):
    """(fast readings or None or the error it raised, strict readings or its error)."""
    options = ProfileOptions(zone=ZoneInfo(zone) if zone else None)
    data = load_object(FAST_TOPIC, payload)
    results = []
    for path in (profiles_fithub._samples_fast, profiles_fithub._samples_strict):
        try:
            results.append(path("fithub", FAST_TOPIC, "strap-7", data, NOW, options))
        except PayloadError as exc:
            results.append(exc)
    return results


def _agree(payload: bytes, zone: str | None = None) -> list | None:
    fast, strict = _fast_and_strict(payload, zone)
    if isinstance(fast, PayloadError):  # only the header check may raise, and with the strict path's words
        assert isinstance(strict, PayloadError) and str(fast) == str(strict)
        return None
    if fast is not None:
        assert not isinstance(strict, PayloadError), f"fast path accepted what the strict path refuses: {strict}"
        assert fast == strict
        assert [r.key for r in fast] == [r.key for r in strict]
        assert all(r.time.tzinfo is UTC for r in fast)
    return fast


def test_fast_path_takes_the_usual_messages_and_reads_them_like_the_strict_path() -> None:
    t_ms = int(NOW_S * 1000) - 60_000
    single = {"v": 1, "t": t_ms, "seq": 17, "hr": 141, "power": 230.0, "sport": "cycling", "person": "alice"}
    batch = {"v": 1, "sport": "running", "samples": [
        {"t": t_ms + 250 * i, "seq": i, "hr": 140 + i, "lat": 47.3769 + i / 1e5, "lon": 8.5417, "dist": 2.4 * i}
        for i in range(50)]}  # fmt: skip
    seconds = {"v": 1, "samples": [{"t": NOW_S - 60 + i + 0.5, "cadence": 88} for i in range(10)]}
    iso = {"v": 1, "samples": [{"t": "2024-06-01T07:00:00.250Z", "hr": 120}, {"t": "2024-06-01T09:00:01+02:00", "hr": 121}]}
    for body in (single, batch, seconds, iso):
        readings = _agree(json.dumps(body).encode())
        assert readings, f"the fast path did not take {str(body)[:80]}"
    [r] = _agree(json.dumps(single).encode())
    assert r.key == f"fithub|strap-7|{datetime.fromtimestamp(t_ms / 1000, UTC).isoformat(timespec='microseconds')}|17"
    assert r.channels == {"hr_bpm": 141.0, "power_w": 230.0} and r.sport == "cycling" and r.person == "alice"
    assert all(type(v) is float for r in _agree(json.dumps(batch).encode()) for v in r.channels.values())


@pytest.mark.parametrize("body", [
    {"v": 1, "t": 1717225200, "hr": 120, "heart": 120},  # unknown field
    {"v": 2, "t": 1717225200, "hr": 120},
    {"v": 1, "t": 1717225200},  # no channel
    {"v": 1, "t": 1717225200, "lat": 47.0},
    {"v": 1, "samples": []},
    {"v": 1, "samples": [{"t": 1717225200, "hr": 120}, {"t": 1717225200, "hr": 121}]},  # same key twice
    {"v": 1, "samples": [{"t": 1717225200, "hr": 120, "sport": "running"}]},
    {"v": 1, "sport": "Running", "samples": [{"t": 1717225200, "hr": 120}]},
    {"v": 1, "t": 946684800, "hr": 120},  # 2000-01-01: before EARLIEST
    {"v": 1, "t": 1717225200, "hr": 120, "seq": -1},
    {"v": 1, "t": 1717225200, "hr": 250.01},
    {"v": 1, "t": "2024-06-01T07:00:00", "hr": 120},  # naive
], ids=lambda b: json.dumps(b)[:60])  # fmt: skip
def test_fast_path_leaves_every_refusal_to_the_strict_path(body: dict) -> None:
    fast, strict = _fast_and_strict(json.dumps(body).encode())
    assert isinstance(strict, PayloadError)
    assert fast is None or (isinstance(fast, PayloadError) and str(fast) == str(strict))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(SAMPLE_ITEM, min_size=1, max_size=4), batch=st.booleans(),
       zone=st.sampled_from([None, "Europe/Zurich"]))
def test_fast_path_agrees_with_the_strict_path_on_near_valid_samples(items: list, batch: bool, zone: str | None) -> None:
    body = {"v": 1, "samples": items} if batch else {"v": 1, **items[0]}
    _agree(json.dumps(body).encode(), zone)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=st.floats(min_value=EARLIEST.timestamp() - 2, max_value=NOW_S + 86402) | st.integers(
    min_value=int(EARLIEST.timestamp() * 1000) - 2000, max_value=int(NOW_S * 1000) + 86_402_000))
def test_fast_path_times_and_keys_match_the_strict_path(t) -> None:
    fast = _agree(json.dumps({"v": 1, "samples": [{"t": t, "hr": 120}, {"t": t, "seq": 3, "hr": 121}]}).encode())
    if fast is not None:
        assert fast[0].time == fast[1].time and fast[1].key.endswith("|3")


@settings(max_examples=500, deadline=None)
@given(when=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)),
       sep=st.sampled_from(["T", " "]))
def test_naive_utc_text_is_isoformat_without_the_offset(when: datetime, sep: str) -> None:
    assert naive_utc_text(when, sep) == when.isoformat(sep, timespec="microseconds").removesuffix("+00:00")

"""Device -> person map, scale attribution, and the unassigned list (both databases)."""

from __future__ import annotations

import json
from datetime import datetime, time, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli import app
from connectors.mqtt.people import OPTIONS, Decision, decide, load_people
from connectors.mqtt.profiles import parse
from connectors.mqtt.readings import ActivityReading, MeasurementReading, SampleReading
from hub.errors import ConfigError, NotFound
from hub.model import DEFAULT_PERSON
from hub.storage import Store, unassigned
from hub.storage.schema import outbox_events, unassigned_readings

UTC = timezone.utc
SCALE = "C4:7C:8D:6A:1B:2C"
RULES = {"alice": {"weight_kg": [50, 65], "hours": "06:00-10:00"}, "bob": {"weight_kg": [75, 95]},
         "carol": {"weight_kg": [60, 70], "hours": "18:00-23:00"}}  # fmt: skip


def weigh_in(kg: float, when: datetime, device: str = SCALE, **kw) -> MeasurementReading:
    return MeasurementReading(device=device, time=when, kind="weight_kg", value=kg, key=f"k|{device}|{when.isoformat()}|{kg}", **kw)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 6, 1, hour, minute, tzinfo=UTC)


# -- config -----------------------------------------------------------------------------------------


def test_load_people_normalises_devices_and_parses_rules() -> None:
    people = load_people({"c4-7c-8d-6a-1b-2c": "alice", "openscale:1": "bob"}, RULES, "Europe/Zurich")
    assert people.devices == {SCALE: "alice", "openscale:1": "bob"}
    alice = next(r for r in people.rules if r.person == "alice")
    assert (alice.weight_min_kg, alice.weight_max_kg, alice.window) == (50.0, 65.0, (time(6), time(10)))
    assert set(OPTIONS) == {"devices", "persons", "timezone"}


def test_load_people_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_people(
            {"bad#device": "alice", "C47C8D6A1B2C": "", "AA:BB:CC:DD:EE:FF": "x", "aabbccddeeff": "y"},
            {"dave": {"weight_kg": [90, 80]}, "erin": {"weight_kg": [50, 60], "hours": "25:00-02:00"},
             "fred": {"weight_kg": [50, 60], "colour": "red"}, "gina": "heavy"},
            "Mars/Olympus",
        )  # fmt: skip
    message = str(info.value)
    for part in ("'bad#device' is not a device id", "person must be a non-empty name", "listed twice",
                 "persons.dave.weight_kg", "persons.erin.hours", "unknown key(s) colour", "persons.gina",
                 "'Mars/Olympus' is not an IANA time zone"):  # fmt: skip
        assert part in message, part


# -- attribution ------------------------------------------------------------------------------------


def decide_one(people, reading) -> Decision:
    [(_, decision)] = decide(people, [reading])
    return decision


def test_weight_range_and_time_window_pick_one_person() -> None:
    people = load_people({}, RULES, "UTC")
    assert decide_one(people, weigh_in(58.0, at(7))).person == "alice"
    assert decide_one(people, weigh_in(80.0, at(3))).person == "bob"  # bob has no window
    assert decide_one(people, weigh_in(66.0, at(19))).person == "carol"


def test_no_match_and_two_matches_stay_unassigned() -> None:
    people = load_people({}, RULES, "UTC")
    nobody = decide_one(people, weigh_in(58.0, at(12)))  # alice's weight, outside her window
    assert nobody.person is None and "no person's rules match 58.0 kg at 12:00" in nobody.why
    alice_or_carol = load_people({}, {**RULES, "carol": {"weight_kg": [60, 70]}}, "UTC")
    both = decide_one(alice_or_carol, weigh_in(62.0, at(7)))
    assert both.person is None and "ambiguous: alice, carol" in both.why


def test_window_is_local_time_and_may_wrap_midnight() -> None:
    people = load_people({}, {"nina": {"weight_kg": [50, 60], "hours": "22:00-02:00"}}, "Europe/Zurich")
    # 21:30 UTC is 23:30 in Zurich (summer time)
    assert decide_one(people, weigh_in(55.0, at(21, 30))).person == "nina"
    assert decide_one(people, weigh_in(55.0, at(23, 30))).person == "nina"  # 01:30 local
    assert decide_one(people, weigh_in(55.0, at(0, 30))).person is None  # 02:30 local: window is [22:00, 02:00)
    assert decide_one(people, weigh_in(55.0, at(19, 30))).person is None  # 21:30 local


def test_device_map_and_payload_person_win_over_rules() -> None:
    people = load_people({SCALE: "bob"}, RULES, "UTC")
    assert decide_one(people, weigh_in(58.0, at(7))).person == "bob"
    assert decide_one(people, weigh_in(58.0, at(7), device="other", person="zoe")).person == "zoe"
    # the methods the MQTT source calls per reading
    assert people.person_for_device("c47c8d6a1b2c") == "bob" and people.person_for_device("c4-7c-8d-6a-1b-2c") == "bob"
    assert people.person_for_device("unknown") is None and people.person_for_device("bad#id") is None
    assert people.attribute(weigh_in(80.0, at(3), device="AA:BB:CC:DD:EE:FF")) == "bob"  # by the rules
    assert people.attribute(weigh_in(58.0, at(12), device="AA:BB:CC:DD:EE:FF")) is None


def test_body_composition_follows_the_weigh_in() -> None:
    readings = parse("openscale", "openScaleSync/1/measurements/insert",
                     json.dumps({"userId": 1, "date": "2024-06-01T07:30Z", "weight": 58.0, "body_fat": 24.0}).encode(),
                     at(8))  # fmt: skip
    people = load_people({}, RULES, "UTC")
    assert [(r.kind, d.person) for r, d in decide(people, readings)] == [("weight_kg", "alice"), ("body_fat_pct", "alice")]
    late = [r for r in readings if r.kind != "weight_kg"]  # body fat without its weight: nobody to follow
    assert decide(people, late)[0][1].person is None


def test_samples_and_activities_from_unknown_devices_go_to_the_default_person() -> None:
    people = load_people({"trainer": "alice"}, {}, "UTC")
    sample = SampleReading(device="kickr", time=at(7), channels={"power_w": 200.0}, key="s")
    activity = ActivityReading(device="trainer", name="a.fit", data=b"x")
    steps = MeasurementReading(device="band", time=at(7), kind="steps_day_cumulative", value=10.0, key="m")
    decisions = [d.person for _, d in decide(people, [sample, activity, steps])]
    assert decisions == [DEFAULT_PERSON, "alice", None]


# -- the unassigned list -------------------------------------------------------------------------------


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    with Store(db_url, tmp_path / "home") as s:
        yield s


def scale_readings(*kgs_and_times) -> list[MeasurementReading]:
    topic = "home/TheengsGateway/BTtoMQTT/C47C8D6A1B2C"
    readings = []
    for kg, when in kgs_and_times:
        payload = json.dumps({"id": SCALE, "weighing_mode": "person", "unit": "kg", "weight": kg, "impedance": 480})
        readings += parse("theengs", topic, payload.encode(), when)
    return readings


def test_add_is_idempotent_and_lists_oldest_first(store: Store) -> None:
    readings = scale_readings((58.2, at(12)), (80.1, at(9)))
    assert unassigned.add_readings(store.engine, readings, source="mqtt:theengs", received_at=at(12)) == 2
    # the broker delivers the same messages again after a crash
    assert unassigned.add_readings(store.engine, readings, source="mqtt:theengs", received_at=at(13)) == 0
    rows = unassigned.listing(store.engine)
    assert [(u.value, u.time, u.device, u.kind, u.extra) for u in rows] == [
        (80.1, at(9), SCALE, "weight_kg", {"impedance_ohm": 480.0}),
        (58.2, at(12), SCALE, "weight_kg", {"impedance_ohm": 480.0}),
    ]
    assert all(u.person is None and u.source == "mqtt:theengs" and u.received_at == at(12) for u in rows)


def test_add_joins_the_callers_transaction(store: Store) -> None:
    readings = scale_readings((58.2, at(12)))
    with pytest.raises(RuntimeError):
        with store.engine.begin() as conn:
            unassigned.add(conn, readings, source="mqtt:theengs", received_at=at(12))
            raise RuntimeError("the batch failed after the insert")
    assert unassigned.listing(store.engine) == []


def test_assign_moves_into_measurements_once(store: Store) -> None:
    unassigned.add_readings(store.engine, scale_readings((58.2, at(12)), (80.1, at(9))), source="mqtt:theengs", received_at=at(12))
    first, second = unassigned.listing(store.engine)
    result = unassigned.assign(store.engine, [second.id], "alice", now=at(14))
    assert result.assigned == [second.id] and result.unchanged == []
    [m] = store.measurements(person="alice")
    assert (m.kind, m.time, m.value) == ("weight_kg", at(12), 58.2)
    assert m.provenance is not None and m.provenance.source == "mqtt:theengs"
    assert [u.id for u in unassigned.listing(store.engine)] == [first.id]
    # again: nothing changes, no second measurement, no second event
    again = unassigned.assign(store.engine, [second.id], "alice", now=at(15))
    assert again.assigned == [] and again.unchanged == [second.id]
    assert len(store.measurements(person="alice")) == 1
    with store.engine.connect() as conn:
        events = conn.execute(sa.select(outbox_events.c.kind, outbox_events.c.person, outbox_events.c.payload)).all()
    assert [(k, p) for k, p, _ in events] == [("measurement.stored", "alice")]
    assert json.loads(events[0][2])["kinds"] == ["weight_kg"]
    # a redelivered message after the assignment does not bring the reading back
    unassigned.add_readings(store.engine, scale_readings((58.2, at(12))), source="mqtt:theengs", received_at=at(16))
    assert [u.id for u in unassigned.listing(store.engine)] == [first.id]
    assigned = [u for u in unassigned.listing(store.engine, include_assigned=True) if u.id == second.id]
    assert assigned[0].person == "alice" and assigned[0].assigned_at == at(14)


def test_reassign_moves_the_measurement(store: Store) -> None:
    unassigned.add_readings(store.engine, scale_readings((70.0, at(7))), source="mqtt:theengs", received_at=at(7))
    [u] = unassigned.listing(store.engine)
    unassigned.assign(store.engine, [u.id], "alice")
    unassigned.assign(store.engine, [u.id], "bob")
    assert store.measurements(person="alice") == []
    assert [m.value for m in store.measurements(person="bob")] == [70.0]


def test_assign_is_all_or_nothing(store: Store) -> None:
    unassigned.add_readings(store.engine, scale_readings((70.0, at(7))), source="mqtt:theengs", received_at=at(7))
    [u] = unassigned.listing(store.engine)
    with pytest.raises(NotFound, match="no unassigned reading.*998, 999"):
        unassigned.assign(store.engine, [u.id, 999, 998], "alice")
    assert store.measurements() == []
    assert [x.id for x in unassigned.listing(store.engine)] == [u.id]


def test_migrated_table_enforces_the_key(store: Store) -> None:
    row = {"key": "k", "device": SCALE, "time_utc": at(7), "kind": "weight_kg", "value": 70.0, "extra": "{}",
           "source": "mqtt:x", "received_at": at(7)}  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(sa.insert(unassigned_readings), [row, row])


def test_cli_lists_and_assigns(store: Store, db_url: str, tmp_path: Path) -> None:
    unassigned.add_readings(store.engine, scale_readings((58.2, at(12)), (80.1, at(9))), source="mqtt:theengs", received_at=at(12))
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, ["--home", str(tmp_path / "home"), "--db", db_url, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    listed = json.loads(run("measurements", "unassigned", "--json").stdout)
    assert [(x["value"], x["device"]) for x in listed] == [(80.1, SCALE), (58.2, SCALE)]
    assert "58.2" in run("measurements", "unassigned").stdout
    out = run("measurements", "assign", str(listed[0]["id"]), "--person", "bob").stdout
    assert "assigned to bob: 1" in out
    assert "already theirs: 1" in run("measurements", "assign", str(listed[0]["id"]), "--person", "bob").stdout
    assert "no unassigned reading(s) 4242" in run("measurements", "assign", "4242", "--person", "bob", code=1).output
    # the plain listing still works next to the subcommands
    assert json.loads(run("measurements", "--kind", "weight_kg", "--json").stdout) == [
        {"person": "bob", "kind": "weight_kg", "time": at(9).isoformat(), "value": 80.1}
    ]
    assert [x["value"] for x in json.loads(run("measurements", "unassigned", "--json").stdout)] == [58.2]

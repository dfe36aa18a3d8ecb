"""Whose reading is it: the device -> person map and scale attribution.

Decided in this order, first answer wins:

1. the payload names its person (fithub's own schema may);
2. the device is in the ``devices`` table (a watch, a band, a one-person scale);
3. a weigh-in from a shared scale: the ``persons`` rules. Each person may give a
   weight range in kg and a time-of-day window (local time in ``timezone``); the
   weigh-in belongs to the one person whose rules it meets. None or several
   (two people of similar weight) -> unassigned: kept in the unassigned list
   (:mod:`hub.storage.unassigned`) until ``fithub measurements assign`` resolves it.
   The body-composition values of the same weigh-in (same device and time) follow
   the weight's decision, so one weigh-in is never split between two people.
4. anything else from an unknown device: measurements are unassigned; live samples
   and activities go to the hub's default person (they are not a scale's business
   and an activity cannot wait in a list).

Config (a slice of the MQTT source's section, see :data:`OPTIONS`)::

    [sources.mqtt.devices]
    "C4:7C:8D:6A:1B:2C" = "alice"      # any MAC spelling; also ESPHome nodes, openscale:<id>
    [sources.mqtt.persons.alice]
    weight_kg = [50, 65]
    hours = "06:00-10:00"              # optional; may wrap midnight ("22:00-02:00")
    [sources.mqtt.persons.bob]
    weight_kg = [75, 95]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.mqtt.profiles_common import RANGES, canonical_device
from connectors.mqtt.readings import MeasurementReading, Reading
from hub.errors import ConfigError
from hub.model import DEFAULT_PERSON
from hub.options import Option

OPTIONS: dict[str, Option] = {
    "devices": Option(
        "table",
        "Device id -> person. MAC addresses in any spelling, ESPHome node names, openscale:<userId>, fithub device ids.",
        default={},
        example={"C4:7C:8D:6A:1B:2C": "alice", "openscale:1": "bob"},
    ),
    "persons": Option(
        "table",
        "Shared-scale attribution: person -> weight_kg = [min, max] and optional hours = \"HH:MM-HH:MM\" (local time). "
        "A weigh-in matching exactly one person is theirs; otherwise it waits in `fithub measurements unassigned`.",
        default={},
        example={"alice": {"weight_kg": [50, 65], "hours": "06:00-10:00"}, "bob": {"weight_kg": [75, 95]}},
    ),
    "timezone": Option("str", "IANA time zone of the hours windows in persons.", default="UTC", example="Europe/Zurich"),
}

# The kinds a bathroom scale measures in one weigh-in; they share the weight's owner.
WEIGH_IN_KINDS = frozenset({
    "weight_kg", "body_fat_pct", "body_water_pct", "muscle_mass_kg", "bone_mass_kg", "lean_mass_kg",
    "visceral_fat_rating", "bmi_kg_m2", "basal_metabolic_rate_j",
})  # fmt: skip

_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$")
_PERSON = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


@dataclass(frozen=True)
class PersonRule:
    person: str
    weight_min_kg: float
    weight_max_kg: float
    window: tuple[time, time] | None = None  # local [start, end), wraps midnight when start > end

    def matches(self, weight_kg: float, local: time) -> bool:
        if not self.weight_min_kg <= weight_kg <= self.weight_max_kg:
            return False
        if self.window is None:
            return True
        start, end = self.window
        if start <= end:
            return start <= local < end
        return local >= start or local < end


@dataclass(frozen=True)
class People:
    devices: Mapping[str, str]  # canonical device id -> person
    rules: tuple[PersonRule, ...]
    zone: ZoneInfo

    def person_for_device(self, device: str) -> str | None:
        """The mapped person of ``device`` (any MAC spelling), or None."""
        canonical = canonical_device(device)
        return self.devices.get(canonical) if canonical is not None else None

    def attribute(self, reading: MeasurementReading) -> str | None:
        """One measurement's person, None for the unassigned list. Prefer
        :func:`decide` on a whole message: it keeps a weigh-in's body-composition
        values with their weight."""
        return decide(self, [reading])[0][1].person


@dataclass(frozen=True)
class Decision:
    """Whose a reading is; ``person`` None means "keep it in the unassigned list"."""

    person: str | None
    why: str


def load_people(devices: Mapping[str, Any] | None, persons: Mapping[str, Any] | None, timezone: str = "UTC") -> People:
    """Validated config; :class:`ConfigError` lists every problem at once."""
    problems: list[str] = []
    table: dict[str, str] = {}
    for raw, person in (devices or {}).items():
        device = canonical_device(str(raw))
        if device is None:
            problems.append(f"devices: {raw!r} is not a device id")
        elif not _valid_person(person):
            problems.append(f"devices.{raw}: person must be a non-empty name, got {person!r}")
        elif device in table and table[device] != person:
            problems.append(f"devices: {raw!r} is listed twice ({table[device]} and {person})")
        else:
            table[device] = person
    rules = []
    for person, spec in (persons or {}).items():
        rule = _rule(person, spec, problems)
        if rule is not None:
            rules.append(rule)
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append(f"timezone: {timezone!r} is not an IANA time zone")
        zone = ZoneInfo("UTC")
    if problems:
        raise ConfigError("MQTT people: " + "; ".join(problems))
    return People(devices=table, rules=tuple(rules), zone=zone)


def _valid_person(person: Any) -> bool:
    return isinstance(person, str) and bool(_PERSON.match(person)) and person == person.strip()


def _rule(person: Any, spec: Any, problems: list[str]) -> PersonRule | None:
    where = f"persons.{person}"
    if not _valid_person(person):
        problems.append(f"persons: {person!r} is not a person name")
        return None
    if not isinstance(spec, Mapping):
        problems.append(f"{where}: expected a table with weight_kg (and optional hours)")
        return None
    unknown = sorted(set(spec) - {"weight_kg", "hours"})
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
    bounds = spec.get("weight_kg")
    low_limit, high_limit = RANGES["weight_kg"]
    if (
        not isinstance(bounds, (list, tuple)) or len(bounds) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        or not low_limit <= bounds[0] < bounds[1] <= high_limit
    ):  # fmt: skip
        problems.append(f"{where}.weight_kg: expected [min, max] in kg with {low_limit:g} <= min < max <= {high_limit:g}, got {bounds!r}")
        return None
    window = None
    hours = spec.get("hours")
    if hours is not None:
        match = _HOURS.match(hours) if isinstance(hours, str) else None
        if match is None:
            problems.append(f'{where}.hours: expected "HH:MM-HH:MM", got {hours!r}')
            return None
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        window = (time(h1, m1), time(h2, m2))
        if window[0] == window[1]:
            problems.append(f"{where}.hours: an empty window ({hours})")
            return None
    return PersonRule(person=person, weight_min_kg=float(bounds[0]), weight_max_kg=float(bounds[1]), window=window)


def attribute_weight(people: People, reading: MeasurementReading) -> Decision:
    """The person a weigh-in (a ``weight_kg`` reading) belongs to by the rules."""
    local = reading.time.astimezone(people.zone)
    matching = [r.person for r in people.rules if r.matches(reading.value, local.time())]
    matching = sorted(set(matching))
    at = f"{reading.value:.1f} kg at {local:%H:%M} {people.zone.key}"
    if len(matching) == 1:
        return Decision(matching[0], f"the only person whose rules match {at}")
    if matching:
        return Decision(None, f"ambiguous: {', '.join(matching)} all match {at}")
    return Decision(None, f"no person's rules match {at}")


def decide(
    people: People, readings: Iterable[Reading], default_person: str = DEFAULT_PERSON
) -> list[tuple[Reading, Decision]]:
    """A :class:`Decision` for every reading of one message (or batch), in order.
    Samples and activities from unmapped devices go to ``default_person``."""
    readings = list(readings)
    # One weigh-in = one device and time; its weight decides for its other values.
    weigh_ins: dict[tuple[str, object], Decision] = {}
    for r in readings:
        if isinstance(r, MeasurementReading) and r.kind == "weight_kg" and not r.person and people.person_for_device(r.device) is None:
            weigh_ins.setdefault((r.device, r.time), attribute_weight(people, r))
    result = []
    for r in readings:
        result.append((r, _decide_one(people, r, weigh_ins, default_person)))
    return result


def _decide_one(
    people: People, r: Reading, weigh_ins: Mapping[tuple[str, object], Decision], default_person: str
) -> Decision:
    if r.person:
        return Decision(r.person, "named in the payload")
    mapped = people.person_for_device(r.device)
    if mapped is not None:
        return Decision(mapped, f"device {r.device} belongs to {mapped}")
    if not isinstance(r, MeasurementReading):
        return Decision(default_person, f"device {r.device} is not in the devices table; samples and activities go to {default_person}")
    if r.kind in WEIGH_IN_KINDS and (r.device, r.time) in weigh_ins:
        return weigh_ins[(r.device, r.time)]
    return Decision(None, f"device {r.device} is not in the devices table and no weigh-in rule applies to {r.kind}")

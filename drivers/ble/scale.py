"""Scale readings: whose weighing it is, and the file that stores it.

Attribution, first match wins: the scale's user index when the config maps it to
a person; else the one person whose configured weight range holds the weight;
else the default person (an ambiguous or unknown weighing is still kept, and the
reason is returned so it can be logged).

A weighing is stored as a FIT weight file (``file_id.type = weight`` plus one
``weight_scale`` message) through the normal import pipeline, so it lands in the
raw archive, survives ``fithub reprocess`` like any scale's export, and the same
weighing sent again (scales re-send their memory on every connection) produces
the same bytes and is recognised as a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from garmin_fit_sdk import Encoder, Profile

from hub.errors import ConfigError

from .readings import ScaleReading

_MESG = Profile["mesg_num"]
_KCAL_J = 4184.0
# model measurement kind -> (FIT weight_scale field, factor from SI)
_FIT_FIELDS: dict[str, tuple[str, float]] = {
    "weight_kg": ("weight", 1.0),
    "body_fat_pct": ("percent_fat", 1.0),
    "body_water_pct": ("percent_hydration", 1.0),
    "muscle_mass_kg": ("muscle_mass", 1.0),
    "bone_mass_kg": ("bone_mass", 1.0),
    "bmi_kg_m2": ("bmi", 1.0),
    "basal_metabolic_rate_j": ("basal_met", 1 / _KCAL_J),
}


@dataclass(frozen=True)
class PersonRule:
    person: str
    user_index: int | None = None
    weight_range_kg: tuple[float, float] | None = None


def parse_persons(table: Mapping[str, Any], where: str = "persons") -> list[PersonRule]:
    """``{name: {user = 1, weight_kg = [50, 70]}}`` -> rules; every problem at once."""
    rules, problems = [], []
    for person, spec in (table or {}).items():
        if not isinstance(spec, Mapping):
            problems.append(f"{where}.{person} must be a table like {{ user = 1, weight_kg = [50, 70] }}, got {spec!r}")
            continue
        unknown = set(spec) - {"user", "weight_kg"}
        if unknown:
            problems.append(f"{where}.{person}: unknown keys {sorted(unknown)} (known: user, weight_kg)")
        user = spec.get("user")
        if user is not None and (isinstance(user, bool) or not isinstance(user, int) or not 0 <= user < 255):
            problems.append(f"{where}.{person}.user must be the scale's user index 0-254, got {user!r}")
            user = None
        weights = spec.get("weight_kg")
        span = None
        if weights is not None:
            ok = isinstance(weights, (list, tuple)) and len(weights) == 2 and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights
            )
            if not ok or not 0 < weights[0] < weights[1]:
                problems.append(f"{where}.{person}.weight_kg must be [low, high] in kg with 0 < low < high, got {weights!r}")
            else:
                span = (float(weights[0]), float(weights[1]))
        rules.append(PersonRule(str(person), user, span))
    if problems:
        raise ConfigError("; ".join(problems))
    return rules


def attribute(reading: ScaleReading, rules: list[PersonRule], default: str) -> tuple[str, str]:
    """(person, how it was decided)."""
    if reading.user_index is not None:
        for rule in rules:
            if rule.user_index == reading.user_index:
                return rule.person, f"scale user {reading.user_index}"
    weight = reading.weight_kg
    if weight is not None:
        inside = [r for r in rules if r.weight_range_kg and r.weight_range_kg[0] <= weight <= r.weight_range_kg[1]]
        if len(inside) == 1:
            return inside[0].person, f"weight {weight:.1f} kg in {inside[0].person}'s range"
        if len(inside) > 1:
            names = ", ".join(r.person for r in inside)
            return default, f"weight {weight:.1f} kg fits several persons ({names}); kept for {default}"
    user = f"user {reading.user_index}" if reading.user_index is not None else "no user index"
    return default, f"no person matches ({user}, weight {weight if weight is not None else 'unknown'}); kept for {default}"


def weight_fit(reading: ScaleReading) -> bytes:
    """One weighing as a FIT weight file. Deterministic: the same weighing from the
    same scale gives the same bytes (the serial number is derived from the address)."""
    serial = int.from_bytes(hashlib.sha256(reading.sensor.encode()).digest()[:4], "big") or 1
    encoder = Encoder()
    encoder.write_mesg(
        {
            "mesg_num": _MESG["FILE_ID"],
            "type": "weight",
            "manufacturer": "development",
            "serial_number": serial,
            "time_created": reading.time,
        }
    )
    mesg: dict[str, Any] = {"mesg_num": _MESG["WEIGHT_SCALE"], "timestamp": reading.time}
    for kind, value in sorted(reading.values.items()):
        if kind in _FIT_FIELDS:
            name, factor = _FIT_FIELDS[kind]
            mesg[name] = value * factor
    if reading.user_index is not None:
        mesg["user_profile_index"] = reading.user_index
    encoder.write_mesg(mesg)
    return encoder.close()

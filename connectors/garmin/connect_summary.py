"""Garmin Connect activity summaries -> :class:`hub.model.Activity` (pure).

Garmin describes one activity in three JSON shapes with two unit systems:

* the web API's detail (``summaryDTO`` + ``activityTypeDTO``): SI units
  (m, s, m/s), kilocalories, times as ``"2018-03-08T11:23:22.0"``;
* the web API's list / overview items (``activityType`` + top-level values): the
  same units, times as ``"2018-03-08 11:23:22"``, except ``elapsedDuration``, which
  these items give in milliseconds;
* the account export's ``*_summarizedActivities.json`` entries: times in epoch
  milliseconds, durations in milliseconds, distance and elevation in centimetres,
  speeds in centimetres per millisecond (x10 = m/s), ``calories`` already scaled
  by 4.184 (kilojoules).

Everything is converted here, at the edge. Every shape carries ``activityId``,
which becomes ``source_id = "garmin_connect:<id>"``: the same activity from the API
and from the export is recognised as one workout without fuzzy matching.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hub.model import Activity, Device, Provenance

KCAL_J = 4184.0

# Connect activity type keys -> (sport, sub_sport) in the FIT vocabulary the model uses.
SPORTS: dict[str, tuple[str, str | None]] = {
    "running": ("running", None),
    "street_running": ("running", "street"),
    "track_running": ("running", "track"),
    "trail_running": ("running", "trail"),
    "treadmill_running": ("running", "treadmill"),
    "indoor_running": ("running", "indoor_running"),
    "virtual_run": ("running", "virtual_activity"),
    "cycling": ("cycling", None),
    "road_biking": ("cycling", "road"),
    "mountain_biking": ("cycling", "mountain"),
    "gravel_cycling": ("cycling", "gravel_cycling"),
    "indoor_cycling": ("cycling", "indoor_cycling"),
    "virtual_ride": ("cycling", "virtual_activity"),
    "e_bike_fitness": ("cycling", "e_bike_fitness"),
    "walking": ("walking", None),
    "casual_walking": ("walking", "casual_walking"),
    "speed_walking": ("walking", "speed_walking"),
    "hiking": ("hiking", None),
    "swimming": ("swimming", None),
    "lap_swimming": ("swimming", "lap_swimming"),
    "open_water_swimming": ("swimming", "open_water"),
    "cross_country_skiing": ("cross_country_skiing", None),
    "cross_country_skiing_ws": ("cross_country_skiing", None),
    "skate_skiing_ws": ("cross_country_skiing", "skate_skiing"),
    "resort_skiing_snowboarding": ("alpine_skiing", None),
    "resort_skiing_snowboarding_ws": ("alpine_skiing", None),
    "backcountry_skiing_snowboarding_ws": ("alpine_skiing", "backcountry"),
    "rowing": ("rowing", None),
    "indoor_rowing": ("rowing", "indoor_rowing"),
    "strength_training": ("training", "strength_training"),
    "cardio": ("training", "cardio_training"),
    "yoga": ("training", "yoga"),
    "elliptical": ("fitness_equipment", "elliptical"),
    "stand_up_paddleboarding": ("stand_up_paddleboarding", None),
    "fitness_equipment": ("fitness_equipment", None),
    "uncategorized": ("generic", None),
    "other": ("generic", None),
}
MULTISPORT_KEYS = ("multi_sport", "multisport")


class SummaryError(ValueError):
    """An entry lacks what an activity needs (start time) or has nonsense values."""


def sport_of(type_key: str | None) -> tuple[str, str | None]:
    key = (type_key or "").strip().lower()
    # An unknown key is kept as the sport: better "padel" than a silent "generic".
    return SPORTS.get(key, (key or "generic", None))


def is_multisport_parent(entry: dict[str, Any]) -> bool:
    type_key = _type_key(entry)
    return bool(entry.get("isMultiSportParent") or entry.get("parent") is True or type_key in MULTISPORT_KEYS)


def from_api(entry: dict[str, Any], origin: Provenance | None = None) -> Activity:
    """A web-API detail (``summaryDTO``) or list/overview item."""
    summary = entry.get("summaryDTO") if isinstance(entry.get("summaryDTO"), dict) else entry
    start = _api_time(summary.get("startTimeGMT") or entry.get("startTimeGMT"))
    if start is None:
        raise SummaryError(f"activity {entry.get('activityId')}: no startTimeGMT")
    local = _api_time(summary.get("startTimeLocal") or entry.get("startTimeLocal"))
    duration = _num(summary.get("duration"))
    elapsed = _num(summary.get("elapsedDuration"))
    if summary is entry and elapsed is not None and duration and elapsed > 50 * duration:
        elapsed /= 1000.0  # list/overview items give elapsedDuration in ms
    sport, sub_sport = sport_of(_type_key(entry))
    values = dict(
        elapsed_s=elapsed if elapsed is not None else duration,
        moving_s=_num(summary.get("movingDuration")),
        distance_m=_num(summary.get("distance")),
        ascent_m=_num(summary.get("elevationGain")),
        descent_m=_num(summary.get("elevationLoss")),
        energy_j=_scaled(summary.get("calories"), KCAL_J),
        avg_hr_bpm=_num(summary.get("averageHR")),
        max_hr_bpm=_num(summary.get("maxHR")),
        avg_power_w=_num(summary.get("averagePower", summary.get("avgPower"))),
        max_power_w=_num(summary.get("maxPower")),
        avg_speed_mps=_num(summary.get("averageSpeed")),
        max_speed_mps=_num(summary.get("maxSpeed")),
        avg_cadence_rpm=_cadence(summary, sport),
    )
    manufacturer = (entry.get("metadataDTO") or {}).get("manufacturer") if isinstance(entry.get("metadataDTO"), dict) else entry.get("manufacturer")
    return _activity(entry, start, local, sport, sub_sport, values, manufacturer, entry.get("activityName"), origin)


def from_export(entry: dict[str, Any], origin: Provenance | None = None) -> Activity:
    """An entry of the account export's ``summarizedActivities.json``."""
    start = _epoch_ms(entry.get("startTimeGmt", entry.get("beginTimestamp")))
    if start is None:
        raise SummaryError(f"activity {entry.get('activityId')}: no startTimeGmt")
    local_ms = _num(entry.get("startTimeLocal"))
    local = _epoch_ms(local_ms) if local_ms is not None else None
    sport, sub_sport = sport_of(_type_key(entry))
    duration = _scaled(entry.get("duration"), 0.001)
    elapsed = _scaled(entry.get("elapsedDuration"), 0.001)
    values = dict(
        elapsed_s=elapsed if elapsed is not None else duration,
        moving_s=_scaled(entry.get("movingDuration"), 0.001),
        distance_m=_scaled(entry.get("distance"), 0.01),
        ascent_m=_scaled(entry.get("elevationGain"), 0.01),
        descent_m=_scaled(entry.get("elevationLoss"), 0.01),
        energy_j=_scaled(entry.get("calories"), 1000.0),
        avg_hr_bpm=_num(entry.get("avgHr")),
        max_hr_bpm=_num(entry.get("maxHr")),
        avg_power_w=_num(entry.get("avgPower")),
        max_power_w=_num(entry.get("maxPower")),
        avg_speed_mps=_scaled(entry.get("avgSpeed"), 10.0),
        max_speed_mps=_scaled(entry.get("maxSpeed"), 10.0),
    )
    return _activity(entry, start, local, sport, sub_sport, values, entry.get("manufacturer"), entry.get("name"), origin)


# -- helpers -------------------------------------------------------------------


def _activity(entry, start, local, sport, sub_sport, values, manufacturer, name, origin) -> Activity:
    for key, value in values.items():
        if value is not None and value < 0:
            raise SummaryError(f"activity {entry.get('activityId')}: negative {key} ({value})")
    offset = None
    if local is not None:
        # Local start is given as a naive wall-clock time; whole minutes only.
        offset = int(round((local - start).total_seconds() / 60.0)) * 60
        if abs(offset) > 14 * 3600:
            offset = None
    activity_id = entry.get("activityId")
    return Activity(
        sport=sport,
        sub_sport=sub_sport,
        start=start,
        utc_offset_s=offset,
        name=name if isinstance(name, str) else None,
        device=Device(manufacturer=str(manufacturer).lower()) if manufacturer else None,
        source_id=f"garmin_connect:{activity_id}" if activity_id is not None else None,
        provenance=origin,
        **values,
    )


def _type_key(entry: dict[str, Any]) -> str | None:
    for key in ("activityTypeDTO", "activityType"):
        value = entry.get(key)
        if isinstance(value, dict):
            return value.get("typeKey")
        if isinstance(value, str):
            return value
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _scaled(value: Any, factor: float) -> float | None:
    number = _num(value)
    return None if number is None else number * factor


def _cadence(summary: dict[str, Any], sport: str) -> float | None:
    if sport == "cycling":
        return _num(summary.get("averageBikingCadenceInRevPerMinute"))
    spm = _num(summary.get("averageRunningCadenceInStepsPerMinute"))
    # The model keeps running cadence as FIT does: strides (two steps) per minute.
    return spm / 2.0 if spm is not None else None


def _api_time(value: Any) -> datetime | None:
    """``"2018-03-08T11:23:22.0"`` or ``"2018-03-08 11:23:22"`` (UTC or local wall clock)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SummaryError(f"unreadable time {value!r}") from exc
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def _epoch_ms(value: Any) -> datetime | None:
    number = _num(value)
    if number is None:
        return None
    try:
        return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=number)
    except OverflowError as exc:
        raise SummaryError(f"time {value!r} ms is out of range") from exc

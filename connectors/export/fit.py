"""FIT activity export through the official Garmin encoder.

Messages follow Garmin's activity-file layout: ``file_id``, developer field
descriptions, ``device_info``, a timer start event, then records, HRV, lengths,
sets and laps in time order, a timer stop, the ``session`` and the ``activity``
summary last.

The encoder silently wraps integers that do not fit their field (a power of
70,000 W would come back as 4,464), so every value passes :func:`_fit` first,
which checks it against the field's base type after scale and offset and leaves
it out when it does not fit: a missing value is honest, a wrapped one is not.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache

from garmin_fit_sdk import Encoder, Profile

from hub.derive import fill_summary
from hub.errors import FithubError
from hub.model import CHANNELS, Activity, Lap, StrengthSet, SwimLength

from .tcx import JOULES_PER_KCAL, lap_ranges, lap_span, laps_or_whole

FIT_EPOCH_S = 631065600  # 1989-12-31T00:00:00Z, FIT's time zero
SEMICIRCLES_PER_DEG = 2**31 / 180
HRV_VALUES_PER_MESSAGE = 5  # what Garmin devices write; the field is an array

MESG = Profile["mesg_num"]
TYPES = Profile["types"]

# A fixed identity for fithub as the application behind its developer fields:
# readers group developer fields by application, and a random id would make
# every export look like a different application.
APPLICATION_ID = uuid.uuid5(uuid.NAMESPACE_URL, "fithub:export:developer-fields").bytes

# Per integer base type: lowest and highest valid raw value, and the raw value
# FIT reserves for "invalid" (all ones, or zero for the "z" types), which is
# therefore outside the valid range.
_INTEGER: dict[str, tuple[int, int, int]] = {
    "enum": (0, 0xFE, 0xFF),
    "byte": (0, 0xFE, 0xFF),
    "uint8": (0, 0xFE, 0xFF),
    "uint8z": (1, 0xFF, 0),
    "sint8": (-0x80, 0x7E, 0x7F),
    "uint16": (0, 0xFFFE, 0xFFFF),
    "uint16z": (1, 0xFFFF, 0),
    "sint16": (-0x8000, 0x7FFE, 0x7FFF),
    "uint32": (0, 0xFFFFFFFE, 0xFFFFFFFF),
    "uint32z": (1, 0xFFFFFFFF, 0),
    "sint32": (-0x80000000, 0x7FFFFFFE, 0x7FFFFFFF),
}
_NUMERIC = set(_INTEGER) | {"float32", "float64"}


@cache
def _field(mesg_num: int, name: str) -> tuple[str, str, float, float]:
    """(profile type, base type, scale, offset) of one field of one message."""
    for spec in Profile["messages"][mesg_num]["fields"].values():
        if spec["name"] == name:
            scale, offset = spec["scale"][0], spec["offset"][0]
            if len(spec["components"]) > 1:  # the encoder writes these unscaled
                scale, offset = 1, 0
            return spec["type"], spec["base_type"], scale, offset
    raise KeyError(f"FIT message {mesg_num} has no field {name!r}")


def _fits(value: float, base_type: str, scale: float, offset: float) -> bool:
    if not math.isfinite(value):
        return False
    if base_type not in _INTEGER:
        return True
    low, high, _ = _INTEGER[base_type]
    return low <= round((value + offset) * scale) <= high


def _fit(mesg_num: int, **fields: object) -> dict:
    """One message dict for the encoder, keeping only values the field can hold."""
    mesg: dict = {"mesg_num": mesg_num}
    for name, value in fields.items():
        if value is None:
            continue
        ftype, base, scale, offset = _field(mesg_num, name)
        if ftype in _NUMERIC or isinstance(value, (int, float)):
            values = value if isinstance(value, list) else [value]
            kept = [v if v is not None and _fits(v, base, scale, offset) else None for v in values]
            if all(v is None for v in kept):
                continue
            # Unscaled integer fields are written by truncation; round instead.
            if scale == 1 and offset == 0 and base in _INTEGER:
                kept = [round(v) if v is not None else None for v in kept]
            if isinstance(value, list):
                # Inside an array a gap must be the type's invalid value itself,
                # given pre-scaled because the encoder applies scale and offset.
                invalid = _INTEGER[base][2] / scale - offset
                value = [invalid if v is None else v for v in kept]
            else:
                value = kept[0]
        mesg[name] = value
    return mesg


def _enum(type_name: str, value: str | None, default: str | None = None) -> str | None:
    """``value`` when the FIT profile knows it for ``type_name``, else ``default``."""
    if value is not None and value in TYPES[type_name].values():
        return value
    return default


def _time(value: datetime) -> int:
    return round(value.timestamp()) - FIT_EPOCH_S


def _semicircles(deg: float | None) -> int | None:
    return None if deg is None else round(deg * SEMICIRCLES_PER_DEG)


def _kcal(energy_j: float | None) -> float | None:
    return None if energy_j is None else energy_j / JOULES_PER_KCAL


def _device_fields(activity: Activity) -> dict:
    device = activity.device
    if device is None:
        return {"manufacturer": "development"}
    manufacturer = _enum("manufacturer", device.manufacturer, "development")
    product: int | None = None
    name = device.product
    if name and name.isdigit():
        product, name = int(name), None
    elif name and manufacturer == "garmin":
        product = next((k for k, v in TYPES["garmin_product"].items() if v == name), None)
    return {
        "manufacturer": manufacturer,
        "product": product,
        "serial_number": device.serial_number,
        "product_name": name,
    }


def _software_version(activity: Activity) -> float | None:
    version = activity.device.software_version if activity.device else None
    try:
        return float(version) if version else None
    except ValueError:  # e.g. "4.2.1": FIT holds only major.minor as a number
        return None


def _developer_setup(activity: Activity) -> tuple[list[str], list[dict], dict]:
    """Developer columns, their description messages, and the encoder's key map."""
    names = [c for c in activity.samples.columns if c not in CHANNELS][:255]
    if not names:
        return [], [], {}
    dev_id = _fit(
        MESG["DEVELOPER_DATA_ID"],
        application_id=list(APPLICATION_ID),
        manufacturer_id="development",
        developer_data_index=0,
        application_version=1,
    )
    messages = [dev_id]
    descriptions = {}
    for number, name in enumerate(names):
        desc = _fit(
            MESG["FIELD_DESCRIPTION"],
            developer_data_index=0,
            field_definition_number=number,
            fit_base_type_id=136,  # float32: every stream value is a float
            field_name=name,
            units=activity.samples.unit(name),
        )
        messages.append(desc)
        descriptions[name] = {"developer_data_id_mesg": dev_id, "field_description_mesg": desc}
    return names, messages, descriptions


def _records(activity: Activity, developer: list[str]) -> list[tuple[float, int, dict]]:
    s = activity.samples
    cols = s.columns
    t0 = activity.start.timestamp() - FIT_EPOCH_S
    empty = [None] * len(s)

    def col(name: str) -> list:
        return cols.get(name) or empty

    lat, lon, alt, dist = col("lat_deg"), col("lon_deg"), col("altitude_m"), col("distance_m")
    hr, cad, power, speed, temp = (
        col("hr_bpm"), col("cadence_rpm"), col("power_w"), col("speed_mps"), col("temperature_c")
    )
    out = []
    for i, offset in enumerate(s.offsets_s):
        mesg = _fit(
            MESG["RECORD"],
            timestamp=round(t0 + offset),
            position_lat=_semicircles(lat[i]),
            position_long=_semicircles(lon[i]),
            enhanced_altitude=alt[i],
            distance=dist[i],
            heart_rate=hr[i],
            cadence=cad[i],
            power=power[i],
            enhanced_speed=speed[i],
            temperature=temp[i],
        )
        extra = {
            name: v for name in developer if (v := cols[name][i]) is not None and math.isfinite(v)
        }
        if extra:
            mesg["developer_fields"] = extra
        out.append((offset, 0, mesg))
    return out


def _hrv(activity: Activity) -> list[tuple[float, int, dict]]:
    """HRV messages placed at the time of their last beat, counted from the start."""
    out = []
    rr = activity.hrv_rr_s
    elapsed = 0.0
    for k in range(0, len(rr), HRV_VALUES_PER_MESSAGE):
        chunk = list(rr[k : k + HRV_VALUES_PER_MESSAGE])
        elapsed += sum(chunk)
        chunk += [None] * (HRV_VALUES_PER_MESSAGE - len(chunk))
        out.append((elapsed, 1, _fit(MESG["HRV"], time=chunk)))
    return out


def _length(activity: Activity, index: int, length: SwimLength) -> tuple[float, int, dict]:
    end = length.start + timedelta(seconds=length.elapsed_s or 0.0)
    mesg = _fit(
        MESG["LENGTH"],
        message_index=index,
        timestamp=_time(end),
        start_time=_time(length.start),
        total_elapsed_time=length.elapsed_s,
        total_timer_time=length.elapsed_s,
        total_strokes=length.strokes,
        swim_stroke=_enum("swim_stroke", length.stroke),
        length_type=_enum("length_type", length.length_type),
        event="length",
        event_type="stop",
    )
    return (end - activity.start).total_seconds(), 2, mesg


def _set(activity: Activity, index: int, item: StrengthSet) -> tuple[float, int, dict]:
    end = item.start + timedelta(seconds=item.duration_s or 0.0) if item.start else None
    category = _enum("exercise_category", item.category)
    mesg = _fit(
        MESG["SET"],
        message_index=index,
        timestamp=_time(end) if end else None,
        start_time=_time(item.start) if item.start else None,
        duration=item.duration_s,
        repetitions=item.reps,
        weight=item.weight_kg,
        set_type=_enum("set_type", item.set_type),
        category=[category] if category else None,
    )
    # A set without a time keeps its place in the list, after everything timed.
    at = (end - activity.start).total_seconds() if end else math.inf
    return at, 3, mesg


def _summary_fields(item: Activity | Lap, elapsed: float | None) -> dict:
    """The totals and statistics that laps and sessions share, in FIT names."""
    return dict(
        total_elapsed_time=elapsed,
        total_timer_time=item.moving_s if item.moving_s is not None else elapsed,
        total_distance=item.distance_m,
        total_calories=_kcal(item.energy_j),
        total_ascent=item.ascent_m,
        total_descent=item.descent_m,
        avg_heart_rate=item.avg_hr_bpm,
        max_heart_rate=item.max_hr_bpm,
        avg_cadence=item.avg_cadence_rpm,
        max_cadence=item.max_cadence_rpm,
        avg_power=item.avg_power_w,
        max_power=item.max_power_w,
        enhanced_avg_speed=item.avg_speed_mps,
        enhanced_max_speed=item.max_speed_mps,
        # Older readers only know the 16-bit speeds; _fit drops them past 65 m/s.
        avg_speed=item.avg_speed_mps,
        max_speed=item.max_speed_mps,
    )


def _laps(activity: Activity, end: datetime) -> list[tuple[float, int, dict]]:
    laps = laps_or_whole(activity, trigger="session_end")
    out = []
    for index, (lap, samples) in enumerate(zip(laps, lap_ranges(activity, laps))):
        if lap.elapsed_s is not None:
            lap_end = lap.start + timedelta(seconds=lap.elapsed_s)
        else:
            lap_end = laps[index + 1].start if index + 1 < len(laps) else end
        elapsed = (lap_end - lap.start).total_seconds()
        if lap.distance_m is None:
            lap = replace(lap, distance_m=lap_span(activity, samples)[1])
        mesg = _fit(
            MESG["LAP"],
            message_index=index,
            timestamp=_time(lap_end),
            start_time=_time(lap.start),
            event="lap",
            event_type="stop",
            lap_trigger=_enum("lap_trigger", lap.trigger),
            sport=_enum("sport", activity.sport, "generic"),
            **_summary_fields(lap, elapsed),
        )
        out.append(((lap_end - activity.start).total_seconds(), 4, mesg))
    return out


def _first_position(activity: Activity) -> tuple[float | None, float | None]:
    cols = activity.samples.columns
    for la, lo in zip(cols.get("lat_deg") or [], cols.get("lon_deg") or []):
        if la is not None and lo is not None:
            return la, lo
    return None, None


def _elapsed(activity: Activity) -> float:
    if activity.elapsed_s is not None:
        return activity.elapsed_s
    offsets = activity.samples.offsets_s
    return offsets[-1] if offsets else 0.0


def _messages(activity: Activity, developer: list[str], dev_messages: list[dict]) -> list[dict]:
    elapsed = _elapsed(activity)
    end = activity.start + timedelta(seconds=elapsed)
    device = _device_fields(activity)
    laps = _laps(activity, end)
    head = [
        _fit(MESG["FILE_ID"], type="activity", time_created=_time(activity.start), **device),
        *dev_messages,
        _fit(
            MESG["DEVICE_INFO"],
            timestamp=_time(activity.start),
            device_index="creator",
            software_version=_software_version(activity),
            **device,
        ),
        _fit(MESG["EVENT"], timestamp=_time(activity.start), event="timer", event_type="start"),
    ]
    timed = (
        _records(activity, developer)
        + _hrv(activity)
        + [_length(activity, i, x) for i, x in enumerate(activity.lengths)]
        + [_set(activity, i, x) for i, x in enumerate(activity.sets)]
        + laps
    )
    # Stable sort: records keep their order, and at equal times the summary of a
    # lap comes after the samples it sums up.
    timed.sort(key=lambda item: (item[0], item[1]))
    return head + [mesg for _, _, mesg in timed] + _closing(activity, elapsed, len(laps))


def _closing(activity: Activity, elapsed: float, num_laps: int) -> list[dict]:
    """Timer stop, session and activity: the summary a FIT activity file ends with."""
    end = activity.start + timedelta(seconds=elapsed)
    summary = _summary_fields(activity, elapsed)
    lat, lon = _first_position(activity)
    active = [x for x in activity.lengths if x.length_type == "active"]
    session = _fit(
        MESG["SESSION"],
        message_index=0,
        timestamp=_time(end),
        start_time=_time(activity.start),
        start_position_lat=_semicircles(lat),
        start_position_long=_semicircles(lon),
        sport=_enum("sport", activity.sport, "generic"),
        sub_sport=_enum("sub_sport", activity.sub_sport),
        first_lap_index=0,
        num_laps=num_laps,
        num_lengths=len(activity.lengths) or None,
        num_active_lengths=len(active) if activity.lengths else None,
        event="session",
        event_type="stop",
        trigger="activity_end",
        **summary,
    )
    # FIT has no time-zone field: local time is a second timestamp beside UTC.
    local = _time(end) + activity.utc_offset_s if activity.utc_offset_s is not None else None
    return [
        _fit(MESG["EVENT"], timestamp=_time(end), event="timer", event_type="stop_all"),
        session,
        _fit(
            MESG["ACTIVITY"],
            timestamp=_time(end),
            total_timer_time=summary["total_timer_time"],
            num_sessions=1,
            type="manual",
            event="activity",
            event_type="stop",
            local_timestamp=local,
        ),
    ]


def write_fit(activity: Activity) -> bytes:
    # A file should carry its totals even when the stored record lacks some;
    # fill_summary only adds what is missing, never overrides the device.
    activity = fill_summary(activity)
    developer, dev_messages, descriptions = _developer_setup(activity)
    try:
        encoder = Encoder(field_descriptions=descriptions or None)
        for mesg in _messages(activity, developer, dev_messages):
            encoder.write_mesg(mesg)
        return encoder.close()
    except ValueError as exc:  # the encoder reports every problem as ValueError
        raise FithubError(
            f"cannot write a FIT file for the activity starting {activity.start.isoformat()}: {exc}"
        ) from exc


__all__ = ["write_fit"]

"""Pure mapping between model objects and table rows (dicts); no database access.

Kept apart from the repository so the shape of a stored record can be read (and
tested) without a connection. Column names follow the model's field names, except
``start`` -> ``start_utc`` / ``time`` -> ``time_utc`` and the flattened device and
provenance fields.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hub.model import (
    Activity,
    Device,
    Lap,
    Measurement,
    Provenance,
    SampleStream,
    StrengthSet,
    SwimLength,
)
from hub.storage.samples import decode_samples, decode_series, encode_samples, encode_series
from hub.storage.schema import SUMMARY_FIELDS

Row = Mapping[str, Any]


def _known(value: float | None) -> float | None:
    """NaN in a summary value means unknown, which the model spells None.

    SQLite turns a stored NaN into NULL while PostgreSQL keeps it, so storing it as
    given would make the two backends disagree; both get None.
    """
    return None if value is not None and math.isnan(value) else value


class Blobs:
    """Encoded sample and HRV blobs, remembered by the object they encode.

    A new workout with a single version is that version's activity: one cache for
    both rows compresses its samples once instead of twice. The cached object is
    kept alongside its blob, so its ``id`` cannot be reused while the cache lives.
    """

    def __init__(self) -> None:
        self._done: dict[int, tuple[object, bytes]] = {}

    def samples(self, stream: SampleStream) -> bytes:
        return self._get(stream, encode_samples)

    def series(self, values: tuple[float, ...]) -> bytes:
        return self._get(values, encode_series)

    def _get(self, obj, encode) -> bytes:
        hit = self._done.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        blob = encode(obj)
        self._done[id(obj)] = (obj, blob)
        return blob


def recording_row(activity: Activity, *, person_id: int, blobs: Blobs | None = None) -> dict[str, Any]:
    """The columns a workout and a version share (see ``schema._recording_columns``)."""
    blobs = blobs or Blobs()
    stream = activity.samples
    device = activity.device or Device()
    prov = activity.provenance
    has_stream = bool(len(stream) or stream.columns or stream.units)
    return {
        "person_id": person_id,
        "sport": activity.sport,
        "sub_sport": activity.sub_sport,
        "start_utc": activity.start,
        "utc_offset_s": activity.utc_offset_s,
        **{name: _known(getattr(activity, name)) for name in SUMMARY_FIELDS},
        "name": activity.name,
        "device_manufacturer": device.manufacturer,
        "device_product": device.product,
        "device_serial": device.serial_number,
        "device_software": device.software_version,
        "source_id": activity.source_id,
        "multisport_group": activity.multisport_group,
        "multisport_index": activity.multisport_index,
        "sample_count": len(stream),
        "sample_channels": json.dumps(list(stream.columns)),
        "samples": blobs.samples(stream) if has_stream else None,
        "hrv": blobs.series(activity.hrv_rr_s) if activity.hrv_rr_s else None,
        "warnings": json.dumps(list(activity.warnings)),
        "prov_source": prov.source if prov else None,
        "prov_sha256": prov.sha256 if prov else None,
        "prov_received_at": prov.received_at if prov else None,
        "prov_name": prov.name if prov else None,
    }


def version_row(
    activity: Activity,
    *,
    person_id: int,
    workout_id: int,
    key: str,
    shift_s: int,
    file_sha256: str | None,
    blobs: Blobs | None = None,
) -> dict[str, Any]:
    return {
        **recording_row(activity, person_id=person_id, blobs=blobs),
        "workout_id": workout_id,
        "file_sha256": file_sha256,
        "version_key": key,
        "shift_s": shift_s,
    }


def workout_row(
    activity: Activity,
    *,
    person_id: int,
    channel_sources: Mapping[str, str],
    primary: str,
    blobs: Blobs | None = None,
) -> dict[str, Any]:
    return {
        **recording_row(activity, person_id=person_id, blobs=blobs),
        "end_utc": activity.end,
        # Sorted keys: the same merge always writes the same text.
        "channel_sources": json.dumps(dict(channel_sources), sort_keys=True),
        "primary_version": primary,
    }


def channel_sources_from_row(row: Row) -> dict[str, str]:
    return json.loads(row["channel_sources"])


def lap_row(lap: Lap, *, idx: int) -> dict[str, Any]:
    """Laps, lengths and sets rows lack their owner column (``version_id`` or
    ``workout_id``); the caller adds it."""
    return {
        "idx": idx,
        "start_utc": lap.start,
        **{name: _known(getattr(lap, name)) for name in SUMMARY_FIELDS},
        "trigger": lap.trigger,
    }


def length_row(length: SwimLength, *, idx: int) -> dict[str, Any]:
    return {
        "idx": idx,
        "start_utc": length.start,
        "elapsed_s": _known(length.elapsed_s),
        "length_type": length.length_type,
        "strokes": length.strokes,
        "stroke": length.stroke,
    }


def set_row(item: StrengthSet, *, idx: int) -> dict[str, Any]:
    return {
        "idx": idx,
        "start_utc": item.start,
        "duration_s": _known(item.duration_s),
        "set_type": item.set_type,
        "category": item.category,
        "reps": item.reps,
        "weight_kg": _known(item.weight_kg),
    }


def measurement_row(m: Measurement, *, person_id: int, file_sha256: str | None) -> dict[str, Any]:
    if math.isnan(m.value):
        raise ValueError(f"measurement {m.kind} at {m.time.isoformat()}: value is NaN")
    prov = m.provenance
    return {
        "person_id": person_id,
        "kind": m.kind,
        "time_utc": m.time,
        "value": m.value,
        "source": prov.source if prov else "",
        "file_sha256": file_sha256,
        "prov_sha256": prov.sha256 if prov else None,
        "prov_received_at": prov.received_at if prov else None,
        "prov_name": prov.name if prov else None,
    }


def activity_from_row(
    row: Row,
    *,
    person: str,
    laps: tuple[Lap, ...] = (),
    lengths: tuple[SwimLength, ...] = (),
    sets: tuple[StrengthSet, ...] = (),
    full: bool = True,
) -> Activity:
    """Rebuild an Activity; with ``full=False`` the sample and HRV blobs are not decoded
    (they need not even be in ``row``)."""
    device_fields = {
        "manufacturer": row["device_manufacturer"],
        "product": row["device_product"],
        "serial_number": row["device_serial"],
        "software_version": row["device_software"],
    }
    # A Device with every field unknown is stored as nothing and comes back as None.
    device = Device(**device_fields) if any(v is not None for v in device_fields.values()) else None
    samples = SampleStream()
    hrv: tuple[float, ...] = ()
    if full:
        if row["samples"] is not None:
            samples = decode_samples(bytes(row["samples"]))
        if row["hrv"] is not None:
            hrv = tuple(decode_series(bytes(row["hrv"])))
    return Activity(
        person=person,
        sport=row["sport"],
        sub_sport=row["sub_sport"],
        start=row["start_utc"],
        utc_offset_s=row["utc_offset_s"],
        **{name: row[name] for name in SUMMARY_FIELDS},
        name=row["name"],
        device=device,
        laps=laps,
        lengths=lengths,
        sets=sets,
        samples=samples,
        hrv_rr_s=hrv,
        source_id=row["source_id"],
        multisport_group=row["multisport_group"],
        multisport_index=row["multisport_index"],
        provenance=_provenance(row["prov_source"], row["prov_sha256"], row["prov_received_at"], row["prov_name"]),
        warnings=tuple(json.loads(row["warnings"])),
    )


def lap_from_row(row: Row) -> Lap:
    return Lap(start=row["start_utc"], trigger=row["trigger"], **{name: row[name] for name in SUMMARY_FIELDS})


def length_from_row(row: Row) -> SwimLength:
    return SwimLength(
        start=row["start_utc"],
        elapsed_s=row["elapsed_s"],
        length_type=row["length_type"],
        strokes=row["strokes"],
        stroke=row["stroke"],
    )


def set_from_row(row: Row) -> StrengthSet:
    return StrengthSet(
        start=row["start_utc"],
        duration_s=row["duration_s"],
        set_type=row["set_type"],
        category=row["category"],
        reps=row["reps"],
        weight_kg=row["weight_kg"],
    )


def measurement_from_row(row: Row, *, person: str) -> Measurement:
    return Measurement(
        person=person,
        kind=row["kind"],
        time=row["time_utc"],
        value=row["value"],
        provenance=_provenance(row["source"], row["prov_sha256"], row["prov_received_at"], row["prov_name"]),
    )


def _provenance(source, sha256, received_at, name) -> Provenance | None:
    # received_at is required in a Provenance, so its presence says one was stored.
    if received_at is None:
        return None
    return Provenance(source=source or "", sha256=sha256, received_at=received_at, name=name)

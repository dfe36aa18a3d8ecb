"""Weight Measurement (0x2A9D) and Body Composition Measurement (0x2A9C).

Both are indicated (acknowledged) by the scale, in SI or imperial units by flag
bit 0. Masses are returned in kg and heights in m whatever the scale sent;
``imperial`` records what it sent (the user's display preference). The time
stamp is the scale's own clock, naive: scales have no notion of time zone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime

from drivers.ble.errors import MeasurementFailed
from drivers.ble.gatt_reader import Reader

WEIGHT_MEASUREMENT = "Weight Measurement (0x2A9D)"
BODY_COMPOSITION_MEASUREMENT = "Body Composition Measurement (0x2A9C)"

_LB_KG = 0.45359237
_IN_M = 0.0254
_UNKNOWN_USER = 0xFF
_FAILED = 0xFFFF


def _mass_kg(raw: int, imperial: bool) -> float:
    return raw * 0.01 * _LB_KG if imperial else raw * 0.005


def _height_m(raw: int, imperial: bool) -> float:
    return raw * 0.1 * _IN_M if imperial else raw * 0.001


def _user(raw: int) -> int | None:
    return None if raw == _UNKNOWN_USER else raw


@dataclass(frozen=True)
class Weight:
    weight_kg: float
    imperial: bool
    time: datetime | None = None  # naive, the scale's clock
    user_id: int | None = None  # the scale's user index; None: unknown user or not sent
    bmi: float | None = None
    height_m: float | None = None


def parse_weight(data: bytes) -> Weight:
    r = Reader(WEIGHT_MEASUREMENT, data)
    flags = r.u8("flags")
    imperial = bool(flags & 0x01)
    raw_weight = r.u16("weight")
    time = r.date_time() if flags & 0x02 else None
    user_id = _user(r.u8("user id")) if flags & 0x04 else None
    bmi = height = None
    if flags & 0x08:
        bmi = r.u16("BMI") / 10
        height = _height_m(r.u16("height"), imperial)
    r.finish(flags, 0xF0)
    if raw_weight == _FAILED:
        raise MeasurementFailed(
            WEIGHT_MEASUREMENT, "the scale reports the measurement failed (weight 0xFFFF)", r.data
        )
    return Weight(
        weight_kg=_mass_kg(raw_weight, imperial),
        imperial=imperial,
        time=time,
        user_id=user_id,
        bmi=bmi,
        height_m=height,
    )


@dataclass(frozen=True)
class BodyComposition:
    body_fat_pct: float
    imperial: bool
    time: datetime | None = None
    user_id: int | None = None
    bmr_j: int | None = None  # basal metabolism, per day, kJ resolution
    muscle_pct: float | None = None
    muscle_mass_kg: float | None = None
    fat_free_mass_kg: float | None = None
    soft_lean_mass_kg: float | None = None
    body_water_mass_kg: float | None = None
    impedance_ohm: float | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    multi_packet: bool = False  # flag b12: one half of a measurement sent in two indications
    complete: bool = True  # False: a multi-packet half whose other half never came


def parse_body_composition(data: bytes) -> BodyComposition:
    """One Body Composition packet; for multi-packet measurements see ``BodyCompositionAssembler``."""
    r = Reader(BODY_COMPOSITION_MEASUREMENT, data)
    flags = r.u16("flags")
    imperial = bool(flags & 0x0001)
    raw_fat = r.u16("body fat percentage")
    f: dict[str, object] = {"imperial": imperial, "multi_packet": bool(flags & 0x1000)}
    if flags & 0x0002:
        f["time"] = r.date_time()
    if flags & 0x0004:
        f["user_id"] = _user(r.u8("user id"))
    if flags & 0x0008:
        f["bmr_j"] = r.u16("basal metabolism") * 1000
    if flags & 0x0010:
        f["muscle_pct"] = r.u16("muscle percentage") / 10
    for bit, name, label in (
        (0x0020, "muscle_mass_kg", "muscle mass"),
        (0x0040, "fat_free_mass_kg", "fat free mass"),
        (0x0080, "soft_lean_mass_kg", "soft lean mass"),
        (0x0100, "body_water_mass_kg", "body water mass"),
    ):
        if flags & bit:
            f[name] = _mass_kg(r.u16(label), imperial)
    if flags & 0x0200:
        f["impedance_ohm"] = r.u16("impedance") / 10
    if flags & 0x0400:
        f["weight_kg"] = _mass_kg(r.u16("weight"), imperial)
    if flags & 0x0800:
        f["height_m"] = _height_m(r.u16("height"), imperial)
    r.finish(flags, 0xE000)
    if raw_fat == _FAILED:
        raise MeasurementFailed(
            BODY_COMPOSITION_MEASUREMENT, "the scale reports the measurement failed (body fat 0xFFFF)", r.data
        )
    return BodyComposition(body_fat_pct=raw_fat / 10, **f)  # type: ignore[arg-type]


_MERGED_FIELDS = tuple(
    f.name for f in fields(BodyComposition) if f.name not in ("multi_packet", "complete")
)


def _merge(first: BodyComposition, second: BodyComposition) -> BodyComposition | None:
    """The two halves as one measurement, None when they cannot be halves of one."""
    merged: dict[str, object] = {}
    for name in _MERGED_FIELDS:
        a, b = getattr(first, name), getattr(second, name)
        if a is not None and b is not None and a != b:
            return None  # e.g. another user's measurement, or the other unit system
        merged[name] = a if a is not None else b
    return BodyComposition(**merged, multi_packet=True)  # type: ignore[arg-type]


class BodyCompositionAssembler:
    """Joins Body Composition measurements the scale splits over two indications.

    A measurement too long for one packet comes as two, both with flag b12 set,
    each carrying some of the optional fields (the mandatory body fat in both).
    ``feed`` returns the measurements completed by this packet: none while the
    first half waits, the merged one when the second half arrives. A half that
    is never completed is not dropped: it comes out with ``complete=False`` when
    the next unrelated packet arrives, when ``timeout_s`` has passed, or from
    ``flush()`` (call it when the connection ends).
    """

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._pending: BodyComposition | None = None
        self._pending_at = 0.0

    def feed(self, data: bytes, now_s: float) -> tuple[BodyComposition, ...]:
        packet = parse_body_composition(data)  # a bad packet raises and leaves the state alone
        out: list[BodyComposition] = []
        if self._pending is not None and now_s - self._pending_at > self.timeout_s:
            out.extend(self.flush())
        if not packet.multi_packet:
            return (*out, *self.flush(), packet)
        if self._pending is None:
            self._pending, self._pending_at = packet, now_s
            return tuple(out)
        merged = _merge(self._pending, packet)
        if merged is None:
            out.extend(self.flush())
            self._pending, self._pending_at = packet, now_s
            return tuple(out)
        self._pending = None
        return (*out, merged)

    def flush(self) -> tuple[BodyComposition, ...]:
        """The half-measurement waiting for its second packet, marked incomplete."""
        pending, self._pending = self._pending, None
        return () if pending is None else (replace(pending, complete=False),)

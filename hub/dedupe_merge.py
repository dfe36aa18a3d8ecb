"""Building one canonical activity from every source version of a workout (pure).

The result depends only on the *set* of versions: they are put in policy order
(format rank, then key) first, and every later choice breaks ties by that order.

* The **time axis** is the samples of the version covering the widest time span
  (the *primary*); points another version recorded before or after that span are
  added, so a trimmed copy never shortens the workout.
* Each **channel** (``position`` = latitude and longitude together, ``hr_bpm``,
  ``power_w``, ..., developer columns) comes whole from one version chosen by the
  :class:`MergePolicy`, mapped onto the axis by nearest timestamp within a
  tolerance. Mixing two sources inside one channel would splice two sensors'
  offsets and lags into a single curve; one source per channel keeps it honest.
* The **summary** is recomputed from the merged streams; values no stream gives
  (energy, names, device, ...) come from the best version that has them.

``Merged.channel_sources`` records which version supplied what.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import compress, repeat
from operator import is_not
from typing import Any

from .derive import fill_summary, finite_values
from .errors import ConfigError
from .model import CHANNELS, Activity, SampleStream

# Channels merged as one unit: a latitude from one source and a longitude from
# another would be a position nobody recorded.
GROUPS: dict[str, tuple[str, ...]] = {"position": ("lat_deg", "lon_deg")}
_GROUPED = {column: name for name, columns in GROUPS.items() for column in columns}

# Summary fields a sample stream determines; cleared and recomputed on merge.
STREAM_FIELDS: tuple[str, ...] = (
    "elapsed_s", "moving_s", "distance_m", "ascent_m", "descent_m",
    "avg_hr_bpm", "max_hr_bpm", "avg_power_w", "max_power_w",
    "avg_cadence_rpm", "max_cadence_rpm", "avg_speed_mps", "max_speed_mps",
)
# Values no stream gives: taken from the best version that has one.
CARRIED_FIELDS: tuple[str, ...] = ("energy_j", "utc_offset_s", "name", "device", "source_id")
# Per-workout detail records, taken whole from one version.
DETAILS: dict[str, str] = {"laps": "laps", "lengths": "lengths", "sets": "sets", "hrv": "hrv_rr_s"}

_GENERIC_SPORTS = frozenset({"", "generic", "unknown", "other", "all"})


@dataclass(frozen=True)
class Version:
    """One source version with its full data."""

    key: str
    activity: Activity
    shift_s: int = 0  # subtract from activity.start (and all its times) to align it


@dataclass(frozen=True)
class Merged:
    activity: Activity
    channel_sources: dict[str, str]  # channel or field -> key of the version that supplied it
    primary: str  # key of the version whose time axis and provenance are the base


def _default_prefer_sources() -> dict[str, tuple[str, ...]]:
    # A BLE heart-rate source is a chest strap or arm band: electrical or close-fit
    # optical, steadier than a watch's wrist sensor.
    return {"hr_bpm": ("ble:",), "power_w": ("ble:power", "ble:cycling_power")}


def _default_prefer_products() -> dict[str, tuple[str, ...]]:
    return {
        "hr_bpm": ("hrm", "strap"),
        "power_w": ("power", "vector", "assioma", "favero", "quarq", "stages", "4iiii", "rally"),
    }


@dataclass(frozen=True)
class MergePolicy:
    """Which version supplies each channel.

    For a channel in ``by_points`` the version with the most valid points wins
    (a GPS device records positions densely; a phone export thins them). For every
    other channel the winner is, in turn: a preferred source (provenance source
    starting with one of ``prefer_sources[channel]`` or a device product containing
    one of ``prefer_products[channel]``, case-insensitive), then the better format
    in ``format_rank`` (formats not listed rank last), then the most valid points.
    Remaining ties go to the smaller version key.

    ``tolerance_s``: a sample is mapped onto an axis instant when it is at most this
    far away, or half its own median sampling interval if that is larger.
    """

    format_rank: tuple[str, ...] = ("fit", "tcx", "gpx")
    by_points: frozenset[str] = frozenset({"position"})
    prefer_sources: Mapping[str, tuple[str, ...]] = field(default_factory=_default_prefer_sources, hash=False)
    prefer_products: Mapping[str, tuple[str, ...]] = field(default_factory=_default_prefer_products, hash=False)
    tolerance_s: float = 2.0

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> MergePolicy:
        """A policy from a configuration section; every problem is reported at once.

        Keys: ``format_rank`` (list of format names), ``by_points`` (list of
        channels), ``prefer_sources`` and ``prefer_products`` (channel -> list of
        strings; replace the defaults for the channels given), ``tolerance_s``.
        """
        problems: list[str] = []
        known = {"format_rank", "by_points", "prefer_sources", "prefer_products", "tolerance_s"}
        problems += [f"unknown merge setting {k!r}" for k in sorted(set(config) - known)]
        changes: dict[str, Any] = {}
        for name in ("format_rank", "by_points"):
            if name in config:
                value = config[name]
                if not _strings(value):
                    problems.append(f"merge.{name} must be a list of strings, got {value!r}")
                else:
                    changes[name] = tuple(value) if name == "format_rank" else frozenset(value)
        for name in ("prefer_sources", "prefer_products"):
            if name in config:
                value = config[name]
                if not isinstance(value, Mapping) or not all(_strings(v) for v in value.values()):
                    problems.append(f"merge.{name} must map channel names to lists of strings, got {value!r}")
                else:
                    base = dict(getattr(cls(), name))
                    base.update({str(k): tuple(v) for k, v in value.items()})
                    changes[name] = base
        if "tolerance_s" in config:
            value = config["tolerance_s"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                problems.append(f"merge.tolerance_s must be a number >= 0, got {value!r}")
            else:
                changes["tolerance_s"] = float(value)
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(**changes)

    def format_of(self, activity: Activity) -> str:
        """"fit" for "file:fit"; otherwise the source kind ("ble" for "ble:hr")."""
        source = (activity.provenance.source if activity.provenance else "").lower()
        kind, _, rest = source.partition(":")
        return rest if kind == "file" and rest else kind

    def rank(self, activity: Activity) -> int:
        fmt = self.format_of(activity)
        return self.format_rank.index(fmt) if fmt in self.format_rank else len(self.format_rank)

    def preferred(self, channel: str, activity: Activity) -> bool:
        source = (activity.provenance.source if activity.provenance else "").lower()
        if any(source.startswith(p.lower()) for p in self.prefer_sources.get(channel, ())):
            return True
        product = (activity.device.product or "") if activity.device else ""
        product = str(product).lower()
        return any(p.lower() in product for p in self.prefer_products.get(channel, ()))


def _strings(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


DEFAULT_POLICY = MergePolicy()


@dataclass
class _Prepared:
    """One version with what merging needs, computed once."""

    version: Version
    rank: int
    start: datetime  # aligned
    rel: float = 0.0  # aligned start minus the primary's aligned start, seconds
    times: list[float] = field(default_factory=list)  # sorted sample times relative to the primary
    order: list[int] | None = None  # sample index of each entry of times, when offsets were unsorted
    tolerance: float = 0.0

    @property
    def key(self) -> str:
        return self.version.key

    @property
    def activity(self) -> Activity:
        return self.version.activity

    @property
    def span(self) -> float:
        offsets = self.activity.samples.offsets_s
        if len(offsets) > 1:
            return max(offsets) - min(offsets)
        return self.activity.elapsed_s or 0.0

    @property
    def end(self) -> datetime:
        offsets = self.activity.samples.offsets_s
        last = max(offsets) if offsets else 0.0
        return self.start + timedelta(seconds=max(self.activity.elapsed_s or 0.0, last))


def merge(versions: Sequence[Version], policy: MergePolicy = DEFAULT_POLICY) -> Merged:
    """The canonical activity of one workout from all its source versions."""
    if not versions:
        raise ValueError("merge needs at least one version")
    keys = [v.key for v in versions]
    if len(set(keys)) != len(keys):
        raise ValueError(f"version keys must be unique, got {sorted(keys)}")
    persons = {v.activity.person for v in versions}
    if len(persons) > 1:
        raise ValueError(f"versions of one workout belong to several persons: {sorted(persons)}")
    ranked = sorted(
        (_Prepared(v, policy.rank(v.activity), v.activity.start - timedelta(seconds=v.shift_s)) for v in versions),
        key=lambda p: (p.rank, p.key),
    )
    if len(ranked) == 1:
        return _single(ranked[0])
    primary = min(ranked, key=lambda p: (-p.span, p.rank, p.key))
    for p in ranked:
        _place(p, primary.start, policy)
    axis, base_at = _axis(primary, ranked)
    sources: dict[str, str] = {}
    columns, units = _channels(ranked, primary, axis, base_at, policy, sources)

    start = min([p.start for p in ranked] + ([primary.start + timedelta(seconds=axis[0])] if axis else []))
    end = max([p.end for p in ranked] + ([primary.start + timedelta(seconds=axis[-1])] if axis else []))
    lead = (start - primary.start).total_seconds()  # <= 0
    samples = SampleStream(offsets_s=[t - lead for t in axis], columns=columns, units=units)

    base = primary.activity
    activity = replace(
        base,
        start=start,
        samples=samples,
        warnings=tuple(dict.fromkeys(w for p in ranked for w in p.activity.warnings)),
        **{name: None for name in STREAM_FIELDS},
        **_details(ranked, primary, sources),
        **_carried(ranked, sources),
    )
    activity = fill_summary(replace(activity, elapsed_s=(end - start).total_seconds()))
    # A value no merged stream could give (a session's average power without a
    # power stream) is still better than none: take it from the best version.
    fallback: dict[str, Any] = {}
    for name in STREAM_FIELDS:
        if getattr(activity, name) is None:
            donor = next((p for p in ranked if getattr(p.activity, name) is not None), None)
            if donor is not None:
                fallback[name] = getattr(donor.activity, name)
                sources[name] = donor.key
    if fallback:
        activity = replace(activity, **fallback)
    return Merged(activity=activity, channel_sources=sources, primary=primary.key)


def _single(only: _Prepared) -> Merged:
    """One version is its own canonical activity, only aligned by its shift."""
    activity = only.activity
    if only.version.shift_s:
        activity = replace(activity, start=only.start, **_shifted_details(activity, only.version.shift_s))
    # Only whether a channel has any valid point matters here: stop at the first one
    # instead of counting a whole recording.
    sources = {name: only.key for name in _channel_names(activity) if _has_valid(activity, name)}
    for name, attribute in DETAILS.items():
        if getattr(activity, attribute):
            sources[name] = only.key
    for name in CARRIED_FIELDS + ("sport", "sub_sport"):
        if getattr(activity, name) is not None:
            sources[name] = only.key
    return Merged(activity=activity, channel_sources=sources, primary=only.key)


def _place(p: _Prepared, origin: datetime, policy: MergePolicy) -> None:
    """Put ``p``'s samples on the primary's clock, sorted."""
    p.rel = (p.start - origin).total_seconds()
    offsets = p.activity.samples.offsets_s
    times = [p.rel + o for o in offsets]
    if any(times[i] > times[i + 1] for i in range(len(times) - 1)):
        p.order = sorted(range(len(times)), key=times.__getitem__)
        times = [times[i] for i in p.order]
    p.times = times
    gaps = sorted(times[i + 1] - times[i] for i in range(len(times) - 1))
    median = gaps[len(gaps) // 2] if gaps else 0.0
    p.tolerance = max(policy.tolerance_s, median / 2)


def _axis(primary: _Prepared, ranked: list[_Prepared]) -> tuple[list[float], list[int]]:
    """The merged time axis and, per axis point, the primary's sample index (-1: none).

    Points of other versions (in policy order) that lie outside the axis built so
    far, by more than their tolerance, extend it at either end.
    """
    axis = list(primary.times)
    base_at = list(primary.order) if primary.order is not None else list(range(len(axis)))
    for p in ranked:
        if p is primary or not p.times:
            continue
        if not axis:
            axis, base_at = list(p.times), [-1] * len(p.times)
            continue
        before = [t for t in p.times if t < axis[0] - p.tolerance]
        after = [t for t in p.times if t > axis[-1] + p.tolerance]
        if before or after:
            axis = before + axis + after
            base_at = [-1] * len(before) + base_at + [-1] * len(after)
    return axis, base_at


def _nearest(axis: list[float], p: _Prepared) -> list[int]:
    """For each axis instant, the index of ``p``'s nearest sample within tolerance, else -1."""
    times, m, tol = p.times, len(p.times), p.tolerance
    out: list[int] = []
    j = 0
    for t in axis:
        while j + 1 < m and times[j + 1] <= t:
            j += 1
        best, gap = -1, tol
        if m and abs(times[j] - t) <= gap:
            best, gap = j, abs(times[j] - t)
        if j + 1 < m and times[j + 1] - t < gap:
            best = j + 1
        out.append(best)
    if p.order is not None:
        out = [p.order[i] if i >= 0 else -1 for i in out]
    return out


def _channel_names(activity: Activity) -> list[str]:
    """Channel names of one version: groups once, other columns by their own name."""
    names = dict.fromkeys(_GROUPED.get(c, c) for c in activity.samples.columns)
    return list(names)


def _count(activity: Activity, name: str) -> int:
    """Valid points of a channel; a group counts instants where all its columns are valid."""
    columns = [activity.samples.columns.get(c) for c in GROUPS.get(name, (name,))]
    if any(c is None for c in columns):
        return 0
    if len(columns) == 1:
        return len(finite_values(columns[0]))
    present = [list(map(is_not, c, repeat(None))) for c in columns]
    rows = list(map(all, zip(*present)))  # instants where every column has a value
    if all(math.isfinite(sum(compress(c, rows))) for c in columns):
        return sum(rows)
    return sum(1 for values in zip(*columns) if all(_valid(v) for v in values))


def _has_valid(activity: Activity, name: str) -> bool:
    """Whether a channel has at least one valid point (stops at the first)."""
    columns = [activity.samples.columns.get(c) for c in GROUPS.get(name, (name,))]
    if any(c is None for c in columns):
        return False
    return any(all(_valid(v) for v in values) for values in zip(*columns))


def _valid(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _channels(
    ranked: list[_Prepared],
    primary: _Prepared,
    axis: list[float],
    base_at: list[int],
    policy: MergePolicy,
    sources: dict[str, str],
) -> tuple[dict[str, list[float | None]], dict[str, str]]:
    names = list(dict.fromkeys(n for p in ranked for n in _channel_names(p.activity)))
    standard = [_GROUPED.get(c, c) for c in CHANNELS]
    names.sort(key=lambda n: (standard.index(n), "") if n in standard else (len(standard), n))
    columns: dict[str, list[float | None]] = {}
    units: dict[str, str] = {}
    index_of: dict[str, list[int]] = {}
    for name in names:
        counts = [(p, _count(p.activity, name)) for p in ranked]
        counts = [(p, n) for p, n in counts if n]
        if not counts:
            continue
        if name in policy.by_points:
            winner = min(counts, key=lambda c: (-c[1], c[0].rank, c[0].key))[0]
        else:
            winner = min(
                counts,
                key=lambda c: (not policy.preferred(name, c[0].activity), c[0].rank, -c[1], c[0].key),
            )[0]
        sources[name] = winner.key
        if winner is primary:
            at = base_at
        else:
            at = index_of.get(winner.key) or index_of.setdefault(winner.key, _nearest(axis, winner))
        for column in GROUPS.get(name, (name,)):
            values = winner.activity.samples.columns[column]
            columns[column] = [values[i] if i >= 0 else None for i in at]
            unit = winner.activity.samples.units.get(column)
            if unit is not None:
                units[column] = unit
    return columns, units


def _details(ranked: list[_Prepared], primary: _Prepared, sources: dict[str, str]) -> dict[str, Any]:
    """Laps, lengths, sets and beat intervals: the primary's, else the version with most."""
    out: dict[str, Any] = {}
    for name, attribute in DETAILS.items():
        having = [p for p in ranked if getattr(p.activity, attribute)]
        if not having:
            out[attribute] = ()
            continue
        donor = primary if primary in having else min(
            having, key=lambda p: (-len(getattr(p.activity, attribute)), p.rank, p.key)
        )
        sources[name] = donor.key
        out[attribute] = _shifted_details(donor.activity, donor.version.shift_s).get(
            attribute, getattr(donor.activity, attribute)
        )
    return out


def _shifted_details(activity: Activity, shift_s: int) -> dict[str, Any]:
    """Laps, lengths and sets with their start times moved back by ``shift_s``."""
    if not shift_s:
        return {}
    delta = timedelta(seconds=shift_s)
    return {
        name: tuple(replace(item, start=item.start - delta) if item.start else item for item in getattr(activity, name))
        for name in ("laps", "lengths", "sets")
    }


def _carried(ranked: list[_Prepared], sources: dict[str, str]) -> dict[str, Any]:
    """Values no stream gives, each from the best version (policy order) that has it."""
    out: dict[str, Any] = {}
    for name in CARRIED_FIELDS:
        donor = next((p for p in ranked if getattr(p.activity, name) is not None), None)
        out[name] = getattr(donor.activity, name) if donor else None
        if donor:
            sources[name] = donor.key
    sport_donor = next((p for p in ranked if p.activity.sport.lower() not in _GENERIC_SPORTS), ranked[0])
    out["sport"] = sport_donor.activity.sport
    sources["sport"] = sport_donor.key
    sub_donor = next(
        (p for p in ranked if p.activity.sport == out["sport"] and p.activity.sub_sport is not None), None
    )
    out["sub_sport"] = sub_donor.activity.sub_sport if sub_donor else None
    if sub_donor:
        sources["sub_sport"] = sub_donor.key
    return out


__all__ = ["CARRIED_FIELDS", "DEFAULT_POLICY", "GROUPS", "STREAM_FIELDS", "MergePolicy", "Merged", "Version", "merge"]

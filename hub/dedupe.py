"""Recognising the same workout from several sources (pure: no database, no I/O).

One real workout reaches fithub several ways: the watch's FIT file, a GPX export
from Strava or Apple Health, a TCX, a live BLE recording. Storage keeps one
canonical workout linked to every source *version*; this module decides which
stored workout a new version belongs to (:func:`match`) and builds the canonical
activity from all versions (:func:`merge`, in :mod:`hub.dedupe_merge`).

Matching layers, cheapest and most certain first:

1. ``manual``: the user said so (a manual merge lists the version key in
   ``Candidate.together``); a manual split (``Candidate.apart``) removes the
   candidate from every layer.
2. ``source_id``: the source's own identity equals one of a workout's versions
   (the same FIT recording downloaded twice, with different bytes).
3. ``fuzzy``: same person, time ranges overlapping by most of the shorter one,
   starts close, compatible sports, similar duration and average speed.
4. ``fuzzy_tz_shift``: a copy whose clock was read as local time instead of UTC
   (a known exporter bug): shifted by a real time-zone offset but otherwise the
   same start minute:second and the same duration.

The thresholds live in :class:`MatchRules` so they are documented in one place
and can be tuned from configuration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .model import Activity

LAYERS: tuple[str, ...] = ("manual", "source_id", "fuzzy", "fuzzy_tz_shift")
_LAYER_RANK = {name: i for i, name in enumerate(LAYERS)}


@dataclass(frozen=True)
class VersionSummary:
    """One stored source version, as storage knows it without loading samples."""

    key: str  # "<file sha256>:<index in file>"
    sport: str
    start: datetime  # aware UTC, as decoded (before any shift correction)
    elapsed_s: float | None
    distance_m: float | None
    source_id: str | None
    shift_s: int = 0  # already applied: the aligned start is start - shift_s


@dataclass(frozen=True)
class Candidate:
    """A stored workout whose versions start inside :func:`candidate_window`."""

    id: int
    person: str
    versions: tuple[VersionSummary, ...]
    apart: frozenset[str] = frozenset()  # version keys a manual split keeps out
    together: frozenset[str] = frozenset()  # version keys a manual merge puts in


@dataclass(frozen=True)
class Match:
    candidate_id: int
    layer: str  # one of LAYERS
    shift_s: int  # subtract from the new version's start to align it


# Sports that say nothing about the movement: they match any sport.
# "fitness_equipment" names where (a gym machine), not what (run, ride, row).
GENERIC_SPORTS: frozenset[str] = frozenset(
    {"", "generic", "unknown", "other", "all", "none", "fitness_equipment"}
)

# Names that are one movement recorded by different apps. Each tuple: the family
# name first, then every sport name (FIT sport or sub-sport, Strava/TCX/GPX type
# in lower case with "_" for spaces) that belongs to it.
SPORT_FAMILIES: tuple[tuple[str, ...], ...] = (
    (
        "running", "run", "trail_running", "trailrun", "trail", "treadmill", "treadmill_running",
        "track_running", "street_running", "indoor_running", "virtual_run", "virtualrun",
    ),
    (
        "cycling", "biking", "bike", "ride", "road", "road_biking", "road_cycling", "mountain",
        "mountain_biking", "mountainbikeride", "gravel_cycling", "gravelride", "indoor_cycling",
        "virtual_ride", "virtualride", "virtual_activity", "spin", "e_bike_fitness", "ebikeride",
    ),
    ("walking", "walk", "hiking", "hike", "casual_walking", "speed_walking"),
)

# Real UTC offsets are whole hours or, in a few zones (India, Iran, Nepal, Chatham,
# central Australia, Newfoundland, ...), end in :30 or :45. The exporter bug shifts
# a recording by one of these; the largest offsets in use are -12 h and +14 h.
TZ_FRACTIONS_S: tuple[int, ...] = (0, 1800, 2700)
TZ_MAX_SHIFT_S = 14 * 3600


@dataclass(frozen=True)
class MatchRules:
    """The fuzzy-matching thresholds.

    * ``min_overlap``: the two time ranges overlap by at least this share of the
      shorter one. Back-to-back activities overlap by nothing and never match.
    * ``max_start_diff_s``: starts at most this far apart; 10 min admits a copy
      whose first 5 minutes were cut (Strava "privacy zones", trimmed uploads).
    * ``min_duration_ratio``: shorter duration / longer duration at least this.
      A 10-min warm-up recorded inside a 60-min run (ratio 0.17) stays apart.
    * ``max_speed_diff``: when both distances are known and positive, the average
      speeds (distance / elapsed) differ by at most this share. For full copies this
      is "distance within 15 %"; a trimmed copy loses distance with its duration
      and still matches, where comparing raw distances would refuse it.
    * ``point_tolerance_s``: versions without a duration (a single reading, a
      summary without elapsed time) match only when they start this close.
    * ``tz_tolerance_s``: for the time-zone bug, how far the start minute:second and
      the duration may differ (rounding in exports, a last sample dropped).
    * ``tz_duration_share``: ... or the duration may differ by this share, if larger.
    * ``tz_fractions_s``, ``tz_max_shift_s``: which shifts count as time-zone offsets.
    * ``window_slack_s``: extra room in :func:`candidate_window` on each side.
    """

    min_overlap: float = 0.8
    max_start_diff_s: float = 600.0
    min_duration_ratio: float = 0.7
    max_speed_diff: float = 0.15
    point_tolerance_s: float = 60.0
    tz_tolerance_s: float = 5.0
    tz_duration_share: float = 0.002
    tz_fractions_s: tuple[int, ...] = TZ_FRACTIONS_S
    tz_max_shift_s: int = TZ_MAX_SHIFT_S
    window_slack_s: float = 3600.0
    generic_sports: frozenset[str] = GENERIC_SPORTS
    sport_families: tuple[tuple[str, ...], ...] = SPORT_FAMILIES
    # sport name -> family, built once from sport_families.
    _family: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        family = {name: names[0] for names in self.sport_families for name in names}
        object.__setattr__(self, "_family", family)

    def family(self, sport: str | None) -> str | None:
        """The sport family, or None for a generic sport that matches anything."""
        name = "_".join((sport or "").strip().lower().replace("-", " ").split())
        if name in self.generic_sports:
            return None
        return self._family.get(name, name)

    def tz_shift(self, diff_s: float) -> int | None:
        """The time-zone offset ``diff_s`` is (within tolerance), else None."""
        step = 900  # every allowed offset is a multiple of 15 min
        shift = round(diff_s / step) * step
        size = abs(shift)
        if shift == 0 or size > self.tz_max_shift_s or abs(diff_s - shift) > self.tz_tolerance_s:
            return None
        return shift if size % 3600 in self.tz_fractions_s else None


DEFAULT_RULES = MatchRules()


def candidate_window(activity: Activity, rules: MatchRules = DEFAULT_RULES) -> tuple[datetime, datetime]:
    """Start times of stored versions worth comparing with ``activity``.

    Wide enough for the time-zone bug in either direction (+-14 h) plus the
    start difference a trimmed copy may have; storage loads the workouts of the
    same person with a version starting in this range.
    """
    margin = timedelta(seconds=rules.tz_max_shift_s + max(rules.max_start_diff_s, rules.window_slack_s))
    return activity.start - margin, activity.start + margin


def duration_of(activity: Activity) -> float | None:
    """Elapsed seconds, from the summary or else the samples' span."""
    if activity.elapsed_s is not None and activity.elapsed_s > 0:
        return activity.elapsed_s
    offsets = activity.samples.offsets_s
    if len(offsets) > 1 and offsets[-1] > 0:
        return float(offsets[-1])
    return None


@dataclass(frozen=True)
class _New:
    """What matching needs of the arriving activity, computed once."""

    start: float  # POSIX seconds
    duration: float | None
    distance: float | None
    family: str | None


@dataclass(frozen=True)
class _Hit:
    layer: str
    shift_s: int
    overlap: float


def match(
    new: Activity,
    new_key: str,
    candidates: Iterable[Candidate],
    rules: MatchRules = DEFAULT_RULES,
) -> Match | None:
    """The stored workout ``new`` belongs to, or None for a new workout.

    Among several matching workouts the best wins: by layer (manual, source_id,
    fuzzy, fuzzy_tz_shift), then by the larger overlap ratio (shared time over the
    union of both ranges), then the smaller id, so the outcome never depends on the
    order of ``candidates``.
    """
    facts = _New(
        start=new.start.timestamp(),
        duration=duration_of(new),
        distance=new.distance_m,
        family=rules.family(new.sport),
    )
    best: tuple[int, float, int, Match] | None = None
    for candidate in candidates:
        if new_key in candidate.apart or candidate.person != new.person:
            continue
        hit = _judge(new, new_key, facts, candidate, rules)
        if hit is None:
            continue
        rank = (_LAYER_RANK[hit.layer], -hit.overlap, candidate.id)
        if best is None or rank < best[:3]:
            best = (*rank, Match(candidate.id, hit.layer, hit.shift_s))
    return best[3] if best is not None else None


def _judge(new: Activity, new_key: str, facts: _New, candidate: Candidate, rules: MatchRules) -> _Hit | None:
    """The strongest layer on which ``new`` matches ``candidate``, if any."""
    fuzzy = _fuzzy(facts, candidate.versions, rules)
    if new_key in candidate.together:
        # A manual merge needs no evidence, but a time-zone shift, if there is
        # one, still aligns the version with the workout.
        return _Hit("manual", fuzzy.shift_s if fuzzy else 0, fuzzy.overlap if fuzzy else 0.0)
    if new.source_id is not None:
        for version in candidate.versions:
            if version.source_id == new.source_id:
                # Same recording: its start differs only if one copy has the
                # time-zone bug, which then adds to that version's own shift.
                diff = facts.start - version.start.timestamp()
                shift = version.shift_s + (rules.tz_shift(diff) or 0)
                return _Hit("source_id", shift, 1.0)
    return fuzzy


def _fuzzy(facts: _New, versions: tuple[VersionSummary, ...], rules: MatchRules) -> _Hit | None:
    best: _Hit | None = None
    for version in versions:
        hit = _compare(facts, version, rules)
        if hit is not None and (
            best is None or (_LAYER_RANK[hit.layer], -hit.overlap) < (_LAYER_RANK[best.layer], -best.overlap)
        ):
            best = hit
    return best


def _compare(facts: _New, version: VersionSummary, rules: MatchRules) -> _Hit | None:
    """Whether ``facts`` and one stored version are the same recording."""
    family = rules.family(version.sport)
    if facts.family is not None and family is not None and facts.family != family:
        return None
    other_start = version.start.timestamp() - version.shift_s
    other_duration = version.elapsed_s if version.elapsed_s and version.elapsed_s > 0 else None
    diff = facts.start - other_start
    if facts.duration is None or other_duration is None:
        if abs(diff) <= rules.point_tolerance_s:
            return _Hit("fuzzy", 0, 1.0)
        return None
    if not _speeds_agree(facts, other_duration, version.distance_m, rules):
        return None
    shorter = min(facts.duration, other_duration)
    longer = max(facts.duration, other_duration)
    if abs(diff) <= rules.max_start_diff_s:
        overlap = min(facts.start + facts.duration, other_start + other_duration) - max(facts.start, other_start)
        ratio = overlap / shorter
        if ratio >= rules.min_overlap and shorter / longer >= rules.min_duration_ratio:
            # Ranked by overlap over the union of both ranges: among accepted
            # candidates the full twin beats a trimmed copy of the same ride.
            union = max(facts.start + facts.duration, other_start + other_duration) - min(facts.start, other_start)
            return _Hit("fuzzy", 0, overlap / union)
        return None
    shift = rules.tz_shift(diff)
    if shift is None:
        return None
    if longer - shorter > max(rules.tz_tolerance_s, rules.tz_duration_share * longer):
        return None
    # After the shift both ranges start within tz_tolerance_s of each other.
    residual = abs(diff - shift)
    overlap = shorter - residual
    return _Hit("fuzzy_tz_shift", shift, max(0.0, overlap / (longer + residual)))


def _speeds_agree(facts: _New, duration: float, distance: float | None, rules: MatchRules) -> bool:
    if not facts.distance or not distance or facts.distance <= 0 or distance <= 0 or not facts.duration:
        return True
    a = facts.distance / facts.duration
    b = distance / duration
    if not (math.isfinite(a) and math.isfinite(b)):
        return True
    return min(a, b) / max(a, b) >= 1.0 - rules.max_speed_diff


# The merging half lives in its own module; import it from here as one API.
from .dedupe_merge import DEFAULT_POLICY, Merged, MergePolicy, Version, merge

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_RULES",
    "LAYERS",
    "Candidate",
    "Match",
    "MatchRules",
    "MergePolicy",
    "Merged",
    "Version",
    "VersionSummary",
    "candidate_window",
    "duration_of",
    "match",
    "merge",
]

"""Workouts and their versions inside one write transaction.

The Store opens the transaction and takes the per-person lock; the code here then
finds the workouts a new version may belong to (one indexed range query plus one
query for decisions), lets :mod:`hub.dedupe` decide, inserts the version and
re-merges the workouts it touched. Nothing here commits: a failure anywhere rolls
the whole import back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

import sqlalchemy as sa

from hub.dedupe import (
    DEFAULT_POLICY,
    DEFAULT_RULES,
    Candidate,
    Match,
    MatchRules,
    MergePolicy,
    Version,
    VersionSummary,
    candidate_window,
    match,
    merge,
)
from hub.errors import StorageError
from hub.model import Activity
from hub.storage import rows
from hub.storage.schema import (
    dedupe_decisions,
    laps,
    persons,
    strength_sets,
    swim_lengths,
    versions,
    workout_laps,
    workout_strength_sets,
    workout_swim_lengths,
    workouts,
)

APART, TOGETHER = "apart", "together"

# (table, Activity field, row -> model, model -> row) for the children of a version
# and, in the same order, of a workout.
VERSION_CHILDREN = (
    (laps, "laps", rows.lap_from_row, rows.lap_row),
    (swim_lengths, "lengths", rows.length_from_row, rows.length_row),
    (strength_sets, "sets", rows.set_from_row, rows.set_row),
)
WORKOUT_CHILDREN = (
    (workout_laps, "laps", rows.lap_from_row, rows.lap_row),
    (workout_swim_lengths, "lengths", rows.length_from_row, rows.length_row),
    (workout_strength_sets, "sets", rows.set_from_row, rows.set_row),
)


# Queries every attach runs, built once with bound parameters: SQLAlchemy then only
# binds the values instead of building and looking up a new statement each time.
_IN_WINDOW = sa.select(versions.c.workout_id).where(
    versions.c.person_id == sa.bindparam("person_id"),
    versions.c.start_utc >= sa.bindparam("start_from"),
    versions.c.start_utc <= sa.bindparam("start_to"),
)


def _candidates_query(wanted) -> sa.Select:
    """The summaries of every version of the workouts ``wanted`` selects."""
    return (
        sa.select(
            versions.c.workout_id,
            versions.c.version_key,
            versions.c.sport,
            versions.c.start_utc,
            versions.c.elapsed_s,
            versions.c.distance_m,
            versions.c.source_id,
            versions.c.shift_s,
        )
        .where(versions.c.workout_id.in_(wanted))
        .order_by(versions.c.workout_id, versions.c.version_key)
    )


_CANDIDATES = _candidates_query(_IN_WINDOW)
_DECISIONS_OF = sa.select(dedupe_decisions.c.key_a, dedupe_decisions.c.key_b, dedupe_decisions.c.decision).where(
    dedupe_decisions.c.person_id == sa.bindparam("person_id"),
    sa.or_(dedupe_decisions.c.key_a == sa.bindparam("key"), dedupe_decisions.c.key_b == sa.bindparam("key")),
)


def version_key(sha256: str, index: int) -> str:
    """The stable name of the ``index``-th activity decoded from a file."""
    return f"{sha256}:{index}"


def load_full(
    conn: sa.Connection, table: sa.Table, where: sa.ColumnElement[bool], *, order_by: Sequence = ()
) -> list[tuple[sa.RowMapping, Activity]]:
    """Rows of ``versions`` or ``workouts`` matching ``where``, each with its full
    Activity (samples, HRV, laps, lengths, sets); children in one query per table."""
    owner, children = ("version_id", VERSION_CHILDREN) if table is versions else ("workout_id", WORKOUT_CHILDREN)
    found = conn.execute(
        sa.select(table, persons.c.name.label("person_name"))
        .join(persons, persons.c.id == table.c.person_id)
        .where(where)
        .order_by(*order_by, table.c.id)
    ).mappings().all()
    if not found:
        return []
    ids = [r["id"] for r in found]
    items: dict[int, dict[str, list]] = {i: defaultdict(list) for i in ids}
    for child, field, from_row, _ in children:
        query = sa.select(child).where(child.c[owner].in_(ids)).order_by(child.c[owner], child.c.idx)
        for r in conn.execute(query).mappings():
            items[r[owner]][field].append(from_row(r))
    result = []
    for r in found:
        kids = items[r["id"]]
        try:
            activity = rows.activity_from_row(
                r,
                person=r["person_name"],
                laps=tuple(kids["laps"]),
                lengths=tuple(kids["lengths"]),
                sets=tuple(kids["sets"]),
            )
        except StorageError as exc:  # a corrupt blob: say which record holds it
            what = f"version {r['version_key']}" if table is versions else f"workout {r['id']}"
            raise StorageError(f"{what}: {exc}") from exc
        result.append((r, activity))
    return result


class WorkoutWriter:
    """Attaches versions to workouts and keeps merged workouts up to date.

    ``attach`` only inserts; workouts that gained or lost versions are re-merged
    once, by ``flush``, however many versions of one file touched them.
    """

    def __init__(self, conn: sa.Connection, policy: MergePolicy | None, rules: MatchRules | None) -> None:
        self.conn = conn
        self.policy = policy or DEFAULT_POLICY
        self.rules = rules or DEFAULT_RULES
        self.dirty: set[int] = set()
        self.absorbed: list[int] = []  # workouts folded into another (and deleted)

    # -- matching -----------------------------------------------------------------

    def attach(
        self, activity: Activity, *, person_id: int, key: str, file_sha256: str | None
    ) -> tuple[int, bool]:
        """Store ``activity`` as version ``key``; return (workout id, joined an existing one)."""
        same_file = f"{file_sha256}:" if file_sha256 else None
        candidates = self.candidates(activity, person_id=person_id, key=key, same_file=same_file)
        found = match(activity, key, candidates, self.rules)
        if found is None:
            # The new workout is this version as it is: both rows share its blobs.
            blobs = rows.Blobs()
            workout_id = self.create_workout(Version(key=key, activity=activity), person_id=person_id, blobs=blobs)
            self._insert_version(
                activity,
                person_id=person_id,
                workout_id=workout_id,
                key=key,
                shift_s=0,
                file_sha256=file_sha256,
                blobs=blobs,
            )
            return workout_id, False
        self._insert_version(
            activity,
            person_id=person_id,
            workout_id=found.candidate_id,
            key=key,
            shift_s=found.shift_s,
            file_sha256=file_sha256,
        )
        self.dirty.add(found.candidate_id)
        self._bridge(activity, key, found, candidates, person_id)
        return found.candidate_id, True

    def _bridge(self, activity: Activity, key: str, found: Match, candidates: list[Candidate], person_id: int) -> None:
        """Fold into ``found`` every other workout the new version also matches.

        Two copies can fail to match each other yet both match a third (a cropped
        GPX and a time-shifted TCX, joined by the watch's file): without this, the
        workouts would depend on the order the files arrived in. A manual split
        between the two workouts' versions is respected.
        """
        target = next(c for c in candidates if c.id == found.candidate_id)
        rest = [c for c in candidates if c.id != found.candidate_id]
        while rest:
            other = match(activity, key, rest, self.rules)
            if other is None:
                return
            rest = [c for c in rest if c.id != other.candidate_id]
            absorbed = next(c for c in candidates if c.id == other.candidate_id)
            if self._kept_apart(person_id, [v.key for v in target.versions] + [key], [v.key for v in absorbed.versions]):
                continue
            # The new version sits at found.shift_s on the target's clock and at
            # other.shift_s on the absorbed workout's: that difference moves every
            # absorbed version onto the target's clock.
            self.conn.execute(
                versions.update()
                .where(versions.c.workout_id == absorbed.id)
                .values(workout_id=found.candidate_id, shift_s=versions.c.shift_s - other.shift_s + found.shift_s)
            )
            self.conn.execute(sa.delete(workouts).where(workouts.c.id == absorbed.id))
            self.dirty.discard(absorbed.id)
            self.absorbed.append(absorbed.id)
            target = Candidate(id=target.id, person=target.person, versions=target.versions + absorbed.versions)

    def _kept_apart(self, person_id: int, left: list[str], right: list[str]) -> bool:
        d = dedupe_decisions
        pairs = self.conn.execute(
            sa.select(d.c.key_a, d.c.key_b).where(
                d.c.person_id == person_id,
                d.c.decision == APART,
                d.c.key_a.in_(left + right),
                d.c.key_b.in_(left + right),
            )
        ).all()
        side = {k: 0 for k in left} | {k: 1 for k in right}
        return any(side[a] != side[b] for a, b in pairs)

    def candidates(
        self, activity: Activity, *, person_id: int, key: str, same_file: str | None
    ) -> list[Candidate]:
        """Workouts of this person with a version starting in the match window, plus
        workouts a manual "together" decision ties ``key`` to (wherever they are)."""
        partners = self.decisions_of(person_id, key)
        start_from, start_to = candidate_window(activity, self.rules)
        together = [k for k, decision in partners.items() if decision == TOGETHER]
        params = {"person_id": person_id, "start_from": start_from, "start_to": start_to}
        query = _CANDIDATES
        if together:
            query = _candidates_query(
                sa.union(_IN_WINDOW, sa.select(versions.c.workout_id).where(versions.c.version_key.in_(together)))
            )
        grouped: dict[int, list[VersionSummary]] = defaultdict(list)
        for r in self.conn.execute(query, params).mappings():
            grouped[r["workout_id"]].append(
                VersionSummary(
                    key=r["version_key"],
                    sport=r["sport"],
                    start=r["start_utc"],
                    elapsed_s=r["elapsed_s"],
                    distance_m=r["distance_m"],
                    source_id=r["source_id"],
                    shift_s=r["shift_s"],
                )
            )
        result = []
        for workout_id, summaries in grouped.items():
            keys = {s.key for s in summaries}
            # Legs of one multisport file are separate workouts by definition.
            if same_file and any(k.startswith(same_file) for k in keys):
                continue
            decided = {partners[k] for k in keys if k in partners}
            result.append(
                Candidate(
                    id=workout_id,
                    person=activity.person,
                    versions=tuple(summaries),
                    apart=frozenset({key}) if APART in decided else frozenset(),
                    together=frozenset({key}) if TOGETHER in decided else frozenset(),
                )
            )
        return result

    # -- workouts -------------------------------------------------------------------

    def create_workout(self, version: Version, *, person_id: int, blobs: rows.Blobs | None = None) -> int:
        merged = merge([version], self.policy)
        # One compiled statement for every insert (a fresh .values() per row would
        # make SQLAlchemy build and look up a new statement each time).
        workout_id = self.conn.execute(
            workouts.insert(),
            rows.workout_row(
                merged.activity,
                person_id=person_id,
                channel_sources=merged.channel_sources,
                primary=merged.primary,
                blobs=blobs,
            ),
        ).inserted_primary_key[0]
        self._write_children(workout_id, merged.activity)
        return workout_id

    def flush(self) -> set[int]:
        """Re-merge every touched workout; delete those left without versions.
        Returns the ids that were deleted."""
        deleted = {workout_id for workout_id in sorted(self.dirty) if not self.remerge(workout_id)}
        self.dirty.clear()
        return deleted

    def remerge(self, workout_id: int) -> bool:
        """Rebuild the workout from its versions; False (and deleted) if it has none."""
        loaded = load_full(self.conn, versions, versions.c.workout_id == workout_id)
        if not loaded:
            self.conn.execute(sa.delete(workouts).where(workouts.c.id == workout_id))
            return False
        shifts = {r["version_key"]: r["shift_s"] for r, _ in loaded}
        merged = self._merge(loaded, shifts)
        # A shift only says how far apart two clocks are; which one is right is the
        # primary's (the version the merge builds on: the widest recording, the
        # device's own file before an export). So the primary is never shifted, and
        # the workout keeps the watch's time whichever copy arrived first.
        base = shifts[merged.primary]
        if base:
            self.conn.execute(
                versions.update().where(versions.c.workout_id == workout_id).values(shift_s=versions.c.shift_s - base)
            )
            merged = self._merge(loaded, {key: shift - base for key, shift in shifts.items()})
        values = rows.workout_row(
            merged.activity,
            person_id=loaded[0][0]["person_id"],
            channel_sources=merged.channel_sources,
            primary=merged.primary,
        )
        self.conn.execute(workouts.update().where(workouts.c.id == workout_id).values(values))
        for table, *_ in WORKOUT_CHILDREN:
            self.conn.execute(sa.delete(table).where(table.c.workout_id == workout_id))
        self._write_children(workout_id, merged.activity)
        return True

    def move_version(self, key: str, workout_id: int, *, shift_s: int | None = None) -> None:
        values: dict = {"workout_id": workout_id}
        if shift_s is not None:
            values["shift_s"] = shift_s
        self.conn.execute(versions.update().where(versions.c.version_key == key).values(values))

    # -- decisions ------------------------------------------------------------------

    def decisions_of(self, person_id: int, key: str) -> dict[str, str]:
        """Other key -> decision, for every decision involving ``key``."""
        found = self.conn.execute(_DECISIONS_OF, {"person_id": person_id, "key": key})
        return {(b if a == key else a): decision for a, b, decision in found}

    def decide(self, person_id: int, pairs: Iterable[tuple[str, str]], decision: str) -> None:
        """Record ``decision`` for each pair, replacing an earlier one about the same pair."""
        ordered = sorted({tuple(sorted(pair)) for pair in pairs if pair[0] != pair[1]})
        if not ordered:
            return
        d = dedupe_decisions
        self.conn.execute(
            sa.delete(d).where(d.c.person_id == person_id, d.c.key_a == sa.bindparam("a"), d.c.key_b == sa.bindparam("b")),
            [{"a": a, "b": b} for a, b in ordered],
        )
        now = datetime.now(timezone.utc)
        self.conn.execute(
            d.insert(),
            [{"person_id": person_id, "key_a": a, "key_b": b, "decision": decision, "created_at": now} for a, b in ordered],
        )

    # -- internals --------------------------------------------------------------------

    def _merge(self, loaded: list[tuple[sa.RowMapping, Activity]], shifts: dict[str, int]):
        return merge(
            [Version(key=r["version_key"], activity=a, shift_s=shifts[r["version_key"]]) for r, a in loaded],
            self.policy,
        )

    def _insert_version(
        self,
        activity: Activity,
        *,
        person_id: int,
        workout_id: int,
        key: str,
        shift_s: int,
        file_sha256: str | None,
        blobs: rows.Blobs | None = None,
    ) -> int:
        version_id = self.conn.execute(
            versions.insert(),
            rows.version_row(
                activity,
                person_id=person_id,
                workout_id=workout_id,
                key=key,
                shift_s=shift_s,
                file_sha256=file_sha256,
                blobs=blobs,
            ),
        ).inserted_primary_key[0]
        for table, field, _, to_row in VERSION_CHILDREN:
            items = getattr(activity, field)
            if items:
                self.conn.execute(
                    table.insert(), [{**to_row(item, idx=i), "version_id": version_id} for i, item in enumerate(items)]
                )
        return version_id

    def _write_children(self, workout_id: int, activity: Activity) -> None:
        for table, field, _, to_row in WORKOUT_CHILDREN:
            items = getattr(activity, field)
            if items:
                self.conn.execute(
                    table.insert(), [{**to_row(item, idx=i), "workout_id": workout_id} for i, item in enumerate(items)]
                )

"""Workouts: one canonical activity per real workout, built from its source versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-01

The table "activities" becomes "versions" (every row is one decoded activity of
one source, kept as decoded); "workouts" holds the merged canonical activity with
its own laps, lengths and sets; "dedupe_decisions" records manual splits and
merges. Existing data is carried over: every activity becomes the single version
of a new workout with the same id, so ids users have seen keep working.

The new "versions" table is filled by copying rather than by altering
"activities": SQLite can add a NOT NULL column to a populated table only by
rebuilding it, and dropping the old table as part of that rebuild would cascade
(ON DELETE CASCADE, foreign keys being on) into the laps of every activity.

Self-contained like 0001: every column is spelled out here.
"""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
SUMMARY = (
    "elapsed_s", "moving_s", "distance_m", "ascent_m", "descent_m", "energy_j",
    "avg_hr_bpm", "max_hr_bpm", "avg_power_w", "max_power_w",
    "avg_cadence_rpm", "max_cadence_rpm", "avg_speed_mps", "max_speed_mps",
)  # fmt: skip
# Columns an activity row of 0001 and the new workouts/versions rows share.
RECORDING = (
    "sport", "sub_sport", "start_utc", "utc_offset_s", *SUMMARY, "name",
    "device_manufacturer", "device_product", "device_serial", "device_software",
    "source_id", "multisport_group", "multisport_index", "sample_count", "sample_channels",
    "samples", "hrv", "warnings", "prov_source", "prov_sha256", "prov_received_at", "prov_name",
)  # fmt: skip
CARRIED = ("energy_j", "utc_offset_s", "name", "source_id", "sub_sport")
DEVICE = ("device_manufacturer", "device_product", "device_serial", "device_software")
CHILDREN = ("laps", "swim_lengths", "strength_sets")
LAP = ("idx", "start_utc", *SUMMARY, "trigger")
LENGTH = ("idx", "start_utc", "elapsed_s", "length_type", "strokes", "stroke")
SET = ("idx", "start_utc", "duration_s", "set_type", "category", "reps", "weight_kg")


def _recording() -> list[sa.Column]:
    return [
        sa.Column("sport", sa.Text(), nullable=False),
        sa.Column("sub_sport", sa.Text(), nullable=True),
        sa.Column("start_utc", UTC, nullable=False),
        sa.Column("utc_offset_s", sa.Integer(), nullable=True),
        *[sa.Column(name, sa.Double(), nullable=True) for name in SUMMARY],
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("device_manufacturer", sa.Text(), nullable=True),
        sa.Column("device_product", sa.Text(), nullable=True),
        sa.Column("device_serial", sa.BigInteger(), nullable=True),
        sa.Column("device_software", sa.Text(), nullable=True),
        sa.Column("source_id", sa.Text(), nullable=True),
        sa.Column("multisport_group", sa.Text(), nullable=True),
        sa.Column("multisport_index", sa.Integer(), nullable=True),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("sample_channels", sa.Text(), nullable=False),
        sa.Column("samples", sa.LargeBinary(), nullable=True),
        sa.Column("hrv", sa.LargeBinary(), nullable=True),
        sa.Column("warnings", sa.Text(), nullable=False),
        sa.Column("prov_source", sa.Text(), nullable=True),
        sa.Column("prov_sha256", sa.String(64), nullable=True),
        sa.Column("prov_received_at", UTC, nullable=True),
        sa.Column("prov_name", sa.Text(), nullable=True),
    ]


def _child_columns(table: str) -> list[sa.Column]:
    summary = [sa.Column(name, sa.Double(), nullable=True) for name in SUMMARY]
    if table == "laps":
        return [
            sa.Column("idx", sa.Integer(), nullable=False),
            sa.Column("start_utc", UTC, nullable=False),
            *summary,
            sa.Column("trigger", sa.Text(), nullable=True),
        ]
    if table == "swim_lengths":
        return [
            sa.Column("idx", sa.Integer(), nullable=False),
            sa.Column("start_utc", UTC, nullable=False),
            sa.Column("elapsed_s", sa.Double(), nullable=True),
            sa.Column("length_type", sa.Text(), nullable=False),
            sa.Column("strokes", sa.Integer(), nullable=True),
            sa.Column("stroke", sa.Text(), nullable=True),
        ]
    return [
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("start_utc", UTC, nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("set_type", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("reps", sa.Integer(), nullable=True),
        sa.Column("weight_kg", sa.Double(), nullable=True),
    ]


def _child_fields(table: str) -> tuple[str, ...]:
    return {"laps": LAP, "swim_lengths": LENGTH, "strength_sets": SET}[table]


def upgrade() -> None:
    _create_tables()
    _copy_activities()
    _fill_workout_details()
    for table in CHILDREN:
        _copy_children_to_workout(table)
        _point_children_at_versions(table)
    op.drop_table("activities")  # its indexes go with it; nothing references it any more
    if op.get_bind().dialect.name == "postgresql":
        # Rows were copied with explicit ids; the id sequences must continue after them.
        for table in ("workouts", "versions"):
            op.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            )


def _create_tables() -> None:
    op.create_table(
        "workouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        *_recording(),
        sa.Column("end_utc", UTC, nullable=False),
        sa.Column("channel_sources", sa.Text(), nullable=False),
        sa.Column("primary_version", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workouts"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_workouts_person_id_persons"),
    )
    op.create_index("ix_workouts_person_id_start_utc", "workouts", ["person_id", "start_utc"])
    op.create_index("ix_workouts_sport_start_utc", "workouts", ["sport", "start_utc"])
    op.create_index("ix_workouts_start_utc", "workouts", ["start_utc"])

    op.create_table(
        "versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workout_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=True),
        sa.Column("version_key", sa.Text(), nullable=False),
        sa.Column("shift_s", sa.Integer(), nullable=False, server_default="0"),
        *_recording(),
        sa.PrimaryKeyConstraint("id", name="pk_versions"),
        sa.ForeignKeyConstraint(["workout_id"], ["workouts.id"], name="fk_versions_workout_id_workouts"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_versions_person_id_persons"),
        sa.ForeignKeyConstraint(
            ["file_sha256"], ["raw_files.sha256"], name="fk_versions_file_sha256_raw_files", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("version_key", name="uq_versions_version_key"),
    )
    op.create_index("ix_versions_person_id_start_utc", "versions", ["person_id", "start_utc"])
    op.create_index("ix_versions_workout_id", "versions", ["workout_id"])
    op.create_index("ix_versions_file_sha256", "versions", ["file_sha256"])
    op.create_index("ix_versions_source_id", "versions", ["source_id"])

    for table in CHILDREN:
        name = f"workout_{table}"
        op.create_table(
            name,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("workout_id", sa.Integer(), nullable=False),
            *_child_columns(table),
            sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
            sa.ForeignKeyConstraint(
                ["workout_id"], ["workouts.id"], name=f"fk_{name}_workout_id_workouts", ondelete="CASCADE"
            ),
            sa.UniqueConstraint("workout_id", "idx", name=f"uq_{name}_workout_id_idx"),
        )

    op.create_table(
        "dedupe_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("key_a", sa.Text(), nullable=False),
        sa.Column("key_b", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dedupe_decisions"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_dedupe_decisions_person_id_persons"),
        sa.UniqueConstraint("person_id", "key_a", "key_b", name="uq_dedupe_decisions_person_id_key_a_key_b"),
        sa.CheckConstraint("decision IN ('apart', 'together')", name="ck_dedupe_decisions_decision"),
    )
    op.create_index("ix_dedupe_decisions_person_id_key_b", "dedupe_decisions", ["person_id", "key_b"])


def _copy_activities() -> None:
    """Each activity becomes a workout (same id) and that workout's only version."""
    cols = ", ".join(RECORDING)
    # end_utc, channel_sources and primary_version get placeholders here and their
    # values in _fill_workout_details (computing them needs Python, not dialect SQL).
    op.execute(
        f"INSERT INTO workouts (id, person_id, {cols}, end_utc, channel_sources, primary_version) "
        f"SELECT id, person_id, {cols}, start_utc, '{{}}', '' FROM activities"
    )
    # The version key is "<file sha256>:<index in file>"; the index is the position
    # among the file's activities, which were inserted in decoded order (so by id).
    # An activity without a file (none are written so far) gets a key of its own.
    op.execute(
        f"INSERT INTO versions (id, workout_id, person_id, file_sha256, version_key, shift_s, {cols}) "
        f"SELECT id, id, person_id, file_sha256, "
        f"CASE WHEN file_sha256 IS NULL THEN 'activity:' || CAST(id AS VARCHAR(20)) "
        f"ELSE file_sha256 || ':' || CAST(ROW_NUMBER() OVER (PARTITION BY file_sha256 ORDER BY id) - 1 "
        f"AS VARCHAR(20)) END, 0, {cols} FROM activities"
    )


def _fill_workout_details() -> None:
    conn = op.get_bind()
    workouts = sa.table(
        "workouts",
        sa.column("id", sa.Integer),
        sa.column("start_utc", UTC),
        sa.column("elapsed_s", sa.Double),
        sa.column("sample_channels", sa.Text),
        sa.column("hrv", sa.LargeBinary),
        *[sa.column(name) for name in (*CARRIED, *DEVICE)],
        sa.column("end_utc", UTC),
        sa.column("channel_sources", sa.Text),
        sa.column("primary_version", sa.Text),
    )
    versions = sa.table("versions", sa.column("id", sa.Integer), sa.column("version_key", sa.Text))
    having = {
        table: set(conn.execute(sa.text(f"SELECT DISTINCT activity_id FROM {table}")).scalars())
        for table in CHILDREN
    }
    query = sa.select(
        workouts.c.id,
        workouts.c.start_utc,
        workouts.c.elapsed_s,
        workouts.c.sample_channels,
        workouts.c.hrv.is_not(None).label("hrv"),
        *[workouts.c[name].is_not(None).label(name) for name in CARRIED],
        sa.or_(*[workouts.c[c].is_not(None) for c in DEVICE]).label("device"),
        versions.c.version_key,
    ).join(versions, versions.c.id == workouts.c.id)
    updates = []
    for row in conn.execute(query).mappings():
        key = row["version_key"]
        # What hub.dedupe.merge reports for a single version: every channel (latitude
        # and longitude as one "position"), every detail and carried value it has.
        sources = {"sport": key}
        for channel in json.loads(row["sample_channels"]):
            sources["position" if channel in ("lat_deg", "lon_deg") else channel] = key
        for table, name in (("laps", "laps"), ("swim_lengths", "lengths"), ("strength_sets", "sets")):
            if row["id"] in having[table]:
                sources[name] = key
        for name in ("hrv", "device", *CARRIED):
            if row[name]:
                sources[name] = key
        # start_utc comes back naive on SQLite (UTC wall time) and aware on
        # PostgreSQL; adding a duration keeps either form, and it is written back as is.
        end = row["start_utc"] + timedelta(seconds=row["elapsed_s"] or 0.0)
        updates.append(
            {"wid": row["id"], "end_utc": end, "channel_sources": json.dumps(sources, sort_keys=True), "primary_version": key}
        )
    if updates:
        conn.execute(
            workouts.update()
            .where(workouts.c.id == sa.bindparam("wid"))
            .values(
                end_utc=sa.bindparam("end_utc"),
                channel_sources=sa.bindparam("channel_sources"),
                primary_version=sa.bindparam("primary_version"),
            ),
            updates,
        )


def _copy_children_to_workout(table: str) -> None:
    cols = ", ".join(f'"{c}"' for c in _child_fields(table))  # "trigger" is a keyword
    op.execute(
        f"INSERT INTO workout_{table} (workout_id, {cols}) SELECT activity_id, {cols} FROM {table} "
        f"ORDER BY activity_id, idx"
    )


def _point_children_at_versions(table: str) -> None:
    # Versions kept the activity ids, so only the column name and the constraint change.
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(f"fk_{table}_activity_id_activities", type_="foreignkey")
        batch.drop_constraint(f"uq_{table}_activity_id_idx", type_="unique")
        batch.alter_column("activity_id", new_column_name="version_id", existing_type=sa.Integer(),
                           existing_nullable=False)  # fmt: skip
    # A second batch: SQLite's table rebuild only sees constraints on the new column
    # name once the rename has happened.
    with op.batch_alter_table(table) as batch:
        batch.create_foreign_key(
            f"fk_{table}_version_id_versions", "versions", ["version_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_unique_constraint(f"uq_{table}_version_id_idx", ["version_id", "idx"])


def downgrade() -> None:
    # Going back would have to pick one version per workout and drop the others,
    # the manual decisions and the merged data: silent data loss, so refuse.
    raise NotImplementedError(
        "fithub schema 0002 (workouts) cannot be downgraded without losing data; restore a backup instead"
    )

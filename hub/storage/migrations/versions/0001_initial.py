"""Initial schema: persons, raw files, activities with laps/lengths/sets, measurements.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Self-contained on purpose: it spells out every column instead of importing
hub.storage.schema, so later edits to the metadata cannot change what this
revision creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
SUMMARY = (
    "elapsed_s", "moving_s", "distance_m", "ascent_m", "descent_m", "energy_j",
    "avg_hr_bpm", "max_hr_bpm", "avg_power_w", "max_power_w",
    "avg_cadence_rpm", "max_cadence_rpm", "avg_speed_mps", "max_speed_mps",
)  # fmt: skip


def _summary() -> list[sa.Column]:
    return [sa.Column(name, sa.Double(), nullable=True) for name in SUMMARY]


def _child_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["activity_id"], ["activities.id"], name=f"fk_{table}_activity_id_activities", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_persons"),
        sa.UniqueConstraint("name", name="uq_persons_name"),
    )
    op.create_table(
        "raw_files",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("imported_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_raw_files"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_raw_files_person_id_persons"),
    )
    op.create_table(
        "activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=True),
        sa.Column("sport", sa.Text(), nullable=False),
        sa.Column("sub_sport", sa.Text(), nullable=True),
        sa.Column("start_utc", UTC, nullable=False),
        sa.Column("utc_offset_s", sa.Integer(), nullable=True),
        *_summary(),
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
        sa.PrimaryKeyConstraint("id", name="pk_activities"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_activities_person_id_persons"),
        sa.ForeignKeyConstraint(
            ["file_sha256"], ["raw_files.sha256"], name="fk_activities_file_sha256_raw_files", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_activities_person_id_start_utc", "activities", ["person_id", "start_utc"])
    op.create_index("ix_activities_sport_start_utc", "activities", ["sport", "start_utc"])
    op.create_index("ix_activities_start_utc", "activities", ["start_utc"])
    op.create_index("ix_activities_file_sha256", "activities", ["file_sha256"])
    op.create_index("ix_activities_source_id", "activities", ["source_id"])

    op.create_table(
        "laps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("start_utc", UTC, nullable=False),
        *_summary(),
        sa.Column("trigger", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_laps"),
        _child_fk("laps"),
        sa.UniqueConstraint("activity_id", "idx", name="uq_laps_activity_id_idx"),
    )
    op.create_table(
        "swim_lengths",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("start_utc", UTC, nullable=False),
        sa.Column("elapsed_s", sa.Double(), nullable=True),
        sa.Column("length_type", sa.Text(), nullable=False),
        sa.Column("strokes", sa.Integer(), nullable=True),
        sa.Column("stroke", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_swim_lengths"),
        _child_fk("swim_lengths"),
        sa.UniqueConstraint("activity_id", "idx", name="uq_swim_lengths_activity_id_idx"),
    )
    op.create_table(
        "strength_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("start_utc", UTC, nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("set_type", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("reps", sa.Integer(), nullable=True),
        sa.Column("weight_kg", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_strength_sets"),
        _child_fk("strength_sets"),
        sa.UniqueConstraint("activity_id", "idx", name="uq_strength_sets_activity_id_idx"),
    )
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("time_utc", UTC, nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=True),
        sa.Column("prov_sha256", sa.String(64), nullable=True),
        sa.Column("prov_received_at", UTC, nullable=True),
        sa.Column("prov_name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_measurements"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_measurements_person_id_persons"),
        sa.ForeignKeyConstraint(
            ["file_sha256"], ["raw_files.sha256"], name="fk_measurements_file_sha256_raw_files", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "person_id", "kind", "time_utc", "source", name="uq_measurements_person_id_kind_time_utc_source"
        ),
    )
    op.create_index("ix_measurements_file_sha256", "measurements", ["file_sha256"])


def downgrade() -> None:
    for table in ("measurements", "strength_sets", "swim_lengths", "laps", "activities", "raw_files", "persons"):
        op.drop_table(table)

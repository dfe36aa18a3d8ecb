"""Health records: Apple Health (and later other bulk) records, sources, priorities.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

- ``health_sources``: the app/device a record came from (name, version, device
  without the per-export object address).
- ``health_types``: HealthKit type and unit of records, with the fithub kind.
- ``health_records``: every record of every HealthKit type, with a content identity
  unique per person, so re-imports and overlapping exports add only what is new.
- ``health_source_priority``: per-person source order for deduplicating overlapping
  additive records (steps, distance, energy, flights).
- ``health_imports``: committed progress of a streamed import, for resuming.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "health_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("device", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_health_sources"),
        sa.UniqueConstraint("name", "version", "device", name="uq_health_sources_name_version_device"),
    )
    op.create_table(
        "health_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_health_types"),
        sa.UniqueConstraint("type", "unit", name="uq_health_types_type_unit"),
    )
    op.create_table(
        "health_records",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.LargeBinary(16), nullable=False),
        sa.Column("type_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("text_value", sa.Text(), nullable=True),
        sa.Column("kind_value", sa.Double(), nullable=True),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("end_s", sa.BigInteger(), nullable=False),
        sa.Column("utc_offset_s", sa.Integer(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=True),
        # The identity starts with the UTC hour of the record's start: the key is also the
        # time index (see schema.py), and SQLite keeps the rows in it (WITHOUT ROWID).
        sa.PrimaryKeyConstraint("person_id", "identity", name="pk_health_records"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_health_records_person_id_persons"),
        sa.ForeignKeyConstraint(["type_id"], ["health_types.id"], name="fk_health_records_type_id_health_types"),
        sa.ForeignKeyConstraint(["source_id"], ["health_sources.id"], name="fk_health_records_source_id_health_sources"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "health_source_priority",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("person_id", "source_name", name="pk_health_source_priority"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_health_source_priority_person_id_persons",
                                ondelete="CASCADE"),
    )
    op.create_table(
        "health_imports",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("export_key", sa.Text(), nullable=False),
        sa.Column("records_done", sa.BigInteger(), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("person_id", "export_key", name="pk_health_imports"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_health_imports_person_id_persons",
                                ondelete="CASCADE"),
    )


def downgrade() -> None:
    for table in ("health_imports", "health_source_priority", "health_records", "health_types", "health_sources"):
        op.drop_table(table)

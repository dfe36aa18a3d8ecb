"""Unassigned scale readings: measurements whose person could not be decided.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

- ``unassigned_readings``: one row per reading from a shared device (a bathroom
  scale) that no attribution rule claimed. ``key`` is the reading's idempotency key,
  unique, so a redelivered MQTT message adds nothing. Assigning a reading copies it
  into ``measurements`` and sets ``person_id``/``assigned_at`` here rather than
  deleting the row: a late redelivery of the same message then still collides with
  the key instead of reappearing in the list.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "unassigned_readings",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("device", sa.Text(), nullable=False),
        sa.Column("time_utc", UTC, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("extra", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("assigned_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_unassigned_readings"),
        sa.UniqueConstraint("key", name="uq_unassigned_readings_key"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], name="fk_unassigned_readings_person_id_persons"),
    )
    op.create_index("ix_unassigned_readings_person_id_time_utc", "unassigned_readings", ["person_id", "time_utc"])


def downgrade() -> None:
    op.drop_table("unassigned_readings")

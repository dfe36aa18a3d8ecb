"""Live samples: MQTT sample readings waiting to become an activity.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- ``live_samples``: one row per sample reading a device published (heart rate,
  power, position...), committed before the MQTT message is acknowledged. ``key``
  is the reading's idempotency key, unique, so a message the broker delivers again
  after a crash adds nothing. Rows of one device form a session; when the session
  ends it is stored as an activity and its rows are marked ``done`` in the same
  transaction. Done rows are kept for a while (they keep absorbing redeliveries)
  and pruned once the broker can no longer redeliver them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "live_samples",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("device", sa.Text(), nullable=False),
        sa.Column("time_utc", UTC, nullable=False),
        sa.Column("channels", sa.Text(), nullable=False),
        sa.Column("person", sa.Text(), nullable=True),
        sa.Column("sport", sa.Text(), nullable=True),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_live_samples"),
        sa.UniqueConstraint("key", name="uq_live_samples_key"),
        sa.CheckConstraint("state IN ('open', 'done')", name="ck_live_samples_state"),
    )
    op.create_index("ix_live_samples_state_device_time_utc", "live_samples", ["state", "device", "time_utc"])
    op.create_index("ix_live_samples_state_received_at", "live_samples", ["state", "received_at"])


def downgrade() -> None:
    op.drop_table("live_samples")

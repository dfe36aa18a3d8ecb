"""Daemon state: file ingest state, the durable event outbox, source health.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

- ``ingest_state``: what the daemon decided about a file's bytes (SHA-256 -> state),
  committed before the file on disk is moved, so a daemon killed between the commit
  and the move finishes the move on restart instead of importing twice.
- ``outbox_events`` / ``outbox_consumers`` / ``outbox_deliveries``: events written
  in the same transaction as the data they describe, then delivered to each sink and
  notifier at least once, in order per person, with retries and a dead-letter state.
- ``source_state``: last success and failure of each source, for ``fithub status``
  and ``/metrics`` read by another process.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
# 64-bit on PostgreSQL; SQLite's rowid alias must be spelled INTEGER.
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ingest_state",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_ingest_state"),
        sa.CheckConstraint("state IN ('stored', 'rejected')", name="ck_ingest_state_state"),
    )
    op.create_index("ix_ingest_state_source_path", "ingest_state", ["source", "path"])

    op.create_table(
        "outbox_events",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("person", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_events"),
        sa.UniqueConstraint("key", name="uq_outbox_events_key"),
    )
    op.create_table(
        "outbox_consumers",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("after_event_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_outbox_consumers"),
    )
    op.create_table(
        "outbox_deliveries",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("person", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", UTC, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_outbox_deliveries"),
        sa.ForeignKeyConstraint(
            ["consumer"], ["outbox_consumers.name"], name="fk_outbox_deliveries_consumer_outbox_consumers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["outbox_events.id"], name="fk_outbox_deliveries_event_id_outbox_events",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("state IN ('pending', 'done', 'dead')", name="ck_outbox_deliveries_state"),
    )
    op.create_index("ix_outbox_deliveries_consumer_state_next_at", "outbox_deliveries", ["consumer", "state", "next_at"])

    op.create_table(
        "source_state",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("last_attempt_at", UTC, nullable=True),
        sa.Column("last_success_at", UTC, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("errors_total", sa.BigInteger(), nullable=False),
        sa.Column("items_total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_source_state"),
    )


def downgrade() -> None:
    for table in ("source_state", "outbox_deliveries", "outbox_consumers", "outbox_events", "ingest_state"):
        op.drop_table(table)

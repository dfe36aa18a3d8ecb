"""The database tables, as SQLAlchemy Core metadata.

This metadata describes the schema; it never creates it. Tables come only from the
Alembic migrations in ``migrations/versions``, and a test checks that the migrated
database and this metadata agree. Change both together.

Types are the portable subset that SQLite and PostgreSQL share. Times are stored as
UTC: ``timestamptz`` on PostgreSQL, a naive UTC text value on SQLite (which has no
time zone type), and always handed back as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from hub.model import require_utc

# Deterministic constraint names, so a migration can address them and both
# backends reflect the same names.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime in, an aware UTC datetime out, on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = require_utc(value, "stored datetime")
        # SQLite's DATETIME drops the offset silently; store the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _fk(target: str, **kw) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete="CASCADE", **kw)


persons = sa.Table(
    "persons",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
)

raw_files = sa.Table(
    "raw_files",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=False),  # as the user or device gave it
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("imported_at", UTCDateTime, nullable=False),
)


def _summary_columns() -> list[sa.Column]:
    """The summary values shared by activities and laps (model field names)."""
    names = [
        "elapsed_s", "moving_s", "distance_m", "ascent_m", "descent_m", "energy_j",
        "avg_hr_bpm", "max_hr_bpm", "avg_power_w", "max_power_w",
        "avg_cadence_rpm", "max_cadence_rpm", "avg_speed_mps", "max_speed_mps",
    ]  # fmt: skip
    return [sa.Column(name, sa.Double) for name in names]


SUMMARY_FIELDS: tuple[str, ...] = tuple(c.name for c in _summary_columns())

activities = sa.Table(
    "activities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), nullable=False),
    # The raw file this row was decoded from; reprocessing replaces by it.
    sa.Column("file_sha256", sa.String(64), _fk("raw_files.sha256"), nullable=True),
    sa.Column("sport", sa.Text, nullable=False),
    sa.Column("sub_sport", sa.Text),
    sa.Column("start_utc", UTCDateTime, nullable=False),
    sa.Column("utc_offset_s", sa.Integer),
    *_summary_columns(),
    sa.Column("name", sa.Text),
    sa.Column("device_manufacturer", sa.Text),
    sa.Column("device_product", sa.Text),
    sa.Column("device_serial", sa.BigInteger),
    sa.Column("device_software", sa.Text),
    sa.Column("source_id", sa.Text),
    sa.Column("multisport_group", sa.Text),
    sa.Column("multisport_index", sa.Integer),
    sa.Column("sample_count", sa.Integer, nullable=False),
    sa.Column("sample_channels", sa.Text, nullable=False),  # JSON list of column names
    sa.Column("samples", sa.LargeBinary),  # see hub.storage.samples
    sa.Column("hrv", sa.LargeBinary),  # beat intervals, hub.storage.samples.encode_series
    sa.Column("warnings", sa.Text, nullable=False),  # JSON list of strings
    # Provenance exactly as the decoder gave it (may differ from file_sha256 for
    # records that were not read from a file).
    sa.Column("prov_source", sa.Text),
    sa.Column("prov_sha256", sa.String(64)),
    sa.Column("prov_received_at", UTCDateTime),
    sa.Column("prov_name", sa.Text),
    sa.Index(None, "person_id", "start_utc"),
    sa.Index(None, "sport", "start_utc"),
    sa.Index(None, "start_utc"),
    sa.Index(None, "file_sha256"),
    sa.Index(None, "source_id"),
)

laps = sa.Table(
    "laps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("activity_id", sa.Integer, _fk("activities.id"), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("start_utc", UTCDateTime, nullable=False),
    *_summary_columns(),
    sa.Column("trigger", sa.Text),
    sa.UniqueConstraint("activity_id", "idx"),
)

swim_lengths = sa.Table(
    "swim_lengths",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("activity_id", sa.Integer, _fk("activities.id"), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("start_utc", UTCDateTime, nullable=False),
    sa.Column("elapsed_s", sa.Double),
    sa.Column("length_type", sa.Text, nullable=False),
    sa.Column("strokes", sa.Integer),
    sa.Column("stroke", sa.Text),
    sa.UniqueConstraint("activity_id", "idx"),
)

strength_sets = sa.Table(
    "strength_sets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("activity_id", sa.Integer, _fk("activities.id"), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("start_utc", UTCDateTime),
    sa.Column("duration_s", sa.Double),
    sa.Column("set_type", sa.Text, nullable=False),
    sa.Column("category", sa.Text),
    sa.Column("reps", sa.Integer),
    sa.Column("weight_kg", sa.Double),
    sa.UniqueConstraint("activity_id", "idx"),
)

measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("time_utc", UTCDateTime, nullable=False),
    sa.Column("value", sa.Double, nullable=False),
    # "" rather than NULL when there is no provenance: NULLs never collide in a
    # unique constraint, and the constraint is what makes re-delivery harmless.
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("file_sha256", sa.String(64), _fk("raw_files.sha256"), nullable=True),
    sa.Column("prov_sha256", sa.String(64)),
    sa.Column("prov_received_at", UTCDateTime),
    sa.Column("prov_name", sa.Text),
    sa.UniqueConstraint("person_id", "kind", "time_utc", "source"),
    sa.Index(None, "file_sha256"),
)

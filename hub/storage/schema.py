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

def _recording_columns() -> list[sa.Column]:
    """What a workout and each of its versions both hold: one Activity, flattened."""
    return [
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
    ]


# One row per real workout: the canonical activity merged from all its versions.
# Users see these ids; a workout is never empty (the Store deletes one that loses
# its last version).
workouts = sa.Table(
    "workouts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), nullable=False),
    *_recording_columns(),
    sa.Column("end_utc", UTCDateTime, nullable=False),
    # JSON object: merged channel ("position", "hr_bpm", "laps", ...) -> version key.
    sa.Column("channel_sources", sa.Text, nullable=False),
    # Key of the version whose time axis and metadata are the base of the merge.
    sa.Column("primary_version", sa.Text, nullable=False),
    sa.Index(None, "person_id", "start_utc"),
    sa.Index(None, "sport", "start_utc"),
    sa.Index(None, "start_utc"),
)

# One row per decoded activity of one source (file), exactly as decoded; never
# changed by merging, so a workout can always be rebuilt or split again.
versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # No cascade: a workout is deleted only after its versions have moved away.
    sa.Column("workout_id", sa.Integer, sa.ForeignKey("workouts.id"), nullable=False),
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), nullable=False),
    # The raw file this row was decoded from; reprocessing replaces by it.
    sa.Column("file_sha256", sa.String(64), _fk("raw_files.sha256"), nullable=True),
    # "<file sha256>:<index in file>": stable across re-imports and reprocessing,
    # so manual dedupe decisions can name it.
    sa.Column("version_key", sa.Text, nullable=False, unique=True),
    # Seconds subtracted from this version's times to align it with its workout
    # (a device that wrote local time as UTC); 0 for almost every version.
    sa.Column("shift_s", sa.Integer, nullable=False, server_default="0"),
    *_recording_columns(),
    # The matcher's range query: versions of one person starting in a window.
    sa.Index(None, "person_id", "start_utc"),
    sa.Index(None, "workout_id"),
    sa.Index(None, "file_sha256"),
    sa.Index(None, "source_id"),
)


def _lap_columns() -> list[sa.Column]:
    return [
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("start_utc", UTCDateTime, nullable=False),
        *_summary_columns(),
        sa.Column("trigger", sa.Text),
    ]


def _length_columns() -> list[sa.Column]:
    return [
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("start_utc", UTCDateTime, nullable=False),
        sa.Column("elapsed_s", sa.Double),
        sa.Column("length_type", sa.Text, nullable=False),
        sa.Column("strokes", sa.Integer),
        sa.Column("stroke", sa.Text),
    ]


def _set_columns() -> list[sa.Column]:
    return [
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("start_utc", UTCDateTime),
        sa.Column("duration_s", sa.Double),
        sa.Column("set_type", sa.Text, nullable=False),
        sa.Column("category", sa.Text),
        sa.Column("reps", sa.Integer),
        sa.Column("weight_kg", sa.Double),
    ]


def _child(name: str, owner: str, columns: list[sa.Column]) -> sa.Table:
    """Laps/lengths/sets of a version (owner "versions") or of a merged workout."""
    owner_column = f"{owner[:-1]}_id"  # versions -> version_id, workouts -> workout_id
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(owner_column, sa.Integer, _fk(f"{owner}.id"), nullable=False),
        *columns,
        sa.UniqueConstraint(owner_column, "idx"),
    )


laps = _child("laps", "versions", _lap_columns())
swim_lengths = _child("swim_lengths", "versions", _length_columns())
strength_sets = _child("strength_sets", "versions", _set_columns())
# The merged workout's own copies: taken from one version (shifted into place when
# that version needed a time correction).
workout_laps = _child("workout_laps", "workouts", _lap_columns())
workout_swim_lengths = _child("workout_swim_lengths", "workouts", _length_columns())
workout_strength_sets = _child("workout_strength_sets", "workouts", _set_columns())

# Manual dedupe decisions between two version keys, stored with key_a < key_b (in
# Python's order; the Store normalises, since database collations differ) so a pair
# is one row whichever way round it was decided.
dedupe_decisions = sa.Table(
    "dedupe_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), nullable=False),
    sa.Column("key_a", sa.Text, nullable=False),
    sa.Column("key_b", sa.Text, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),  # "apart" | "together"
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("person_id", "key_a", "key_b"),
    sa.CheckConstraint("decision IN ('apart', 'together')", name="ck_dedupe_decisions_decision"),
    # The matcher looks decisions up by either key.
    sa.Index(None, "person_id", "key_b"),
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

# -- daemon state (migration 0003) ----------------------------------------------------------------

# 64-bit ids on PostgreSQL; SQLite's autoincrementing rowid alias must be INTEGER.
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# What the daemon decided about a file's bytes, committed before the file is moved.
ingest_state = sa.Table(
    "ingest_state",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # "stored" | "rejected"
    sa.Column("source", sa.Text, nullable=False),  # the watch/source name that saw it
    sa.Column("path", sa.Text, nullable=False),  # where it was seen
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger),
    sa.Column("reason", sa.Text),  # why it was rejected
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("state IN ('stored', 'rejected')", name="ck_ingest_state_state"),
    sa.Index(None, "source", "path"),
)

# Events, written in the transaction of the change they describe.
outbox_events = sa.Table(
    "outbox_events",
    metadata,
    sa.Column("id", _BIGID, primary_key=True),
    sa.Column("key", sa.Text, nullable=False, unique=True),  # idempotency key, stable across retries
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("person", sa.Text),
    sa.Column("payload", sa.Text, nullable=False),  # JSON
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# A sink or notifier: it receives the events with id > after_event_id (the newest
# event when it was first configured), so adding a notifier does not replay history.
outbox_consumers = sa.Table(
    "outbox_consumers",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("after_event_id", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

outbox_deliveries = sa.Table(
    "outbox_deliveries",
    metadata,
    sa.Column("consumer", sa.Text, _fk("outbox_consumers.name"), primary_key=True),
    sa.Column("event_id", sa.BigInteger, _fk("outbox_events.id"), primary_key=True),
    sa.Column("person", sa.Text),  # copied from the event: ordering is per person
    sa.Column("state", sa.String(16), nullable=False),  # "pending" | "done" | "dead"
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("state IN ('pending', 'done', 'dead')", name="ck_outbox_deliveries_state"),
    sa.Index(None, "consumer", "state", "next_at"),
)

# Health of each source, shared with `fithub status` and /metrics in other processes.
source_state = sa.Table(
    "source_state",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("last_attempt_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("failures", sa.Integer, nullable=False),  # consecutive
    sa.Column("errors_total", sa.BigInteger, nullable=False),
    sa.Column("items_total", sa.BigInteger, nullable=False),
)

# -- Apple Health and other bulk health records (migration 0004) -------------------------------------

# A record's origin: app or device name, its version and the device description
# (with the per-export object address removed). "" rather than NULL for unknown
# parts, so the unique constraint can recognise a source again.
health_sources = sa.Table(
    "health_sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("device", sa.Text, nullable=False),
    sa.UniqueConstraint("name", "version", "device"),
)

# A record's type as exported (HealthKit identifier and unit, "" for none) and the
# fithub kind (hub.model.MEASUREMENT_KINDS) the type maps to, or NULL. Types are a
# few dozen per export; naming them here keeps every record row narrow.
health_types = sa.Table(
    "health_types",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("unit", sa.Text, nullable=False),
    sa.Column("kind", sa.Text),
    sa.UniqueConstraint("type", "unit"),
)

# Every HealthKit record of every type, as exported (value as given, type and unit in
# health_types), plus its value in the kind's SI unit when fithub knows the type
# (NULL otherwise, and for sleep stages that are not sleep). ``identity`` (see
# connectors.apple_health.records.identity) makes re-import and overlapping exports
# add only what is new. It is also the whole key: its first 4 bytes are the UTC
# hour of the start (hub.storage.health.key_hour), so a time range is a key range
# (workout HR, daily totals) and no second index has to be kept up to date on each
# of millions of inserts. On SQLite the rows live in that key's B-tree (WITHOUT
# ROWID): one tree per insert. Times are epoch seconds: a fifth of the bytes of a
# timestamp text, and what the daily-total arithmetic works in.
health_records = sa.Table(
    "health_records",
    metadata,
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id"), primary_key=True),
    sa.Column("identity", sa.LargeBinary(16), primary_key=True),
    sa.Column("type_id", sa.Integer, sa.ForeignKey("health_types.id"), nullable=False),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("health_sources.id"), nullable=False),
    sa.Column("value", sa.Double),  # numeric value as exported
    sa.Column("text_value", sa.Text),  # category value (sleep stage, ...) when not numeric
    sa.Column("kind_value", sa.Double),  # value in the kind's unit
    sa.Column("start_s", sa.BigInteger, nullable=False),  # UTC, seconds since 1970
    sa.Column("end_s", sa.BigInteger, nullable=False),
    sa.Column("utc_offset_s", sa.Integer),  # local time = UTC + offset, as the phone recorded it
    sa.Column("metadata", sa.Text),  # JSON object, NULL when there is none
    sqlite_with_rowid=False,
)

# Which source wins where additive records overlap (lower rank wins), per person.
# Sources not listed rank by the default rule (watch, then phone, then the rest).
health_source_priority = sa.Table(
    "health_source_priority",
    metadata,
    sa.Column("person_id", sa.Integer, _fk("persons.id"), primary_key=True),
    sa.Column("source_name", sa.Text, primary_key=True),
    sa.Column("rank", sa.Integer, nullable=False),
)

# Committed progress of a streamed import, per person and export: an interrupted
# import of the same export skips the records (in document order) already stored.
health_imports = sa.Table(
    "health_imports",
    metadata,
    sa.Column("person_id", sa.Integer, _fk("persons.id"), primary_key=True),
    sa.Column("export_key", sa.Text, primary_key=True),  # ExportDate, locale and size of the main XML
    sa.Column("records_done", sa.BigInteger, nullable=False),
    sa.Column("finished", sa.Boolean, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# -- MQTT scale readings no rule could attribute (migration 0005) -----------------------------------

# A reading from a shared device that matched no person's attribution rule (or
# several). ``key`` is the message's idempotency key. Assigning sets person_id and
# assigned_at and copies the value into measurements; the row stays so the key keeps
# absorbing redeliveries. person_id IS NULL is the "unassigned" list.
unassigned_readings = sa.Table(
    "unassigned_readings",
    metadata,
    sa.Column("id", _BIGID, primary_key=True),
    sa.Column("key", sa.Text, nullable=False, unique=True),
    sa.Column("device", sa.Text, nullable=False),
    sa.Column("time_utc", UTCDateTime, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # hub.model.MEASUREMENT_KINDS
    sa.Column("value", sa.Double, nullable=False),
    sa.Column("extra", sa.Text, nullable=False),  # JSON object, e.g. {"impedance_ohm": 503}
    sa.Column("source", sa.Text, nullable=False),  # becomes measurements.source on assignment
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id")),
    sa.Column("assigned_at", UTCDateTime),
    sa.Index(None, "person_id", "time_utc"),
)

# -- MQTT live samples (migration 0006) ------------------------------------------------------------

# A sample a device published over MQTT, committed before the message is
# acknowledged. ``key`` is the reading's idempotency key (device + time + seq), so a
# redelivered message adds nothing. The open rows of a device form its live session;
# the finished session becomes an activity in the transaction that marks its rows
# "done". Done rows stay until the broker can no longer redeliver their messages.
live_samples = sa.Table(
    "live_samples",
    metadata,
    sa.Column("id", _BIGID, primary_key=True),
    sa.Column("key", sa.Text, nullable=False, unique=True),
    sa.Column("source", sa.Text, nullable=False),  # the [sources.<name>] that received it
    sa.Column("device", sa.Text, nullable=False),
    sa.Column("time_utc", UTCDateTime, nullable=False),
    sa.Column("channels", sa.Text, nullable=False),  # JSON object: hub.model channel name -> value
    sa.Column("person", sa.Text),  # from the device map or the payload; NULL: the hub's default
    sa.Column("sport", sa.Text),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # "open" | "done"
    sa.CheckConstraint("state IN ('open', 'done')", name="ck_live_samples_state"),
    sa.Index(None, "state", "device", "time_utc"),
    sa.Index(None, "state", "received_at"),
)

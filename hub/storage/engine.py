"""Turning a database URL into a configured SQLAlchemy engine.

SQLite gets WAL (readers never block the writer), a 30 s busy timeout (several
importers may write at once) and enforced foreign keys, on every connection since
SQLite forgets pragmas per connection. Its transactions are started by us rather
than by the driver, so that a writing transaction can take the write lock up front
(``BEGIN IMMEDIATE``): a deferred transaction that first reads and then writes can
fail at once with "database is locked" when another process committed in between,
without waiting for the busy timeout.
"""

from __future__ import annotations

import random
import sqlite3
import time

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, make_url

from hub.errors import StorageError

BUSY_TIMEOUT_S = 30
# Execution option marking a connection whose next transaction will write.
WRITE = "fithub_write"


def normalise_url(url: str) -> URL:
    """Parse ``url``; a bare ``postgresql://`` (or ``postgres://``) means psycopg 3."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StorageError(f"database URL {url!r} is not valid: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StorageError(
            f"database URL {parsed.render_as_string(hide_password=True)!r}: "
            "only sqlite:/// and postgresql:// are supported"
        )
    return parsed


def retry_locked(action, timeout_s: float = BUSY_TIMEOUT_S):
    """Run ``action``, retrying while SQLite reports the database locked.

    For the few places where SQLite returns SQLITE_BUSY without waiting (journal
    mode changes, WAL recovery when several processes open a new file together).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return action()
        except (sqlite3.OperationalError, sa.exc.OperationalError) as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.1))


def make_engine(url: URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # pool_pre_ping: a long-running daemon outlives server restarts.
    return sa.create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: URL) -> sa.Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Take transaction control away from the sqlite3 module (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
            # Switching a new file to WAL needs an exclusive lock and SQLite answers
            # SQLITE_BUSY at once, without its busy handler, when another process is
            # doing the same: retry until the busy timeout instead of failing.
            retry_locked(lambda: cursor.execute("PRAGMA journal_mode=WAL"))
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def upsert_insert(bind: sa.Connection | sa.Engine, table: sa.Table):
    """An INSERT for ``bind``'s backend that can take ``on_conflict_do_nothing`` /
    ``on_conflict_do_update`` (both SQLite and PostgreSQL speak ON CONFLICT, but
    SQLAlchemy builds it per dialect)."""
    return (pg_dialect if bind.dialect.name == "postgresql" else sqlite_dialect).insert(table)

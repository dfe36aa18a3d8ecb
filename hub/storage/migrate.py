"""Bringing a database to the newest schema with the packaged Alembic migrations."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub.storage.engine import WRITE, retry_locked

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Run ``upgrade head``: creates an empty database, updates an old one, no-op at head.

    The transaction takes the write lock before reading the version (SQLite
    ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock in env.py), so processes starting
    together do not both try to create the tables.
    """
    def run() -> None:
        with engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            # One transaction around the whole run, including Alembic's read of the current
            # version: Alembic then skips its own (per-migration on SQLite, whose DDL it
            # assumes is not transactional; with the driver's implicit commits switched
            # off in engine.py it is).
            with conn.begin():
                command.upgrade(_config(conn), "head")

    if engine.dialect.name == "sqlite":
        # Several processes opening a brand-new SQLite file together can get an
        # immediate "database is locked" while the first one sets up WAL; the
        # whole upgrade is one transaction, so running it again is safe.
        retry_locked(run)
    else:
        run()

"""Alembic environment for fithub: always run from code, on a connection it is handed.

``hub.storage.migrate.upgrade`` puts an open connection into
``config.attributes["connection"]``; there is no alembic.ini and no URL here, so
migrations run against exactly the database the Store opened.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from hub.storage.schema import metadata

# Any constant: concurrent fithub processes serialise their upgrades on it.
_PG_LOCK_KEY = 0x66697468756221  # "fithub!"

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("fithub migrations run through hub.storage.migrate, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

# migrate.upgrade already holds the transaction, so this opens none of its own.
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Two processes opening an empty database at once would both try to create
        # the tables; the lock makes the second wait and then find the head applied.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    context.run_migrations()

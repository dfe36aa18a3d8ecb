"""Shared test fixtures: the real-world corpus, the project's own fixtures, databases."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "fixtures").resolve()
OWN = ROOT / "fixtures"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The real-world corpus in ../shared/fixtures (never copied into the repo)."""
    if not SHARED.is_dir():
        pytest.skip(f"real-world corpus not found at ../shared/fixtures ({SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def own() -> Path:
    return OWN


PG_ADMIN_URL = os.environ.get("FITHUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """A fresh PostgreSQL database on the real server for this test session."""
    import sqlalchemy as sa

    name = f"fithub_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the suite requires the real server; say so plainly
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A database URL for one test, run once on SQLite and once on the real PostgreSQL.

    Each PostgreSQL test gets its own schema-free database state by dropping all
    tables at the end, so tests stay independent.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fithub.db'}"
        return
    url = request.getfixturevalue("pg_server_url")
    yield url
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()

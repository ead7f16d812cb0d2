"""Storage fixtures shared by the SQL tests: one `db_url` parametrized over SQLite and PostgreSQL.

Import the fixtures into a test module (`from _pg import db_url, db`). PostgreSQL comes from
SEEDCORE_TEST_POSTGRES_URL; each test gets its own freshly created database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from seedcore.db.database import Database, normalize_url, upgrade

POSTGRES_ENV = "SEEDCORE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def postgres_base_url() -> str:
    """The PostgreSQL URL the tests use; fails the test (never skips) when it is not configured."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.fail(
            f"{POSTGRES_ENV} is not set: run `export {POSTGRES_ENV}=$(scripts/ensure-postgres | tail -1)` "
            "(as root) to start PostgreSQL for the tests"
        )
    return url


@contextmanager
def fresh_postgres_database(base_url: str) -> Iterator[str]:
    """Create a uniquely named empty database next to `base_url`'s, yield its URL, drop it after."""
    base = normalize_url(make_url(base_url))
    name = f"seedcore_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """An empty database URL: a SQLite file in a temp dir, or a brand-new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'seedcore.db'}"
        return
    with fresh_postgres_database(postgres_base_url()) as url:
        yield url


@pytest.fixture
def db(db_url) -> Iterator[Database]:
    """A Database migrated to head with Alembic (never create_all)."""
    upgrade(db_url)
    database = Database(db_url)
    yield database
    database.dispose()

"""Storage fixtures shared by the SQL tests: one `db_url` parametrized over SQLite and PostgreSQL.

Import the fixtures into a test module (`from _pg import db_url, db`), or `sql_backend` to run the
module's app/client tests (conftest's `settings` family) on both (`ON_BOTH_BACKENDS`: one test).
PostgreSQL comes from SEEDCORE_TEST_POSTGRES_URL; each test gets its own freshly created database,
dropped afterwards: an empty one, or a copy of a template migrated once per session
(`CREATE DATABASE .. TEMPLATE`). A migrated SQLite database is a file copy of one migrated once per
session (`sqlite_template`), never a fresh run of every migration.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from seedcore.db.database import Database, current_revision
from seedcore.db.engine import normalize_url
from seedcore.db.migrations import head_revision, upgrade

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
def fresh_postgres_database(base_url: str, template: str | None = None) -> Iterator[str]:
    """Create a uniquely named database next to `base_url`'s (empty, or a copy of the database named
    `template`), yield its URL, drop it after."""
    base = normalize_url(make_url(base_url))
    name = f"seedcore_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            _drop_database(admin, name)
        finally:
            admin.dispose()


def _drop_database(admin, name: str, attempts: int = 50) -> None:
    """DROP DATABASE .. WITH (FORCE), retried while an autovacuum worker is on it: FORCE may only end
    the role's own sessions, and PostgreSQL refuses the whole drop while a worker of its own is there."""
    for attempt in range(attempts):
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError as error:
            if "pg_signal_backend" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """The name of a PostgreSQL database migrated to head with Alembic once per session, for
    `fresh_postgres_database(.., template=..)` (no connection stays open to it: a template must be idle)."""
    with fresh_postgres_database(postgres_base_url()) as url:
        upgrade(url)
        yield make_url(url).database


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite database file migrated to head with Alembic once per session, for `copy_sqlite_template`."""
    path = tmp_path_factory.mktemp("sqlite-template") / "seedcore.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:  # everything in the file itself: a copy needs no -wal beside it
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return path


def copy_sqlite_template(template: Path, url: str) -> None:
    """Put a copy of the migrated `template` where the SQLite `url` points, unless a database is there."""
    path = Path(make_url(url).database)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)


@pytest.fixture(params=BACKENDS)
def sql_backend(request) -> str:
    """Imported into a module: its tests on conftest's `settings` family run on SQLite and on PostgreSQL."""
    return request.param


# The same for one test: `@ON_BOTH_BACKENDS def test_x(client): ...`
ON_BOTH_BACKENDS = pytest.mark.parametrize("sql_backend", BACKENDS)


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """An empty database URL: a SQLite file in a temp dir, or a brand-new PostgreSQL database
    (already at head, copied from the session's template, when the test asks for `db`, on both)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'seedcore.db'}"
        if "db" in request.fixturenames:
            copy_sqlite_template(request.getfixturevalue("sqlite_template"), url)
        yield url
        return
    template = request.getfixturevalue("postgres_template") if "db" in request.fixturenames else None
    with fresh_postgres_database(postgres_base_url(), template) as url:
        yield url


@pytest.fixture
def db(db_url) -> Iterator[Database]:
    """A Database migrated to head with Alembic (never create_all; on PostgreSQL, a copy of the migrated template)."""
    upgrade_unless_at_head(db_url)
    database = Database(db_url)
    yield database
    database.dispose()


def upgrade_unless_at_head(url: str) -> None:
    """Migrate `url` to head with Alembic unless it is there already (a copy of the migrated template)."""
    if current_revision(url) != head_revision():
        upgrade(url)

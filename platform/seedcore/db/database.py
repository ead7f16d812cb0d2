"""The SQL engine, the session context manager, and Alembic migrations driven from Python."""

from __future__ import annotations

from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from seedcore.errors import ConflictError, SchemaOutdatedError, SeedcoreError, ValidationError

# The top-level migrations/ directory, shipped inside the package as seedcore._migrations (a symlink in the
# source tree, real files in an installed wheel), so a non-editable install can migrate too.
MIGRATIONS_DIR = Path(str(files("seedcore._migrations")))
UPGRADE_HINT = "run `seedcore db upgrade`"
# Our own revision table: MLflow keeps its revision in `alembic_version`, and the two may share a database.
VERSION_TABLE = "seedcore_alembic_version"
_LEGACY_VERSION_TABLE = "alembic_version"
_UNDEFINED_TABLE = "42P01"  # PostgreSQL SQLSTATE


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; plain `postgresql://` means psycopg 3 (`postgresql+psycopg://`)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValidationError(f"invalid database URL: {exc}", field="database_url") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def may_exist(url: str | URL) -> bool:
    """False only when the database surely does not exist yet: an SQLite file not created; opening it
    (make_engine) would create it."""
    parsed = normalize_url(url)
    path = _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    return path is None or path.exists()


def _enable_sqlite_wal(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")  # wait for a writer instead of failing at once
    cursor.close()


def make_engine(url: str | URL) -> Engine:
    """An engine for our database: SQLite (file created, WAL, any thread) or PostgreSQL (psycopg 3)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    path = _sqlite_file(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
    if path is not None:
        event.listen(engine, "connect", _enable_sqlite_wal)
    return engine


def translate_error(exc: DBAPIError) -> SeedcoreError:
    """Our error for a driver error: conflict, missing schema, or an unavailable database."""
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    if isinstance(exc, IntegrityError):
        return ConflictError(f"conflicting database write: {detail}")
    if getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE or "no such table" in detail:
        return SchemaOutdatedError(f"database tables are missing ({detail}): {UPGRADE_HINT}")
    if isinstance(exc, OperationalError):
        return SeedcoreError(f"database unavailable: {detail}")
    return SeedcoreError(f"database error: {detail}")


class Database:
    """One engine plus sessions for our tables (flashbulb incidents, tuning jobs)."""

    def __init__(self, url: str | URL):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error, and raises our errors."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except DBAPIError as exc:
            session.rollback()
            raise translate_error(exc) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at; None when it has never been migrated."""
        try:
            with self.engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
                return context.get_current_revision()
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    def check_schema(self) -> None:
        """Raise SchemaOutdatedError unless the database is at the code's head revision."""
        current, head = self.current_revision(), head_revision()
        if current == head:
            return
        if current is not None and current not in _known_revisions():
            raise SchemaOutdatedError(
                f"database schema is at {current}, which this code does not know (it needs {head}): "
                "newer code migrated it; upgrade the code"
            )
        raise SchemaOutdatedError(f"database schema is at {current or 'base (empty)'}, code needs {head}: {UPGRADE_HINT}")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config for migrations/; the URL travels as an attribute, never via env vars."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.attributes["url"] = normalize_url(url).render_as_string(hide_password=False)
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database up to `revision` (creating the file or tables as needed)."""
    engine = make_engine(url)  # SQLite: creates the parent directory first
    try:
        _adopt_legacy_version_table(engine)
    finally:
        engine.dispose()
    _run(command.upgrade, url, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database down to `revision` ("base" drops every table)."""
    _run(command.downgrade, url, revision)


def current_revision(url: str | URL) -> str | None:
    """The revision the database at `url` is at; None when never migrated."""
    database = Database(url)
    try:
        return database.current_revision()
    finally:
        database.dispose()


def head_revision() -> str:
    """The newest revision in migrations/versions."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SeedcoreError(f"no Alembic revisions under {MIGRATIONS_DIR}")
    return head


def _adopt_legacy_version_table(engine: Engine) -> None:
    """Databases migrated before VERSION_TABLE existed kept our revision in `alembic_version`: move it."""
    try:
        with engine.begin() as connection:
            tables = set(inspect(connection).get_table_names())
            if VERSION_TABLE in tables or _LEGACY_VERSION_TABLE not in tables:
                return
            rows = [r[0] for r in connection.execute(text(f"SELECT version_num FROM {_LEGACY_VERSION_TABLE}"))]
            ours = [r for r in rows if r in _known_revisions()]
            if not ours:
                return  # someone else's (MLflow's) revision table: leave it alone
            connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            connection.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": ours[0]})
            if len(rows) == len(ours):
                connection.execute(text(f"DROP TABLE {_LEGACY_VERSION_TABLE}"))
            else:
                connection.execute(text(f"DELETE FROM {_LEGACY_VERSION_TABLE} WHERE version_num = :v"), {"v": ours[0]})
    except DBAPIError as exc:
        raise translate_error(exc) from exc


def _known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def _run(action, url: str | URL, revision: str) -> None:
    try:
        action(alembic_config(url), revision)
    except DBAPIError as exc:
        raise translate_error(exc) from exc
    except CommandError as exc:
        raise ValidationError(f"cannot migrate to {revision!r}: {exc}", field="revision") from exc

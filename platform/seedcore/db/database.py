"""The SQL engine, the session context manager, and Alembic migrations driven from Python."""

from __future__ import annotations

import os
import re
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

from seedcore.errors import ConflictError, DatabaseUnavailableError, SchemaOutdatedError, SeedcoreError, ValidationError

# The top-level migrations/ directory, shipped inside the package as seedcore._migrations (a symlink in the
# source tree, real files in an installed wheel), so a non-editable install can migrate too.
MIGRATIONS_DIR = Path(str(files("seedcore._migrations")))
UPGRADE_HINT = "run `seedcore db upgrade`"
# Our own revision table: MLflow keeps its revision in `alembic_version`, and the two may share a database.
VERSION_TABLE = "seedcore_alembic_version"
_LEGACY_VERSION_TABLE = "alembic_version"
_UNDEFINED_TABLE = "42P01"  # PostgreSQL SQLSTATE
_READ_ONLY_TRANSACTION = "25006"  # PostgreSQL SQLSTATE: a read-only database, session or standby
# Files SQLite writes beside the database: WAL and its shared-memory index, or the rollback journal.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
# Engines whose connections may not be closed (see Database.dispose), kept until the process ends.
_KEPT_OPEN: list[Engine] = []




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


def sqlite_write_problem(path: Path) -> str | None:
    """Why SQLite cannot write the database at `path` now, from access(2) alone (no connection): the file or
    one of its SQLITE_SIDECARS cannot be written (a read-only mount, `chattr +i`, its permissions), or the
    directory cannot while SQLite still has to create its WAL files or journal there. None when it can."""
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_SIDECARS)):
        if _refuses_writes(candidate):
            return f"{candidate.name} cannot be written (a read-only mount, `chattr +i` or its permissions)"
    wal_ready = all(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))
    if not wal_ready and not os.access(path.parent, os.W_OK | os.X_OK):
        return "its directory cannot be written, and SQLite keeps its journal there"
    return None


def _refuses_writes(candidate: Path) -> bool:
    """access(2) refuses a write to `candidate`, the same file before and after: a rollback journal that
    another connection creates or deletes meanwhile (access fails as it is missing) is no refusal."""
    try:
        before = os.stat(candidate)
        if os.access(candidate, os.W_OK):
            return False
        after = os.stat(candidate)
    except FileNotFoundError:
        return False
    return (before.st_dev, before.st_ino, before.st_ctime_ns) == (after.st_dev, after.st_ino, after.st_ctime_ns)


def probe_write(connection, table: str) -> None:
    """Change a row of `table` (a revision table of ours or MLflow's: constant names) to itself and roll back:
    the driver's error when the database cannot take a write now (read-only, a standby, locked past the
    caller's patience)."""
    with connection.begin() as transaction:
        connection.execute(text(f"UPDATE {table} SET version_num = version_num"))
        transaction.rollback()


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
        return conflict(exc)
    if getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE or "no such table" in detail:
        return SchemaOutdatedError(f"database tables are missing ({detail}): {UPGRADE_HINT}")
    if getattr(exc.orig, "sqlstate", None) == _READ_ONLY_TRANSACTION or "readonly database" in detail:
        return DatabaseUnavailableError(f"our database is read-only ({detail})")
    if isinstance(exc, OperationalError):
        return SeedcoreError(f"database unavailable: {detail}")
    return SeedcoreError(f"database error: {detail}")


# What the drivers say about a broken constraint: SQLite's message, PostgreSQL's SQLSTATE and diagnostics.
_SQLITE_CONSTRAINT = re.compile(r"(UNIQUE|NOT NULL|CHECK|FOREIGN KEY) constraint failed(?:: (.*))?$")
_PG_KINDS = {"23505": "UNIQUE", "23502": "NOT NULL", "23514": "CHECK", "23503": "FOREIGN KEY"}
_PG_KEY = re.compile(r"Key \(([^)]*)\)=")
_NAME = re.compile(r"^\w{1,63}$")


def conflict(exc: IntegrityError) -> ConflictError:
    """A 409 saying which field is taken (or which rule the row breaks) in our words: never the driver's text,
    which quotes SQL and can quote the caller's values."""
    kind, table, columns, rule = _constraint(exc.orig)
    row = f"{table.replace('_', ' ').removesuffix('s')} row" if table else "row"
    names = ", ".join(columns)
    if kind == "UNIQUE" and columns:
        row = row.removesuffix(" row")
        article = "an" if row[:1] in "aeiou" else "a"
        return ConflictError(f"{article} {row} with this {names} already exists: choose another {names}",
                             field=columns[0])
    if kind == "NOT NULL" and columns:
        return ConflictError(f"the {row} needs a {names}", field=columns[0])
    if kind == "CHECK":
        return ConflictError(f"the {row} breaks the rule {rule}" if rule else f"the {row} breaks a rule of its table")
    if kind == "FOREIGN KEY":
        return ConflictError(f"the {row} refers to a row that does not exist")
    return ConflictError(f"the {row} conflicts with one already stored")


def _constraint(orig) -> tuple[str | None, str | None, list[str], str | None]:
    """(kind, table, columns, constraint name) of a driver's integrity error; only names, never values."""
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg
        detail = _PG_KEY.match(diag.message_detail or "")
        columns = [c.strip() for c in detail.group(1).split(",")] if detail else \
            [diag.column_name] if diag.column_name else []
        return (_PG_KINDS.get(getattr(orig, "sqlstate", None) or ""), diag.table_name,
                [c for c in columns if _NAME.match(c)], diag.constraint_name)
    found = _SQLITE_CONSTRAINT.match(str(orig).strip())
    if found is None:
        return None, None, [], None
    kind, names = found.group(1), [n.strip() for n in (found.group(2) or "").split(",") if n.strip()]
    if kind == "CHECK":  # a named constraint, or the expression itself (not shown)
        return kind, None, [], names[0] if names and _NAME.match(names[0]) else None
    pairs = [n.split(".", 1) for n in names if n.count(".") == 1 and all(map(_NAME.match, n.split(".")))]
    return kind, pairs[0][0] if pairs else None, [column for _, column in pairs], None


class Database:
    """One engine plus sessions for our tables (flashbulb incidents, tuning jobs).

    A SQLite file is looked at before every use, from stat(2) and access(2) alone (see file_problem): a file
    deleted under us would answer reads from the unlinked file and take writes that vanish at restart, and
    a write to the WAL's shared-memory index (`-shm`, mapped by every connection) once that file is
    immutable kills the process with SIGBUS. So nothing touches a lost or read-only file; the caller gets a
    DatabaseUnavailableError (503) naming it. One narrow window stays: a file made read-only in the
    middle of a transaction.
    """

    def __init__(self, url: str | URL):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.file = _sqlite_file(self.url) if self.engine.dialect.name == "sqlite" else None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file this object opened
        if self.file is not None:
            self._identity = _identity(self.file)
            event.listen(self.engine, "connect", self._opened)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def file_problem(self) -> str | None:
        """Why our SQLite file cannot be used now: gone or replaced since this object opened it (its device
        and inode differ), gone while its WAL is left (SQLite would replay that into a new file), or
        read-only (sqlite_write_problem). None for PostgreSQL, and for a file not created yet (the first
        connection creates it)."""
        if self.file is None:
            return None
        identity = _identity(self.file)
        if identity is None:
            if self._identity is not None:
                return f"our database {self.file} is missing (deleted or moved while the server ran?)"
            wal = Path(f"{self.file}-wal")
            if wal.exists() and wal.stat().st_size:
                return (f"our database {self.file} is missing but its {wal.name} is there (deleted while a "
                        f"server ran?): restore the database, or remove {wal.name} and {self.file.name}-shm "
                        "to start with an empty one")
            return None
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity:
            return f"our database {self.file} was replaced by another file while the server ran (restart to use it)"
        problem = sqlite_write_problem(self.file)
        return f"our database {self.file} is read-only: {problem}" if problem else None

    def require_usable(self) -> None:
        """Raise DatabaseUnavailableError when file_problem finds one (before any connection is used)."""
        problem = self.file_problem()
        if problem:
            raise DatabaseUnavailableError(problem)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error, and raises our errors."""
        self.require_usable()
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

    def probe_write(self) -> None:
        """Raise our error unless the database takes a write now (probe_write on our revision table)."""
        self.require_usable()
        try:
            with self.engine.connect() as connection:
                probe_write(connection, VERSION_TABLE)
        except DBAPIError as exc:
            raise translate_error(exc) from exc

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at; None when it has never been migrated."""
        self.require_usable()
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
        """Close every pooled connection, unless the SQLite file has a problem: closing the last connection
        checkpoints, writing the read-only `-shm` (SIGBUS) or, for a replaced file, deleting the new one's
        WAL files by name. Those connections are kept open until the process ends."""
        if self.file is not None and self.file_problem():
            _KEPT_OPEN.append(self.engine)
            return
        self.engine.dispose()

    def _opened(self, _dbapi_connection, _record) -> None:
        if self._identity is None:  # the first connection created the file
            self._identity = _identity(self.file)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


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

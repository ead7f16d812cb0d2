"""Our database: one engine and its sessions (committed, rolled back, our errors raised), an SQLite file looked
at before every use, and the revision the database is at against the code's."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from seedcore.db.driver_errors import UPGRADE_HINT, translate_error
from seedcore.db.engine import make_engine, normalize_url, probe_write, sqlite_file, sqlite_write_problem
from seedcore.db.migrations import VERSION_TABLE, head_revision, known_revisions
from seedcore.errors import DatabaseUnavailableError, SchemaOutdatedError

# Engines whose connections may not be closed (see Database.dispose), kept until the process ends.
_KEPT_OPEN: list[Engine] = []


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
        self.file = sqlite_file(self.url) if self.engine.dialect.name == "sqlite" else None
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
        if current is not None and current not in known_revisions():
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


def current_revision(url: str | URL) -> str | None:
    """The revision the database at `url` is at; None when never migrated."""
    database = Database(url)
    try:
        return database.current_revision()
    finally:
        database.dispose()

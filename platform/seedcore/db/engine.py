"""Database URLs and engines: a URL parsed (plain `postgresql://` means psycopg 3), an engine made for SQLite
(file created, WAL) or PostgreSQL, and whether the database can take a write now (an SQLite file's access(2),
a write probed and rolled back)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from seedcore.errors import ValidationError

# Files SQLite writes beside the database: WAL and its shared-memory index, or the rollback journal.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; plain `postgresql://` means psycopg 3 (`postgresql+psycopg://`)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValidationError(f"invalid database URL: {exc}", field="database_url") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def may_exist(url: str | URL) -> bool:
    """False only when the database surely does not exist yet: an SQLite file not created; opening it
    (make_engine) would create it."""
    parsed = normalize_url(url)
    path = sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
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
    path = sqlite_file(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
    if path is not None:
        event.listen(engine, "connect", _enable_sqlite_wal)
    return engine

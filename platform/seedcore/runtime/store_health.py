"""Are the stores there, and can they take a write? Cheap, real, time-bounded checks of MLflow's
tracking/registry store and our database, for `/health` and before every write (`require_writable`).

A SQLite store deleted or replaced under a running process keeps answering through pooled connections from
the file it opened, and one made read-only fails writes (our WAL database: kills the process, see
seedcore.db.database.Database), so the file is looked at first: there at all, still the file first seen
(device and inode), SQLite, writable. Then a cheap read and a write probe (a revision row updated to
itself and rolled back: what a read-only PostgreSQL database refuses) run with a short timeout. Messages
carry the driver's first line only, never SQL text.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from seedcore.config import Settings
from seedcore.db.engine import normalize_url, probe_write, sqlite_write_problem
from seedcore.errors import DatabaseUnavailableError, RegistryUnavailableError, SeedcoreError

_SQLITE_HEADER = b"SQLite format 3\x00"
MLFLOW_VERSION_TABLE = "alembic_version"  # MLflow's Alembic revision table: the row its write probe touches
PROBE_TTL_S = 1.0  # require_writable probes each store at most this often; the file checks run every time
_IN_FLIGHT: dict[str, tuple[threading.Thread, list]] = {}  # key -> (the running check, its outcome)
_PROBED: dict[str, tuple[float, str | None]] = {}  # key -> (monotonic time, problem) of the last write probe
_LOCK = threading.Lock()
# MLflow SQLite files this process has used, with their (device, inode): one that disappears or is
# replaced was lost.
_SEEN: dict[Path, tuple[int, int]] = {}


def sqlite_file(uri: str) -> Path | None:
    """The file behind a `sqlite:///` URI, or None for any other store (or an in-memory one)."""
    if not uri.startswith("sqlite:"):
        return None
    try:
        database = make_url(uri).database or ""
    except ArgumentError:
        return None
    return None if database in ("", ":memory:") or database.startswith("file:") else Path(database)


def _mlflow_uris(settings: Settings) -> tuple[str, ...]:
    return tuple(dict.fromkeys((settings.tracking_uri, settings.registry_uri)))


def mlflow_file_problem(settings: Settings) -> str | None:
    """Why MLflow's SQLite store file cannot be used (lost, replaced, not SQLite, read-only), without opening
    a connection.

    A file this process never saw is not lost: MLflow creates it on first use (a fresh install).
    """
    for uri in _mlflow_uris(settings):
        path = sqlite_file(uri)
        if path is None:
            continue
        try:
            with path.open("rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
                stat = os.fstat(handle.fileno())
        except FileNotFoundError:
            if path in _SEEN:
                return f"MLflow store {path} is missing (deleted or moved while the server ran?)"
            continue
        except OSError as exc:
            return f"MLflow store {path} cannot be read: {exc.strerror or exc}"
        if header and header != _SQLITE_HEADER:
            return f"MLflow store {path} is not a SQLite database (corrupt)"
        identity = (stat.st_dev, stat.st_ino)
        if _SEEN.get(path, identity) != identity:
            return f"MLflow store {path} was replaced by another file while the server ran (restart to use it)"
        if header:
            _SEEN[path] = identity
        read_only = sqlite_write_problem(path)
        if read_only:
            return f"MLflow store {path} is read-only: {read_only}"
    return None


def require_mlflow_store(settings: Settings) -> None:
    """Raise RegistryUnavailableError (503) before a write when MLflow's store file is gone, corrupt or
    read-only."""
    problem = mlflow_file_problem(settings)
    if problem:
        raise RegistryUnavailableError(f"model registry unavailable: {problem}; nothing was changed")


def require_writable(settings: Settings, db=None, mlflow: bool = True) -> None:
    """Raise a 503 naming the store before a write when our database (`db`, if this process has one) or,
    with `mlflow`, MLflow's store cannot take it: the file checks every time, then a write probe at most
    every PROBE_TTL_S, within `store_check_timeout_s`."""
    timeout = settings.store_check_timeout_s
    if db is not None:
        problem = db.file_problem() or _probed(f"database:{db.url}", db.probe_write, timeout, "our database")
        if problem:
            raise DatabaseUnavailableError(f"{problem}; nothing was changed")
    if mlflow:
        problem = mlflow_file_problem(settings) or _probed(
            f"mlflow:{_mlflow_uris(settings)}", lambda: probe_mlflow_write(settings), timeout, "MLflow store")
        if problem:
            raise RegistryUnavailableError(f"model registry unavailable: {problem}; nothing was changed")


def check_mlflow(settings: Settings, timeout: float) -> str | None:
    """None when MLflow's tracking and registry stores answer a cheap call and take a write (probed, rolled
    back) within `timeout` s, else why not."""
    problem = mlflow_file_problem(settings)
    if problem:
        return problem

    def ask():
        _ask_mlflow(settings)
        probe_mlflow_write(settings)
    return call_with_timeout(ask, timeout, "MLflow store", key=f"mlflow:{_mlflow_uris(settings)}")


def check_database(db, timeout: float) -> str | None:
    """None when our SQL database answers `SELECT 1` and takes a write (probed, rolled back) within `timeout`
    s, else why not."""
    problem = db.file_problem()
    if problem:
        return problem

    def ask():
        with db.session() as session:
            session.execute(text("SELECT 1"))
        db.probe_write()
    return call_with_timeout(ask, timeout, "our database", key=f"database:{db.url}")


def probe_mlflow_write(settings: Settings) -> None:
    """Write MLflow's revision row to itself and roll back, on each SQL store of the tracking and registry
    URIs (a tracking server over HTTP is its own business; a SQLite file not created yet is skipped)."""
    for uri in _mlflow_uris(settings):
        if "://" not in uri or uri.startswith(("http://", "https://", "file:", "databricks")):
            continue
        path = sqlite_file(uri)
        if path is not None and not path.exists():
            continue
        try:
            with _mlflow_engine(uri).connect() as connection:
                probe_write(connection, MLFLOW_VERSION_TABLE)
        except DBAPIError as exc:
            raise RegistryUnavailableError(f"MLflow store cannot take a write: {first_line(str(exc.orig))}") from exc


@lru_cache(maxsize=8)
def _mlflow_engine(uri: str) -> Engine:
    """An engine for probing MLflow's SQL store: a fresh connection each time (NullPool), so it sees the file
    or the server as it is now; a SQLite file is opened `mode=rw`, never created."""
    path = sqlite_file(uri)
    if path is None:
        return create_engine(normalize_url(uri), poolclass=NullPool)
    target = f"{path.absolute().as_uri()}?mode=rw"
    return create_engine("sqlite://", poolclass=NullPool,
                         creator=lambda: sqlite3.connect(target, uri=True, timeout=5, check_same_thread=False))


def _probed(key: str, probe: Callable[[], None], timeout: float, what: str) -> str | None:
    """The problem the last write probe of `key` found if it ran within PROBE_TTL_S, else a new probe's."""
    now = time.monotonic()
    with _LOCK:
        last = _PROBED.get(key)
    if last is not None and now - last[0] < PROBE_TTL_S:
        return last[1]
    problem = call_with_timeout(probe, timeout, what, key=f"{key}:write")
    with _LOCK:
        _PROBED[key] = (now, problem)
    return problem


def call_with_timeout(call: Callable[[], None], timeout: float, what: str, key: str) -> str | None:
    """Run `call` in a daemon thread; its error (first line) or a timeout note, or None when it answered.

    At most one call per `key` is in flight: a caller arriving while one runs waits for that one's answer
    (within its own `timeout`) instead of starting another, so a hung store never piles up threads and a
    burst of writes shares one probe.
    """
    with _LOCK:
        previous = _IN_FLIGHT.get(key)
        if previous is None or not previous[0].is_alive():
            outcome: list[str | None] = []
            previous = (threading.Thread(target=_answer, args=(call, outcome), name=f"seedcore-check-{what}",
                                         daemon=True), outcome)
            _IN_FLIGHT[key] = previous
            previous[0].start()
    worker, outcome = previous
    worker.join(timeout)
    if not outcome:
        return f"{what} did not answer within {timeout:g} s"
    return outcome[0]


def _answer(call: Callable[[], None], outcome: list) -> None:
    try:
        call()
        outcome.append(None)
    except SeedcoreError as exc:
        outcome.append(first_line(exc.message))
    except Exception as exc:  # noqa: BLE001 - any failure of the store is what we report
        outcome.append(f"{type(exc).__name__}: {first_line(getattr(exc, 'message', None) or str(exc))}")


def _ask_mlflow(settings: Settings) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)


def first_line(message: str) -> str:
    """A driver's message without the SQL statement and parameters it appends."""
    line = (str(message).strip().splitlines() or [""])[0]
    return line.split("[SQL:", 1)[0].strip()[:500]

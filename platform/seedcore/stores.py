"""Are the stores there? Cheap, real, time-bounded checks of MLflow's tracking/registry store and our database.

A SQLite store deleted under a running process keeps answering reads from the unlinked file through pooled
connections while every write fails, so the file is looked at first; then one cheap call is made with a
short timeout. Messages carry the driver's first line only, never SQL text.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from seedcore.config import Settings
from seedcore.errors import RegistryUnavailableError, SeedcoreError

_SQLITE_HEADER = b"SQLite format 3\x00"
_IN_FLIGHT: dict[str, threading.Thread] = {}
_LOCK = threading.Lock()
_SEEN: set[Path] = set()  # MLflow SQLite files this process has used: one that disappears was lost


def sqlite_file(uri: str) -> Path | None:
    """The file behind a `sqlite:///` URI, or None for any other store (or an in-memory one)."""
    if not uri.startswith("sqlite:"):
        return None
    try:
        database = make_url(uri).database or ""
    except ArgumentError:
        return None
    return None if database in ("", ":memory:") or database.startswith("file:") else Path(database)


def mlflow_file_problem(settings: Settings) -> str | None:
    """Why MLflow's SQLite store file cannot be used (lost, not SQLite), without opening a connection.

    A file this process never saw is not lost: MLflow creates it on first use (a fresh install).
    """
    for uri in dict.fromkeys((settings.tracking_uri, settings.registry_uri)):
        path = sqlite_file(uri)
        if path is None:
            continue
        try:
            with path.open("rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except FileNotFoundError:
            if path in _SEEN:
                return f"MLflow store {path} is missing (deleted or moved while the server ran?)"
            continue
        except OSError as exc:
            return f"MLflow store {path} cannot be read: {exc.strerror or exc}"
        if header and header != _SQLITE_HEADER:
            return f"MLflow store {path} is not a SQLite database (corrupt)"
        if header:
            _SEEN.add(path)
    return None


def require_mlflow_store(settings: Settings) -> None:
    """Raise RegistryUnavailableError (503) before a write when MLflow's store file is gone or corrupt."""
    problem = mlflow_file_problem(settings)
    if problem:
        raise RegistryUnavailableError(f"model registry unavailable: {problem}; nothing was changed")


def check_mlflow(settings: Settings, timeout: float) -> str | None:
    """None when MLflow's tracking and registry stores answer a cheap call within `timeout` s, else why not."""
    problem = mlflow_file_problem(settings)
    if problem:
        return problem
    return call_with_timeout(lambda: _ask_mlflow(settings), timeout, "MLflow store",
                             key=f"mlflow:{settings.tracking_uri}|{settings.registry_uri}")


def check_database(db, timeout: float) -> str | None:
    """None when our SQL database answers `SELECT 1` within `timeout` s, else why not."""
    def ask():
        with db.session() as session:
            session.execute(text("SELECT 1"))
    return call_with_timeout(ask, timeout, "database", key=f"database:{db.url}")


def call_with_timeout(call: Callable[[], None], timeout: float, what: str, key: str) -> str | None:
    """Run `call` in a daemon thread; its error (first line) or a timeout note, or None when it answered.

    At most one call per `key` is in flight: while an earlier one hangs, the answer says so at once.
    """
    with _LOCK:
        previous = _IN_FLIGHT.get(key)
        if previous is not None and previous.is_alive():  # a hung store: never pile up waiting threads
            return f"{what} has not answered an earlier check yet"
    outcome: list[str | None] = []

    def run():
        try:
            call()
            outcome.append(None)
        except SeedcoreError as exc:
            outcome.append(first_line(exc.message))
        except Exception as exc:  # noqa: BLE001 - any failure of the store is what we report
            outcome.append(f"{type(exc).__name__}: {first_line(getattr(exc, 'message', None) or str(exc))}")

    worker = threading.Thread(target=run, name=f"seedcore-check-{what}", daemon=True)
    with _LOCK:
        _IN_FLIGHT[key] = worker
    worker.start()
    worker.join(timeout)
    if not outcome:
        return f"{what} did not answer within {timeout:g} s"
    return outcome[0]


def _ask_mlflow(settings: Settings) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)


def first_line(message: str) -> str:
    """A driver's message without the SQL statement and parameters it appends."""
    line = (str(message).strip().splitlines() or [""])[0]
    return line.split("[SQL:", 1)[0].strip()[:500]

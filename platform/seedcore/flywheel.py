"""The one promotion path: champion gate -> blessed files -> alias + stage -> incident -> tell serving.

Every entry point promotes through `Flywheel.promote`: the runner after a sweep, `/xgboost/train`,
`/xgboost/promote`, `seedcore promote` and the monitors. Promotions are serialised across threads (a
process lock) and across processes and hosts (a lease in our SQL database), so two API workers, or a CLI
and a server, never interleave their steps.

    flywheel = Flywheel(settings, db, on_promoted=lambda record: holder.poll_once())
    record = flywheel.promote(7, force=False, experiment_name="nightly", job_id=job_id, trigger="api")
    record["status"]  # "success" | "rejected" | "unchanged"

`promote` raises our errors (404 unknown version, 409 another promotion holds the lock too long, 503 the
registry is unavailable); `promote_or_report` turns every failure into `{"status": "error", ...}` for a
sweep, whose registered version must never be lost to a failed promotion.
"""

from __future__ import annotations

import logging
import threading
import weakref
from contextlib import contextmanager
from typing import Callable, Iterator

import xgboost as xgb
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from seedcore.config import Settings
from seedcore.data import Dataset
from seedcore.db.database import Database
from seedcore.db.locks import LeaseLock
from seedcore.errors import ConflictError, SeedcoreError
from seedcore.incidents import record_promotion
from seedcore.memory.store import IncidentStore
from seedcore.registry import Registry, unavailable
from seedcore.stores import first_line, require_mlflow_store

log = logging.getLogger(__name__)

PROMOTION_LOCK = "promotion"
PROMOTED, REJECTED, UNCHANGED, ERROR = "success", "rejected", "unchanged", "error"
_THREADS = threading.Lock()  # one promotion at a time in this process, whatever the Flywheel instance
_INSTALLED: "weakref.WeakValueDictionary[tuple, Flywheel]" = weakref.WeakValueDictionary()

Listener = Callable[[dict], None]


class Flywheel:
    """Promotions and what follows them, for one deployment (settings + our SQL database)."""

    def __init__(self, settings: Settings, db: Database, on_promoted: Listener | None = None):
        self.settings = settings
        self.db = db
        self.incidents = IncidentStore(db)
        self.lease = LeaseLock(db, PROMOTION_LOCK, lease_s=max(60.0, settings.promotion_lock_timeout_s))
        self._listeners: list[Listener] = [on_promoted] if on_promoted else []

    def install(self) -> "Flywheel":
        """Make this the flywheel `flywheel_for(settings)` finds in this process (the app's, with its listeners)."""
        _INSTALLED[_key(self.settings)] = self
        return self

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(record)` after each successful promotion (e.g. swap the served model now)."""
        self._listeners.append(listener)

    def promote(self, version: int | str, *, force: bool = False, dataset: Dataset | None = None,
                challenger: xgb.Booster | None = None, experiment_name: str | None = None,
                job_id: str | None = None, trigger: str | None = None) -> dict:
        """Promote `version` through the champion gate; returns the record with its `status` and `incident_id`."""
        require_mlflow_store(self.settings)
        with self._serialised():
            record = self._registry_promote(version, force, dataset, challenger)
            if record["status"] in (PROMOTED, REJECTED):
                record["incident_id"] = self._remember(record, experiment_name, job_id, trigger)
        event = "model promoted" if record["status"] == PROMOTED else f"model promotion {record['status']}"
        log.info("%s: %s version %s, previous %s (%s)", event, self.settings.model_name, record.get("version"),
                 record.get("previous_version"), record.get("reason"),
                 extra={"event": "promotion", "status": record["status"], "version": record.get("version"),
                        "job_id": job_id, "trigger": trigger})
        if record["status"] == PROMOTED:
            self._notify(record)
        return record

    def promote_or_report(self, version: int | str, **kwargs) -> dict:
        """`promote`, with any failure reported as `{"status": "error", "reason", "error", "version"}`."""
        try:
            return self.promote(version, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a sweep's result must survive any promotion failure
            reason = exc.message if isinstance(exc, SeedcoreError) else f"{type(exc).__name__}: {first_line(str(exc))}"
            log.error("model promotion failed: %s version %s: %s", self.settings.model_name, version, reason)
            return {"status": ERROR, "reason": reason, "error": reason, "version": _int_or_none(version)}

    # -- steps ---------------------------------------------------------------------------------
    @contextmanager
    def _serialised(self) -> Iterator[None]:
        """The process lock, then the SQL lease; 409 when either is not free within the timeout."""
        timeout = self.settings.promotion_lock_timeout_s
        busy = f"promotion in progress: another promotion did not finish within {timeout:g} s; try again"
        if not _THREADS.acquire(timeout=timeout):
            raise ConflictError(busy)
        try:
            with self.lease.hold(timeout, busy):
                yield
        finally:
            _THREADS.release()

    def _registry_promote(self, version, force, dataset, challenger) -> dict:
        try:
            return Registry(self.settings).promote(version, force=force, dataset=dataset, challenger=challenger)
        except (MlflowException, SQLAlchemyError) as exc:
            raise unavailable(exc) from exc

    def _remember(self, record: dict, experiment_name, job_id, trigger) -> int | None:
        """The promotion's incident; the promotion stands even if it cannot be written (logged)."""
        try:
            return record_promotion(self.incidents, record, experiment_name, job_id=job_id, trigger=trigger)["id"]
        except SeedcoreError as exc:
            log.error("promotion of version %s not recorded in flashbulb memory: %s", record.get("version"),
                      exc.message)
            return None

    def _notify(self, record: dict) -> None:
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:  # noqa: BLE001 - serving catches up by polling anyway
                log.exception("a promotion listener failed")


def flywheel_for(settings: Settings) -> Flywheel:
    """The flywheel installed in this process for these settings, or a new one over their database."""
    found = _INSTALLED.get(_key(settings))
    if found is not None:
        return found
    return Flywheel(settings, Database(settings.database_url))


def _key(settings: Settings) -> tuple:
    return (settings.database_url, settings.registry_uri, str(settings.data_dir), settings.model_name)


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

"""The one promotion path: champion gate -> blessed files -> alias + stage -> incident -> tell serving.

Every entry point promotes through `PromotionService.promote`: the runner after a sweep, `/xgboost/train`,
`/xgboost/promote`, `seedcore promote` and the monitors. Promotions are serialised across threads (a
process lock) and across processes and hosts (a lease in our SQL database), so two API workers, or a CLI
and a server, never interleave their steps.

Each promotion is journalled (seedcore.promotion.journal): its intent before the first step, each step
after it. One that a killed process left open is settled - rolled forward or back so that alias, stage and
blessed files agree - before the next promotion, and when the API starts (`recover`).

    service = PromotionService(settings, db, on_promoted=lambda record: holder.poll_once())
    record = service.promote(7, force=False, experiment_name="nightly", job_id=job_id, trigger="api")
    record["status"]  # "success" | "rejected" | "unchanged"

`promote` raises our errors (404 unknown version, 409 another promotion holds the lock too long or the
version's features differ from production's without `allow_schema_change`, 503 the registry is
unavailable); `promote_or_report` turns every failure into `{"status": "error", ...}` for a sweep, whose
registered version must never be lost to a failed promotion.
"""

from __future__ import annotations

import functools
import logging
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from seedcore._xgboost import xgb
from seedcore.config import Settings
from seedcore.datasets import Dataset
from seedcore.db.database import Database
from seedcore.db.locks import LeaseLock
from seedcore.errors import ConflictError, SeedcoreError
from seedcore.memory.incidents import record_promotion
from seedcore.memory.store import IncidentStore
from seedcore.promotion.journal import (JOURNAL_COMPLETED, JOURNAL_ROLLED_FORWARD, STEP_INCIDENT,
                                        PromotionJournal)
from seedcore.promotion.production import Production
from seedcore.promotion.registry import Registry, unavailable
from seedcore.runtime.store_health import first_line, require_mlflow_store
from seedcore.vocabulary import PromotionStatus

log = logging.getLogger(__name__)

PROMOTION_LOCK = "promotion"
PROMOTED, REJECTED, UNCHANGED, ERROR = (PromotionStatus.SUCCESS, PromotionStatus.REJECTED, PromotionStatus.UNCHANGED,
                                        PromotionStatus.ERROR)
_THREADS = threading.Lock()  # one promotion at a time in this process, whatever the service instance

Listener = Callable[[dict], None]
PayloadPart = Callable[[dict, "str | None"], dict]  # (record, job_id) -> more keys of the promotion's incident


class PromotionService:
    """Promotions and what follows them, for one deployment (settings + our SQL database). A process builds
    one (seedcore.services) and hands it to whatever promotes; `PromotionService.opened(settings)` is one
    with a database of its own, for a command or a library call, disposed by `close()`."""

    def __init__(self, settings: Settings, db: Database, on_promoted: Listener | None = None,
                 registry: Registry | None = None):
        self.settings = settings
        self.registry = registry or Registry(settings)
        self.owns_db = False  # True when `opened` made the database: close() disposes it
        self.db = db
        self.incidents = IncidentStore(db)
        self.journal = PromotionJournal(db)
        self.lease = LeaseLock(db, PROMOTION_LOCK, lease_s=max(60.0, settings.promotion_lock_timeout_s))
        self._listeners: list[Listener] = [on_promoted] if on_promoted else []
        self._payload_parts: list[PayloadPart] = []

    @classmethod
    def opened(cls, settings: Settings) -> "PromotionService":
        """A service over a database of its own (closed by `close()`)."""
        service = cls(settings, Database(settings.database_url))
        service.owns_db = True
        return service

    def close(self) -> None:
        """Dispose the database engine, when this service opened it."""
        if self.owns_db:
            self.db.dispose()

    def __enter__(self) -> "PromotionService":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(record)` after each successful promotion (e.g. swap the served model now); the record
        as returned, with the promotion's `job_id` and `trigger` (None for one settled after a crash)."""
        self._listeners.append(listener)

    def add_to_payload(self, part: PayloadPart) -> None:
        """Merge `part(record, job_id)` into each successful promotion's incident as it is recorded (under the
        promotion lock: it must read only what it holds in memory, e.g. the energy meter's running totals)."""
        self._payload_parts.append(part)

    def promote(self, version: int | str, *, force: bool = False, dataset: Dataset | None = None,
                challenger: xgb.Booster | None = None, experiment_name: str | None = None,
                job_id: str | None = None, trigger: str | None = None, allow_schema_change: bool = False) -> dict:
        """Promote `version` through the champion gate; returns the record with its `status` and `incident_id`.

        A promotion a dead process left unfinished is settled first. `allow_schema_change` lets a version
        trained on other features than production's replace it (recorded in the incident)."""
        require_mlflow_store(self.settings)
        context = {"experiment_name": experiment_name, "job_id": job_id, "trigger": trigger}
        with self._serialised() as owner:
            settled = self._settle_unfinished()
            journal = functools.partial(self.journal.begin, owner=owner, context=context)
            record = self._registry_promote(version, force, dataset, challenger, allow_schema_change, journal)
            if record["status"] in (PROMOTED, REJECTED):
                record["incident_id"] = self._remember(record, experiment_name, job_id, trigger)
            if record["status"] == PROMOTED:
                self._complete(record)
        for earlier in settled:
            self._notify(earlier)
        event = "model promoted" if record["status"] == PROMOTED else f"model promotion {record['status']}"
        log.info("%s: %s version %s, previous %s (%s)", event, self.settings.model_name, record.get("version"),
                 record.get("previous_version"), record.get("reason"),
                 extra={"event": "promotion", "status": record["status"], "version": record.get("version"),
                        "job_id": job_id, "trigger": trigger})
        if record["status"] == PROMOTED:
            self._notify({**record, "job_id": job_id, "trigger": trigger})  # the listeners learn what made it
        return record

    def promote_or_report(self, version: int | str, **kwargs) -> dict:
        """`promote`, with any failure reported as `{"status": "error", "reason", "error", "version"}`."""
        try:
            return self.promote(version, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a sweep's result must survive any promotion failure
            reason = exc.message if isinstance(exc, SeedcoreError) else f"{type(exc).__name__}: {first_line(str(exc))}"
            log.error("model promotion failed: %s version %s: %s", self.settings.model_name, version, reason)
            return {"status": ERROR, "reason": reason, "error": reason, "version": _int_or_none(version)}

    def recover(self, wait_s: float = 0.0) -> list[dict]:
        """Settle the promotions a dead process left unfinished (the API does this as it starts).

        Waits up to `wait_s` for the promotion lock; while a live process promotes, that one finishes (or
        settles) on its own and nothing is done here. Returns what was settled; raises our errors (503)."""
        if not self.journal.unfinished(self.settings.model_name, self.settings.blessed_dir):
            return []  # the usual case: no lock taken, the registry not even opened
        try:
            with self._serialised(wait_s):
                settled = self._settle_unfinished()
        except ConflictError:
            log.info("promotion journal: another process is promoting; it settles what is unfinished")
            return []
        for record in settled:
            self._notify(record)
        return settled

    # -- steps ---------------------------------------------------------------------------------
    @contextmanager
    def _serialised(self, timeout: float | None = None) -> Iterator[str]:
        """The process lock, then the SQL lease (yields its owner); 409 when either is not free in time."""
        timeout = self.settings.promotion_lock_timeout_s if timeout is None else timeout
        busy = f"promotion in progress: another promotion did not finish within {timeout:g} s; try again"
        if not _THREADS.acquire(timeout=timeout):
            raise ConflictError(busy)
        try:
            with self.lease.hold(timeout, busy) as owner:
                yield owner
        finally:
            _THREADS.release()

    def _settle_unfinished(self) -> list[dict]:
        """With the lock held: roll each open journal row forward or back (their owners are gone: the lock
        was free). Returns the promotion records of those rolled forward, for the listeners."""
        promoted = []
        for entry in self.journal.unfinished(self.settings.model_name, self.settings.blessed_dir):
            reached = entry.steps[-1] if entry.steps else "its intent"
            try:
                outcome = Production(self.registry).settle(entry)
            except (MlflowException, SQLAlchemyError) as exc:
                raise unavailable(exc) from exc
            record = {**entry.detail.get("record", {}), "status": PROMOTED, "promotion_id": entry.id,
                      "recovered": True}
            if outcome == JOURNAL_ROLLED_FORWARD and not entry.done(STEP_INCIDENT):
                context = entry.detail.get("context", {})
                incident = self.journal.incident_of(entry) or self._remember(
                    record, context.get("experiment_name"), context.get("job_id"), context.get("trigger"))
                if incident is not None:
                    entry.step(STEP_INCIDENT, incident_id=incident)
            entry.finish(outcome)
            log.warning("promotion of %s version %s (previous %s) was interrupted after %s; %s",
                        entry.model_name, entry.version, entry.previous_version, reached, outcome.replace("_", " "),
                        extra={"event": "promotion_settled", "version": entry.version, "outcome": outcome})
            if outcome == JOURNAL_ROLLED_FORWARD:
                promoted.append(record)
        return promoted

    def _registry_promote(self, version, force, dataset, challenger, allow_schema_change, journal) -> dict:
        try:
            return Production(self.registry).promote(version, force=force, dataset=dataset, challenger=challenger,
                                                   allow_schema_change=allow_schema_change, journal=journal)
        except (MlflowException, SQLAlchemyError) as exc:
            raise unavailable(exc) from exc

    def _complete(self, record: dict) -> None:
        """Close the promotion's journal row; if that fails, the next promotion finds it open and settles it."""
        try:
            entry = self.journal.get(record["promotion_id"])
            if entry is not None:
                entry.finish(JOURNAL_COMPLETED, step=STEP_INCIDENT, incident_id=record.get("incident_id"))
        except SeedcoreError as exc:
            log.error("promotion of version %s not closed in the journal: %s", record.get("version"), exc.message)

    def _remember(self, record: dict, experiment_name, job_id, trigger) -> int | None:
        """The promotion's incident; the promotion stands even if it cannot be written (logged)."""
        extra = {}
        for part in self._payload_parts if record.get("status") == PROMOTED else ():
            try:
                extra.update(part(record, job_id))
            except Exception:  # noqa: BLE001 - the promotion's incident stands without it
                log.exception("a part of the promotion's incident failed")
        try:
            return record_promotion(self.incidents, record, experiment_name, job_id=job_id, trigger=trigger,
                                    extra=extra)["id"]
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


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

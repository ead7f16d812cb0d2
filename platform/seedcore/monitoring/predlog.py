"""The prediction log: every answered row gets an id; sampled rows are written in the background.

`PredictionLogger.log` only stamps ids and appends to a bounded in-memory buffer, so predict never
waits for SQL. A writer thread inserts the buffer in batches and prunes the log to its row and age
caps. When the database fails, rows are dropped (counted) and `status()` says the log is degraded;
predict keeps answering either way.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence

from sqlalchemy import and_, delete, func, insert, or_, select

from seedcore.config import Settings
from seedcore.db.base import as_utc, utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import PredictionRecord
from seedcore.errors import SeedcoreError

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
GATHER_S = 0.05  # once a row is queued, the writer waits this long for more: one commit per batch, not per predict
PRUNE_EVERY_S = 60.0
OK, DEGRADED = "ok", "degraded"


def new_prediction_id(now: float | None = None) -> str:
    """32 hex characters: 12 of milliseconds since the epoch (so an id tells its age), 20 random."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{secrets.token_hex(10)}"


def id_prefix(when: datetime) -> str:
    """The id prefix of `when`: ids issued before it sort below it."""
    return f"{int(when.timestamp() * 1000):012x}"


def prediction_id_time(prediction_id: str) -> datetime | None:
    """When the id was issued, or None if it is not one of ours."""
    if len(prediction_id) != 32:
        return None
    try:
        return datetime.fromtimestamp(int(prediction_id[:12], 16) / 1000.0, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


class PredictionLogger:
    """Stamps prediction ids and writes sampled rows to `prediction_log` from a background thread."""

    def __init__(self, settings: Settings, db_factory: Callable[[], Database], clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self._db_factory = db_factory
        self._db: Database | None = None
        self.clock = clock
        self._buffer: deque = deque()
        self._pending = 0  # rows buffered or being written
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._stop = False
        self._last_prune = time.monotonic()  # the first prune waits one period: start-up stays quick
        self.written = self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None

    # -- the request path ------------------------------------------------------------------------
    def log(self, model_name: str, model_version: int, rows: Sequence[Sequence[float]],
            predictions: Sequence[float]) -> list[str]:
        """One id per row; the sampled rows are queued for writing (dropped, never waited for, when full)."""
        now = time.time()
        ids = [new_prediction_id(now) for _ in predictions]
        rate = self.settings.predlog_sample_rate
        picked = range(len(ids)) if rate >= 1.0 else [i for i in range(len(ids)) if random.random() < rate]
        if not picked:
            return ids
        created = datetime.fromtimestamp(now, tz=timezone.utc)
        records = [{"id": ids[i], "model_name": model_name, "model_version": model_version, "created_at": created,
                    "features": [None if v != v else v for v in rows[i]], "prediction": predictions[i]}
                   for i in picked]
        with self._cond:
            if self._pending + len(records) > self.settings.predlog_queue_rows:
                self.dropped += len(records)
                return ids
            first = not self._buffer
            self._buffer.append(records)
            self._pending += len(records)
            self._ensure_thread()
            if first or self._pending >= BATCH_ROWS:  # the writer sleeps through the rest of a batch
                self._cond.notify_all()  # flush() may wait on the same condition: the writer must wake
        return ids

    # -- the writer ------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        # Started lazily (and again in a forked worker, where threads do not survive fork).
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid, self._stop = os.getpid(), False
            self._thread = threading.Thread(target=self._run, name="seedcore-predlog", daemon=True)
            self._thread.start()

    def _take(self) -> list[dict] | None:
        with self._cond:
            while not self._buffer and not self._stop:
                self._cond.wait(timeout=PRUNE_EVERY_S)
                if not self._buffer:
                    break
            if self._buffer and not self._stop and self._pending < BATCH_ROWS:
                self._cond.wait(timeout=GATHER_S)  # gather the batch (a full one or stop() wakes it early)
            batch: list[dict] = []
            while self._buffer and len(batch) < BATCH_ROWS:
                batch.extend(self._buffer.popleft())
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch:
                self._write(batch)
            if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                self._safely(self.prune)
            with self._cond:
                if self._stop and not self._buffer:
                    self._cond.notify_all()
                    return

    def _write(self, batch: list[dict]) -> None:
        ok = self._safely(lambda: self._insert(batch))
        with self._cond:
            self._pending -= len(batch)
            if ok:
                self.written += len(batch)
            else:
                self.dropped += len(batch)
            self._cond.notify_all()

    def _insert(self, batch: list[dict]) -> None:
        with self.database().session() as session:  # a plain table insert: no ORM bookkeeping per row
            session.execute(insert(PredictionRecord.__table__), batch)

    def _safely(self, action) -> bool:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a log failure must never reach predict
            message = exc.message if isinstance(exc, SeedcoreError) else f"{type(exc).__name__}: {exc}"
            if message != self.last_error:
                log.error("prediction log write failed: %s", message)
            self.last_error, self.last_error_at = message, utcnow().isoformat()
            return False
        self.last_error = self.last_error_at = None
        return True

    def database(self) -> Database:
        if self._db is None:
            self._db = self._db_factory()
        return self._db

    # -- upkeep and reporting ----------------------------------------------------------------------
    def prune(self) -> int:
        """Apply the retention rules; returns the rows deleted.

        Labels are what the log is kept for, so the two kinds of rows are kept apart: unlabelled rows go
        when older than the age cap (feedback for them is `expired`) or, oldest first, beyond their row cap;
        labelled rows count only against their own cap (the ones labelled longest ago go first) and never
        age out. A row labelled while this runs is not deleted as unlabelled: each DELETE re-checks it.
        """
        self._last_prune = time.monotonic()
        cutoff = as_utc(self.clock()) - timedelta(hours=self.settings.predlog_max_age_h)
        unlabelled, labelled = PredictionRecord.labelled_at.is_(None), PredictionRecord.labelled_at.is_not(None)
        with self.database().session() as session:
            # ids start with their issue time in fixed-width hex: the id orders rows by age
            deleted = session.execute(delete(PredictionRecord).where(
                unlabelled, PredictionRecord.id < id_prefix(cutoff))).rowcount
            boundary = session.scalar(select(PredictionRecord.id).where(unlabelled).order_by(PredictionRecord.id.desc())
                                      .offset(self.settings.predlog_max_rows).limit(1))
            if boundary is not None:
                deleted += session.execute(delete(PredictionRecord).where(
                    unlabelled, PredictionRecord.id <= boundary)).rowcount
            oldest_kept = session.execute(
                select(PredictionRecord.labelled_at, PredictionRecord.id).where(labelled)
                .order_by(PredictionRecord.labelled_at.desc(), PredictionRecord.id.desc())
                .offset(self.settings.predlog_max_labelled_rows).limit(1)).first()
            if oldest_kept is not None:
                at, pid = oldest_kept
                deleted += session.execute(delete(PredictionRecord).where(labelled, or_(
                    PredictionRecord.labelled_at < at,
                    and_(PredictionRecord.labelled_at == at, PredictionRecord.id <= pid)))).rowcount
        return deleted

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def status(self) -> dict:
        """`ok`, or `degraded` with the last write error; counts of rows written, dropped and queued."""
        return {"status": DEGRADED if self.last_error else OK, "sample_rate": self.settings.predlog_sample_rate,
                "written": self.written, "dropped": self.dropped, "queued": self._pending,
                "last_error": self.last_error, "last_error_at": self.last_error_at}

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the writer thread and close the database."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout)
        if self._db is not None:
            self._db.dispose()

    def count(self) -> int:
        """Rows in the log (for tests and benchmarks)."""
        with self.database().session() as session:
            return session.scalar(select(func.count()).select_from(PredictionRecord))

"""Tuning jobs: a queue of sweeps in SQL (JobStore), claimed by runners, cancellable."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from sqlalchemy import func, select, text, update

from seedcore.errors import ConflictError, NotFoundError, QueueFullError, ValidationError
from seedcore.db.database import Database
from seedcore.process_identity import owner_alive
from seedcore.memory.store import DEFAULT_LIMIT, check_page
from seedcore.db.base import as_utc, utcnow
from seedcore.db.tables_jobs import (
    FINISHED_STATES,
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_STATES,
    JOB_SUCCEEDED,
    JOB_KINDS,
    KIND_TUNE,
    TRIGGER_API,
    TuningJob,
)

__all__ = [
    "FINISHED_STATES",
    "INTERRUPTED",
    "JOB_CANCELLED",
    "JOB_FAILED",
    "JOB_QUEUED",
    "JOB_RUNNING",
    "JOB_STATES",
    "JOB_SUCCEEDED",
    "JobStore",
    "local_process_alive",
]

INTERRUPTED = "interrupted"  # the error of a job whose runner died mid-sweep
_CLAIM_ATTEMPTS = 20
_QUEUE_LOCK_KEY = 0x5EED_C0DE  # PostgreSQL advisory lock serializing capped inserts into the queue


def local_process_alive(pid: int | None, host: str | None, start: str | None = None) -> bool:
    """Whether a job's owner may still run: on this host that pid must run, and when the row knows the owner's
    start (`owner_start`), started then - a recycled pid is not the owner. Other hosts are assumed alive."""
    return owner_alive(pid, host, start)


class JobStore:
    """Tuning jobs in SQL. Every state change is one conditional UPDATE, so racing processes agree."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.clock = clock

    def _now(self) -> datetime:
        return as_utc(self.clock())

    def create(self, request: dict, experiment_name: str | None = None, trials_total: int = 0,
               trigger: str = TRIGGER_API, kind: str = KIND_TUNE, owner: tuple | None = None,
               max_queued: int | None = None) -> dict:
        """Queue a new job for `request` (the tuning request as JSON), started by `trigger`.

        With `owner` (pid, host, start) the job is created running, already claimed by that process: no other
        runner ever sees it queued (the CLI runs its own sweep beside a server this way).
        With `max_queued`, a queued job beyond that many is refused (QueueFullError, nothing stored): the
        insert and the count share one transaction that holds the queue's write lock (SQLite's by the insert,
        an advisory lock on PostgreSQL), so racing submitters never overfill the queue.
        """
        if not isinstance(request, dict):
            raise ValidationError("request must be a JSON object", field="request")
        if isinstance(trials_total, bool) or not isinstance(trials_total, int) or trials_total < 0:
            raise ValidationError("trials_total must be a non-negative integer", field="trials_total")
        job = TuningJob(
            state=JOB_QUEUED,
            request=request,
            experiment_name=experiment_name,
            trials_total=trials_total,
            trials_done=0,
            cancel_requested=False,
            trigger=trigger,
            kind=_check_state(kind, JOB_KINDS),
            created_at=self._now(),
        )
        if owner is not None:
            job.state, job.started_at = JOB_RUNNING, job.created_at
            job.owner_pid, job.owner_host, job.owner_start = (*owner, None)[:3]
        capped = max_queued is not None and job.state == JOB_QUEUED
        with self.db.session() as session:
            if capped and self.db.dialect == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _QUEUE_LOCK_KEY})
            session.add(job)
            session.flush()
            if capped:
                queued = session.scalar(select(func.count()).select_from(TuningJob)
                                        .where(TuningJob.state == JOB_QUEUED))
                if queued > max_queued:  # raised inside the transaction: the insert is rolled back
                    raise QueueFullError(f"{max_queued} jobs are already queued (SEEDCORE_MAX_QUEUED_JOBS); try "
                                         "again once the queue drains (GET /xgboost/tune/jobs?state=queued)")
            return job.to_dict()

    def get(self, job_id: str) -> dict:
        """One job by id; NotFoundError when there is none."""
        with self.db.session() as session:
            return self._load(session, job_id).to_dict()

    def list(self, limit: int = DEFAULT_LIMIT, offset: int = 0, state: str | None = None) -> dict:
        """Jobs newest first: {"items", "total", "limit", "offset"}; optionally only one state."""
        check_page(limit, offset)
        conditions = [] if state is None else [TuningJob.state == _check_state(state, JOB_STATES)]
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(TuningJob).where(*conditions))
            rows = session.scalars(
                select(TuningJob)
                .where(*conditions)
                .order_by(TuningJob.created_at.desc(), TuningJob.id.desc())
                .limit(limit)
                .offset(offset)
            )
            items = [row.to_dict() for row in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    def claim_next_queued(self, pid: int, host: str, start: str | None = None) -> dict | None:
        """Move the oldest queued job to running, owned by (pid, host, start); None when the queue is empty."""
        for _ in range(_CLAIM_ATTEMPTS):
            with self.db.session() as session:
                oldest = select(TuningJob.id).where(TuningJob.state == JOB_QUEUED)
                job_id = session.scalar(oldest.order_by(TuningJob.created_at, TuningJob.id).limit(1))
                if job_id is None:
                    return None
                claimed = session.execute(
                    update(TuningJob)
                    .where(TuningJob.id == job_id, TuningJob.state == JOB_QUEUED)
                    .values(state=JOB_RUNNING, started_at=self._now(), owner_pid=pid, owner_host=host,
                            owner_start=start)
                )
            if claimed.rowcount == 1:  # another runner may have won this one: then try the next
                return self.get(job_id)
        raise ConflictError(f"could not claim a queued job after {_CLAIM_ATTEMPTS} attempts")

    def update_progress(
        self,
        job_id: str,
        trials_done: int,
        trials_total: int,
        best_auc: float | None,
        parent_run_id: str | None = None,
    ) -> None:
        """Record a running job's progress; best_auc and parent_run_id are kept when None."""
        values: dict = {"trials_done": trials_done, "trials_total": trials_total}
        if best_auc is not None:
            values["best_auc"] = float(best_auc)
        if parent_run_id is not None:
            values["mlflow_parent_run_id"] = parent_run_id
        self._transition(job_id, (JOB_RUNNING,), values, "update the progress of")

    def finish(self, job_id: str, state: str, result: dict | None = None, error: str | None = None) -> dict:
        """End a queued or running job as succeeded, failed or cancelled."""
        _check_state(state, FINISHED_STATES)
        values = {"state": state, "finished_at": self._now(), "result": result, "error": error}
        self._transition(job_id, (JOB_QUEUED, JOB_RUNNING), values, "finish")
        return self.get(job_id)

    def request_cancel(self, job_id: str) -> dict:
        """Cancel a job: a queued one at once, a running one when its runner next checks."""
        with self.db.session() as session:
            cancelled_now = session.execute(
                update(TuningJob)
                .where(TuningJob.id == job_id, TuningJob.state == JOB_QUEUED)
                .values(state=JOB_CANCELLED, cancel_requested=True, finished_at=self._now())
            )
        if cancelled_now.rowcount == 0:
            self._transition(job_id, (JOB_RUNNING,), {"cancel_requested": True}, "cancel")
        return self.get(job_id)

    def is_cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel this job."""
        with self.db.session() as session:
            return self._load(session, job_id).cancel_requested

    def find_interrupted(self, alive: Callable[[int | None, str | None], bool] | None = None) -> list[dict]:
        """Running jobs whose owner is gone: by default judged by its pid, host and start time; `alive(pid, host)`
        judges instead when given."""
        with self.db.session() as session:
            running = session.scalars(select(TuningJob).where(TuningJob.state == JOB_RUNNING))
            jobs = [job.to_dict() for job in running]
        if alive is None:
            return [job for job in jobs if not owner_alive(job["owner_pid"], job["owner_host"], job["owner_start"])]
        return [job for job in jobs if not alive(job["owner_pid"], job["owner_host"])]

    def mark_interrupted(self, job_id: str, error: str = INTERRUPTED) -> dict:
        """Fail a running job whose runner died: state failed, `error` ("interrupted", or why it cannot resume)."""
        values = {"state": JOB_FAILED, "error": error, "finished_at": self._now()}
        self._transition(job_id, (JOB_RUNNING,), values, "mark as interrupted")
        return self.get(job_id)

    def take_over(self, job_id: str, owner: tuple) -> dict:
        """A running job whose runner died, now owned by (pid, host, start) of the process resuming it."""
        pid, host, start = owner
        values = {"owner_pid": pid, "owner_host": host, "owner_start": start}
        self._transition(job_id, (JOB_RUNNING,), values, "take over")
        return self.get(job_id)

    def _transition(self, job_id: str, from_states: tuple[str, ...], values: dict, verb: str) -> None:
        """UPDATE the job only if it is in one of `from_states`; else NotFoundError or ConflictError."""
        with self.db.session() as session:
            changed = session.execute(
                update(TuningJob).where(TuningJob.id == job_id, TuningJob.state.in_(from_states)).values(**values)
            )
            if changed.rowcount == 1:
                return
            state = self._load(session, job_id).state
        raise ConflictError(f"cannot {verb} job {job_id}: it is {state}", field="job_id")

    @staticmethod
    def _load(session, job_id: str) -> TuningJob:
        job = session.get(TuningJob, job_id) if isinstance(job_id, str) else None
        if job is None:
            raise NotFoundError(f"no tuning job with id {job_id!r}", field="job_id")
        return job


def _check_state(state: str, allowed: tuple[str, ...]) -> str:
    if state not in allowed:
        raise ValidationError(f"state must be one of {', '.join(allowed)}, got {state!r}", field="state")
    return state

"""The job runner: claims queued jobs from SQL and runs them; it never dies, and it stops on time.

Every step of the loop (claim, build the request, run, record) is guarded: an error is logged, kept for
`status()` (and `/health`), and the step retried with backoff. Waiters follow the job's row in SQL with a
deadline, so a waiter never depends on this process's threads being alive. A job's follow-ups (pictures,
description, drift reference: seedcore.promotion.followups) start once its answer is recorded, each one's
state written into its row; those a dead process left pending are finished when a runner starts.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from seedcore.config import Settings
from seedcore.db.base import iso_utc, utcnow
from seedcore.db.database import Database
from seedcore.db.tables_jobs import TRIGGER_API
from seedcore.errors import (ConflictError, NotFoundError, SeedcoreError, SweepCancelledError, SweepFailedError,
                             TooManyWaitsError)
from seedcore.jobs.kinds import KINDS, JobContext, kind_of
from seedcore.promotion.service import PromotionService
from seedcore.runtime.store_health import require_mlflow_store
from seedcore.jobs.store import (FINISHED_STATES, JOB_CANCELLED, JOB_FAILED, JOB_RUNNING, JOB_SUCCEEDED,
                                 JobStore, local_process_alive)
from seedcore.memory.store import IncidentStore
from seedcore.process_identity import ProcessIdentity
from seedcore.promotion.followups import resume
from seedcore.promotion.followups import record_in_job

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after the 1st, 2nd, ... consecutive failure of a step
RECORD_ATTEMPTS = 6
WAIT_POLL_S = 0.5  # a waiter re-reads the job row at least this often
STOPPED = "stopped: the server shut down while the job ran; its runs are KILLED"
ORPHAN_CANCELLED = "cancelled: the process that ran it had died; its runs are KILLED"


class JobStillRunning(Exception):
    """`wait` reached its deadline; the job goes on, and `job` is its row at that moment."""

    def __init__(self, job: dict):
        super().__init__(f"job {job['id']} is still {job['state']}")
        self.job = job


def ended_error(job_id: str, state: str, error: str | None) -> SeedcoreError:
    """What a job that ended cancelled or failed raises to whoever waited for it."""
    if state == JOB_CANCELLED:
        return SweepCancelledError(error or "the job was cancelled; nothing was promoted", field="job_id")
    return SweepFailedError(f"job {job_id} failed: {error}", field="job_id")


def backoff(failures: int) -> float:
    """Seconds to pause after `failures` consecutive failures of one step."""
    return BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1]


class JobRunner:
    """Background threads that claim queued jobs and run them; `max_concurrent_sweeps` at once."""

    def __init__(self, settings: Settings, db: Database, promotion: PromotionService | None = None,
                 poll_s: float = 1.0):
        """`promotion`: the process's promotion service, handed to every job (one over `db` when not given)."""
        self.settings = settings
        self.promotion = promotion or PromotionService(settings, db)
        self.jobs = JobStore(db)
        self.incidents = IncidentStore(db)
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancel_events: dict[str, threading.Event] = {}
        self._errors: dict[str, SeedcoreError] = {}
        self._done: dict[str, threading.Event] = {}
        self._prepared: dict[str, Any] = {}  # what each job's check made, for its run if it runs here
        self._lock = threading.Lock()
        self._sync_slots = threading.BoundedSemaphore(settings.max_sync_waits)
        self._last_error: tuple[str, str] | None = None
        self._followups: list = []  # seedcore.promotion.followups.FollowUps started here
        self._resumer: threading.Thread | None = None
        me = ProcessIdentity.current()
        self.identity = (me.pid, me.host, me.start)  # what a job this runner claims records as its owner

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "JobRunner":
        """Close jobs a dead process left running, then start the worker threads (and, in one of its own, finish
        the follow-ups dead processes left pending)."""
        self._guarded("recover", self.recover_interrupted)
        self._resumer = threading.Thread(target=self._guarded, name="seedcore-followups-resume", daemon=True,
                                         args=("finish pending follow-ups", self.resume_followups))
        self._resumer.start()
        for i in range(self.settings.max_concurrent_sweeps):
            thread = threading.Thread(target=self._work, name=f"seedcore-runner-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Cancel running jobs and wait up to `timeout` s (default: the stop_timeout_s setting) for them to
        end cleanly; a job still running then is marked cancelled and its MLflow runs KILLED. Follow-ups get
        the same deadline; one still pending then stays so in its job's row, for the next start to finish."""
        deadline = time.monotonic() + (self.settings.stop_timeout_s if timeout is None else timeout)
        self._stop.set()
        with self._lock:
            for event in self._cancel_events.values():
                event.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._abandon_running()
        with self._lock:
            followups = list(self._followups)
        for running in followups:
            running.wait(max(0.0, deadline - time.monotonic()))
        if self._resumer is not None:
            self._resumer.join(max(0.0, deadline - time.monotonic()))

    def recover_interrupted(self) -> list[str]:
        """Jobs whose runner died (by pid, host and start time: a recycled pid is not the runner): a sweep is
        taken over and resumed here (`_take_over`); the others are marked failed ("interrupted") and their
        MLflow runs ended."""
        from seedcore.tuning.resume import close_job_runs

        recovered = []
        for job in self.jobs.find_interrupted():
            reason = KINDS[job["kind"]].why_not_resumed(self.settings, job)
            if reason is None:
                self._take_over(job)
            else:
                self.jobs.mark_interrupted(job["id"], reason)
                closed = close_job_runs(self.settings, job["id"])
                log.warning("job %s: %s; marked failed, %d MLflow runs closed", job["id"], reason, closed)
            recovered.append(job["id"])
        return recovered

    def _take_over(self, job: dict) -> None:
        """Go on with a job whose process died, here (its kind's `execute` resumes it, e.g. a sweep from its
        Tune storage, seedcore.tuning.resume)."""
        log.warning("job %s was interrupted; resuming it here", job["id"])
        job = self.jobs.take_over(job["id"], self.identity)
        # not one of the worker threads /health counts: it ends with its job (stop cancels it like any job)
        threading.Thread(target=self._run, args=(job,), name=f"seedcore-resumed-{job['id'][:8]}", daemon=True).start()

    def resume_followups(self) -> list[str]:
        """Finish the follow-ups that dead processes left pending in their jobs; the ids of those jobs."""

        return resume(self.settings, self.jobs.db)

    def status(self) -> dict:
        """{alive, threads, current_job, last_error, last_error_at} for /health."""
        with self._lock:
            running = sorted(self._cancel_events)
            last = self._last_error
        alive = sum(thread.is_alive() for thread in self._threads)
        return {"alive": bool(self._threads) and alive == len(self._threads) and not self._stop.is_set(),
                "threads": alive, "current_job": running[0] if running else None,
                "last_error": last[0] if last else None, "last_error_at": last[1] if last else None}

    # -- requests -----------------------------------------------------------------------------
    def submit(self, request, trigger: str = TRIGGER_API, claim: bool = False) -> dict:
        """Validate a request (400 before anything runs) and queue it as a job started by `trigger`.

        `claim=True` creates it already running and owned by this process (no runner elsewhere can take
        it); `run_claimed` then runs it here.
        """
        kind = kind_of(request)
        checked = kind.check(self.settings, request)
        require_mlflow_store(self.settings)  # 503 before any job exists when MLflow's store is gone or corrupt
        job = self.jobs.create(request.model_dump(), request.experiment_name, checked.trials_total,
                               trigger=trigger, kind=kind.name, owner=self.identity if claim else None,
                               max_queued=self.settings.max_queued_jobs)  # 429 beyond it
        with self._lock:
            self._done[job["id"]] = threading.Event()
            self._prepared[job["id"]] = checked.prepared
        self._wake.set()
        return job

    def run_claimed(self, job: dict) -> threading.Thread:
        """Run a job this process claimed (`submit(claim=True)`) in a thread of its own; `stop` waits for it."""
        thread = threading.Thread(target=self._run, args=(job,), name=f"seedcore-runner-{job['id'][:8]}",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    @contextmanager
    def sync_slot(self) -> Iterator[None]:
        """Hold one of the `max_sync_waits` slots for a synchronous wait, or raise TooManyWaitsError (429)."""
        if not self._sync_slots.acquire(blocking=False):
            raise TooManyWaitsError(
                f"{self.settings.max_sync_waits} synchronous requests are already waiting for jobs "
                f"(SEEDCORE_MAX_SYNC_WAITS); use POST /xgboost/tune/submit and poll GET /xgboost/tune/status/<job_id>",
                field=None)
        try:
            yield
        finally:
            self._sync_slots.release()

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """The job's row once it has finished; its error re-raised (a caller's mistake stays a 4xx).

        Follows the row in SQL; JobStillRunning after `timeout` seconds (the job goes on).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            hint = self._done.setdefault(job_id, threading.Event())
        try:
            while True:
                job = self._read(job_id)
                if job is not None and job["state"] in FINISHED_STATES:
                    return self._outcome(job)
                remaining = WAIT_POLL_S if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    raise JobStillRunning(job or self.jobs.get(job_id))
                hint.wait(min(WAIT_POLL_S, remaining))
        finally:
            with self._lock:
                self._done.pop(job_id, None)
                self._errors.pop(job_id, None)

    def cancel(self, job_id: str) -> dict:
        """Ask a queued or running job to stop; a running sweep's trials stop and its runs are KILLED."""
        job = self.jobs.request_cancel(job_id)
        with self._lock:
            event = self._cancel_events.get(job_id)
            hint = self._done.get(job_id)
        if event is not None:
            event.set()
        elif job["state"] == JOB_RUNNING and not local_process_alive(job["owner_pid"], job["owner_host"],
                                                                      job["owner_start"]):
            job = self._cancel_orphan(job_id)  # no runner is left to see the request
        if hint is not None and job["state"] == JOB_CANCELLED:
            hint.set()
        return job

    def _cancel_orphan(self, job_id: str) -> dict:
        """End a running job whose owner died on this host: cancelled now, its MLflow runs KILLED."""
        from seedcore.tuning.resume import close_job_runs

        try:
            job = self.jobs.finish(job_id, JOB_CANCELLED, error=ORPHAN_CANCELLED)
        except ConflictError:
            return self.jobs.get(job_id)  # it ended meanwhile
        closed = self._guarded("close the runs of job " + job_id, close_job_runs, self.settings, job_id)
        log.warning("job %s was cancelled after its runner died; %s MLflow runs closed", job_id, closed)
        return job

    def _read(self, job_id: str) -> dict | None:
        """The job's row; None when the database does not answer this time (the waiter tries again)."""
        try:
            return self.jobs.get(job_id)
        except NotFoundError:
            raise
        except SeedcoreError as exc:
            self._note_error("read job", exc)
            return None

    def _outcome(self, job: dict) -> dict:
        if job["state"] == JOB_SUCCEEDED:
            return job
        with self._lock:
            error = self._errors.pop(job["id"], None)
        raise error or ended_error(job["id"], job["state"], job["error"])

    # -- the loop -----------------------------------------------------------------------------
    def _work(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                job = self.jobs.claim_next_queued(*self.identity)
                failures = 0
            except Exception as exc:  # the database is away: keep the thread, try again later
                failures += 1
                self._note_error("claim a job", exc)
                self._stop.wait(backoff(failures))
                continue
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job: dict) -> None:
        job_id = job["id"]
        cancel = threading.Event()
        held: list = []  # the job's follow-ups: they start once its answer is recorded
        with self._lock:
            self._cancel_events[job_id] = cancel
            prepared = self._prepared.pop(job_id, None)
        try:
            context = JobContext(self.settings, job, cancel, self._progress_reporter(job_id, cancel),
                                 lambda: self._guarded("check for cancel", self.jobs.is_cancel_requested,
                                                       job_id) is True, held.append, self.promotion, prepared)
            result = KINDS[job["kind"]].execute(context)
            outcome: tuple[str, Any] = (JOB_SUCCEEDED, {**result, "job_id": job_id})
        except SweepCancelledError as exc:
            outcome = (JOB_CANCELLED, exc)
        except Exception as exc:  # a failed job is recorded, never lost, and the runner goes on
            error = exc if isinstance(exc, SeedcoreError) else SeedcoreError(f"{job['kind']} failed: {exc}")
            log.exception("job %s failed", job_id)
            outcome = (JOB_FAILED, error)
        finally:
            with self._lock:
                self._cancel_events.pop(job_id, None)
        self._record(job, *outcome)
        for followups in held:
            self._start_followups(job_id, followups)

    def _start_followups(self, job_id: str, followups) -> None:
        """The job's follow-ups in a thread of their own, each one's state written into its row as it ends."""

        with self._lock:
            self._followups = [f for f in self._followups if not f.ended] + [followups]
        followups.start(lambda states: self._retry(f"record the follow-ups of job {job_id}", record_in_job,
                                                   self.jobs.db, job_id, states))

    def _record(self, job: dict, state: str, outcome: Any) -> None:
        """Write the job's incident (retried), then its end (retried); then wake whoever waits for it.

        The incident first: whoever sees the job ended (a poll of its status) can read its incident at once.
        """
        job_id, error = job["id"], outcome if isinstance(outcome, SeedcoreError) else None
        with self._lock:
            if error is not None and job_id in self._done:
                self._errors[job_id] = error
        self._retry("record the incident of job " + job_id, KINDS[job["kind"]].remember, self.incidents, job,
                    state == JOB_SUCCEEDED, state == JOB_CANCELLED, outcome)
        self._retry("record the end of job " + job_id, self.jobs.finish, job_id, state,
                    result=None if error else outcome, error=error.message if error else None)
        with self._lock:
            hint = self._done.get(job_id)
        if hint is not None:
            hint.set()

    def _abandon_running(self) -> None:
        """After stop's deadline: jobs our threads still run are cancelled in SQL and their runs KILLED."""
        from seedcore.tuning.resume import close_job_runs

        with self._lock:
            running = list(self._cancel_events)
        for job_id in running:
            try:
                self.jobs.finish(job_id, JOB_CANCELLED, error=STOPPED)
            except ConflictError:
                pass  # it ended meanwhile
            self._guarded("close the runs of job " + job_id, close_job_runs, self.settings, job_id)
            log.warning("job %s did not stop in time; marked cancelled, its runs KILLED", job_id)

    def _progress_reporter(self, job_id: str, cancel: threading.Event) -> Callable[[dict], None]:
        def report(progress: dict[str, Any]) -> None:
            self._guarded("record progress", self.jobs.update_progress, job_id, progress["trials_done"],
                          progress["trials_total"], progress.get("best_auc"), progress.get("parent_run_id"))
            if self._guarded("check for cancel", self.jobs.is_cancel_requested, job_id) is True:
                cancel.set()
        return report

    # -- guarding -----------------------------------------------------------------------------
    def _retry(self, what: str, step: Callable, *args, **kwargs) -> None:
        """Run `step` until it succeeds, with backoff; a ConflictError (the row moved on) ends it."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                step(*args, **kwargs)
                return
            except ConflictError as exc:
                log.info("%s: %s", what, exc.message)
                return
            except Exception as exc:
                self._note_error(what, exc)
                if attempt == RECORD_ATTEMPTS or self._stop.wait(backoff(attempt)):
                    return

    def _guarded(self, what: str, step: Callable, *args) -> Any:
        """`step(*args)`, or None after noting its error: a helper step must never end the runner."""
        try:
            return step(*args)
        except Exception as exc:
            self._note_error(what, exc)
            return None

    def _note_error(self, what: str, exc: Exception) -> None:
        message = exc.message if isinstance(exc, SeedcoreError) else f"{type(exc).__name__}: {exc}"
        log.error("job runner could not %s: %s", what, message)
        with self._lock:
            self._last_error = (f"{what}: {message}"[:500], iso_utc(utcnow()))


__all__ = ["JobRunner", "JobStillRunning", "ended_error", "backoff"]

"""The job runner: claims queued jobs from SQL and runs them; it never dies, and it stops on time.

Every step of the loop (claim, build the request, run, record) is guarded: an error is logged, kept for
`status()` (and `/health`), and the step retried with backoff (seedcore.jobs.guard). Waiters follow the job's
row in SQL with a deadline (seedcore.jobs.waiting); jobs a dead or stopped process left are settled by
seedcore.jobs.recovery. A job's follow-ups (pictures,
description, drift reference: seedcore.promotion.followups) start once its answer is recorded, each one's
state written into its row; those a dead process left pending are finished when a runner starts.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from seedcore.config import Settings
from seedcore.db.database import Database
from seedcore.db.tables_jobs import TRIGGER_API
from seedcore.errors import SeedcoreError, SweepCancelledError, TooManyWaitsError
from seedcore.jobs.guard import StepGuard, backoff
from seedcore.jobs.kinds import KINDS, JobContext, JobWatcher, kind_of
from seedcore.jobs.recovery import abandon, cancel_orphan, recover_interrupted
from seedcore.jobs.store import JOB_CANCELLED, JOB_FAILED, JOB_RUNNING, JOB_SUCCEEDED, JobStore, local_process_alive
from seedcore.jobs.waiting import JobStillRunning, Waiters, ended_error
from seedcore.memory.store import IncidentStore
from seedcore.process_identity import ProcessIdentity
from seedcore.promotion.followups import record_in_job, resume
from seedcore.promotion.service import PromotionService
from seedcore.runtime.store_health import require_mlflow_store

log = logging.getLogger(__name__)


class JobRunner:
    """Background threads that claim queued jobs and run them; `max_concurrent_sweeps` at once."""

    def __init__(self, settings: Settings, db: Database, promotion: PromotionService | None = None,
                 poll_s: float = 1.0, watchers: Sequence[JobWatcher] = ()):
        """`promotion`: the process's promotion service, handed to every job (one over `db` when not given);
        `watchers`: told of every job this runner runs, as it starts and once its end is recorded."""
        self.settings = settings
        self.promotion = promotion or PromotionService(settings, db)
        self.watchers = list(watchers)
        self.jobs = JobStore(db)
        self.incidents = IncidentStore(db)
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancel_events: dict[str, threading.Event] = {}
        self._prepared: dict[str, Any] = {}  # what each job's check made, for its run if it runs here
        self._lock = threading.Lock()
        self._sync_slots = threading.BoundedSemaphore(settings.max_sync_waits)
        self.guard = StepGuard(self._stop)
        self.waiters = Waiters(self.jobs, self.guard)
        self._followups: list = []  # seedcore.promotion.followups.FollowUps started here
        self._resumer: threading.Thread | None = None
        me = ProcessIdentity.current()
        self.identity = (me.pid, me.host, me.start)  # what a job this runner claims records as its owner

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "JobRunner":
        """Close jobs a dead process left running, then start the worker threads (and, in one of its own, finish
        the follow-ups dead processes left pending)."""
        self.guard.guarded("recover", self.recover_interrupted)
        self._resumer = threading.Thread(target=self.guard.guarded, name="seedcore-followups-resume", daemon=True,
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
        with self._lock:
            running = list(self._cancel_events)
        abandon(self.settings, self.jobs, self.guard, running)
        with self._lock:
            followups = list(self._followups)
        for running in followups:
            running.wait(max(0.0, deadline - time.monotonic()))
        if self._resumer is not None:
            self._resumer.join(max(0.0, deadline - time.monotonic()))

    def recover_interrupted(self) -> list[str]:
        """Jobs whose runner died: a sweep is taken over and resumed here (`_take_over`), the others marked
        failed ("interrupted"): seedcore.jobs.recovery."""
        return recover_interrupted(self.settings, self.jobs, self._take_over)

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
        last = self.guard.last_error
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
        self.waiters.expect(job["id"])
        with self._lock:
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
        return self.waiters.wait(job_id, timeout)

    def cancel(self, job_id: str) -> dict:
        """Ask a queued or running job to stop; a running sweep's trials stop and its runs are KILLED."""
        job = self.jobs.request_cancel(job_id)
        with self._lock:
            event = self._cancel_events.get(job_id)
        if event is not None:
            event.set()
        elif job["state"] == JOB_RUNNING and not local_process_alive(job["owner_pid"], job["owner_host"],
                                                                      job["owner_start"]):
            job = cancel_orphan(self.settings, self.jobs, self.guard, job_id)  # no runner is left to see it
        if job["state"] == JOB_CANCELLED:
            self.waiters.ended(job_id)
        return job

    # -- the loop -----------------------------------------------------------------------------
    def _work(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                job = self.jobs.claim_next_queued(*self.identity)
                failures = 0
            except Exception as exc:  # the database is away: keep the thread, try again later
                failures += 1
                self.guard.note("claim a job", exc)
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
        context = JobContext(self.settings, job, cancel, self._progress_reporter(job_id, cancel),
                             lambda: self.guard.guarded("check for cancel", self.jobs.is_cancel_requested,
                                                        job_id) is True, held.append, self.promotion, prepared)
        ends = [self.guard.guarded(f"start watching job {job_id}", watcher, context) for watcher in self.watchers]
        try:
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
        for end in ends:
            if end is not None:
                self.guard.guarded(f"end watching job {job_id}", end, *outcome)
        for followups in held:
            self._start_followups(job_id, followups)

    def _start_followups(self, job_id: str, followups) -> None:
        """The job's follow-ups in a thread of their own, each one's state written into its row as it ends."""

        with self._lock:
            self._followups = [f for f in self._followups if not f.ended] + [followups]
        followups.start(lambda states: self.guard.retry(f"record the follow-ups of job {job_id}", record_in_job,
                                                        self.jobs.db, job_id, states))

    def _record(self, job: dict, state: str, outcome: Any) -> None:
        """Write the job's incident (retried), then its end (retried); then wake whoever waits for it.

        The incident first: whoever sees the job ended (a poll of its status) can read its incident at once.
        """
        job_id, error = job["id"], outcome if isinstance(outcome, SeedcoreError) else None
        self.guard.retry("record the incident of job " + job_id, KINDS[job["kind"]].remember, self.incidents, job,
                         state == JOB_SUCCEEDED, state == JOB_CANCELLED, outcome)
        self.guard.retry("record the end of job " + job_id, self.jobs.finish, job_id, state,
                         result=None if error else outcome, error=error.message if error else None)
        self.waiters.ended(job_id, error)

    def _progress_reporter(self, job_id: str, cancel: threading.Event) -> Callable[[dict], None]:
        def report(progress: dict[str, Any]) -> None:
            self.guard.guarded("record progress", self.jobs.update_progress, job_id, progress["trials_done"],
                               progress["trials_total"], progress.get("best_auc"), progress.get("parent_run_id"))
            if self.guard.guarded("check for cancel", self.jobs.is_cancel_requested, job_id) is True:
                cancel.set()
        return report


__all__ = ["JobRunner", "JobStillRunning", "ended_error"]  # the waiters' two names, for the runner's callers

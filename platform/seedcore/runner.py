"""The job runner: takes queued sweeps from SQL one at a time (by default), runs, cancels, recovers."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from seedcore.config import Settings
from seedcore.data import resolve_data_path
from seedcore.errors import ConflictError, SeedcoreError, SweepCancelledError
from seedcore.incidents import record_sweep_completed, record_sweep_failed
from seedcore.jobs import JOB_CANCELLED, JOB_FAILED, JOB_SUCCEEDED, JobStore
from seedcore.db.database import Database
from seedcore.db.tables_jobs import KIND_TUNE, TRIGGER_API
from seedcore.memory.store import IncidentStore

log = logging.getLogger(__name__)


class JobRunner:
    """Background threads that claim queued sweeps and run them; `max_concurrent_sweeps` at once."""

    def __init__(self, settings: Settings, db: Database, poll_s: float = 1.0):
        self.settings = settings
        self.jobs = JobStore(db)
        self.incidents = IncidentStore(db)
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancel_events: dict[str, threading.Event] = {}
        self._errors: dict[str, SeedcoreError] = {}
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.identity = (os.getpid(), socket.gethostname())

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "JobRunner":
        """Close jobs a dead process left running, then start the worker threads."""
        self.recover_interrupted()
        for i in range(max(1, self.settings.max_concurrent_sweeps)):
            thread = threading.Thread(target=self._work, name=f"seedcore-runner-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel running sweeps and wait for the workers to end."""
        self._stop.set()
        with self._lock:
            for event in self._cancel_events.values():
                event.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def recover_interrupted(self) -> list[str]:
        """Jobs whose runner died: mark them failed ("interrupted") and end their MLflow runs."""
        from seedcore.tuning.sweep import close_job_runs

        recovered = []
        for job in self.jobs.find_interrupted():
            self.jobs.mark_interrupted(job["id"])
            closed = close_job_runs(self.settings, job["id"])
            log.warning("job %s was interrupted; marked failed, %d MLflow runs closed", job["id"], closed)
            recovered.append(job["id"])
        return recovered

    # -- requests -----------------------------------------------------------------------------
    def submit(self, request, trigger: str = TRIGGER_API, kind: str = KIND_TUNE) -> dict:
        """Validate a request (400 before anything runs) and queue it as a job started by `trigger`."""
        from seedcore.tuning.sweep import plan_sweep

        plan = plan_sweep(self.settings, request)
        if request.data_source:
            resolve_data_path(self.settings.data_dir, request.data_source)
        job = self.jobs.create(request.model_dump(), request.experiment_name, plan.tune.num_samples,
                               trigger=trigger, kind=kind)
        with self._lock:
            self._done[job["id"]] = threading.Event()
        self._wake.set()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """Block until the job ends; re-raise its error (a caller's mistake stays a 4xx)."""
        with self._lock:
            done = self._done.get(job_id)
        if done is None:
            raise ConflictError(f"job {job_id} was not submitted by this process", field="job_id")
        if not done.wait(timeout):
            raise ConflictError(f"job {job_id} is still running after {timeout} s", field="job_id")
        with self._lock:
            error = self._errors.pop(job_id, None)
            self._done.pop(job_id, None)
        if error is not None:
            raise error
        return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> dict:
        """Ask a queued or running job to stop; a running sweep's trials stop and its runs are KILLED."""
        job = self.jobs.request_cancel(job_id)
        with self._lock:
            event = self._cancel_events.get(job_id)
            # Cancelled while queued: no worker will ever run it, so release a caller blocked in wait().
            done = self._done.get(job_id) if job["state"] == JOB_CANCELLED else None
            if done is not None:
                self._errors[job_id] = SweepCancelledError("the sweep was cancelled before it started; nothing ran")
        if event is not None:
            event.set()
        if done is not None:
            done.set()
        return job

    # -- the work -----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            job = self.jobs.claim_next_queued(*self.identity)
            if job is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job: dict) -> None:
        from seedcore.tuning.sweep import SweepRequest, run_sweep

        job_id = job["id"]
        cancel = threading.Event()
        with self._lock:
            self._cancel_events[job_id] = cancel
        request = SweepRequest.model_validate(job["request"])
        error: SeedcoreError | None = None
        try:
            result = run_sweep(self.settings, request, progress=self._progress_reporter(job_id, cancel),
                               cancel_event=cancel, job_id=job_id)
            result["job_id"] = job_id
            self.jobs.finish(job_id, JOB_SUCCEEDED, result=result)
            record_sweep_completed(self.incidents, result, job_id)  # the flywheel recorded and announced the promotion
        except SweepCancelledError as exc:
            error = exc
            self.jobs.finish(job_id, JOB_CANCELLED, error=exc.message)
            record_sweep_failed(self.incidents, request.experiment_name, exc.message, job_id, cancelled=True)
        except Exception as exc:  # a failed sweep is recorded, never lost
            error = exc if isinstance(exc, SeedcoreError) else SeedcoreError(f"sweep failed: {exc}")
            log.exception("job %s failed", job_id)
            self.jobs.finish(job_id, JOB_FAILED, error=error.message)
            record_sweep_failed(self.incidents, request.experiment_name, error.message, job_id)
        finally:
            with self._lock:
                self._cancel_events.pop(job_id, None)
                if error is not None and job_id in self._done:
                    self._errors[job_id] = error
                done = self._done.get(job_id)
            if done is not None:
                done.set()

    def _progress_reporter(self, job_id: str, cancel: threading.Event):
        def report(progress: dict[str, Any]) -> None:
            self.jobs.update_progress(job_id, progress["trials_done"], progress["trials_total"],
                                      progress.get("best_auc"), progress.get("parent_run_id"))
            if self.jobs.is_cancel_requested(job_id):
                cancel.set()
        return report


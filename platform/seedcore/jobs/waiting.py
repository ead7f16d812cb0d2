"""Waiting for a job: a waiter follows the job's row in SQL with a deadline, so it never depends on the
runner's threads being alive; the runner only wakes it early (a hint per job) and hands it the job's own
error, so a caller's mistake stays a 4xx."""

from __future__ import annotations

import threading
import time

from seedcore.errors import NotFoundError, SeedcoreError, SweepCancelledError, SweepFailedError
from seedcore.jobs.guard import StepGuard
from seedcore.jobs.store import FINISHED_STATES, JOB_CANCELLED, JOB_SUCCEEDED, JobStore

WAIT_POLL_S = 0.5  # a waiter re-reads the job row at least this often


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


class Waiters:
    """The jobs someone in this process waits for: a wake-up hint each, and the error a failed one raised."""

    def __init__(self, jobs: JobStore, guard: StepGuard):
        self.jobs = jobs
        self.guard = guard
        self._lock = threading.Lock()
        self._hints: dict[str, threading.Event] = {}
        self._errors: dict[str, SeedcoreError] = {}

    def expect(self, job_id: str) -> None:
        """A job queued here: whoever waits for it from now on keeps its error."""
        with self._lock:
            self._hints.setdefault(job_id, threading.Event())

    def ended(self, job_id: str, error: SeedcoreError | None = None) -> None:
        """The job has ended (with `error` when it failed or was cancelled); wake its waiters."""
        with self._lock:
            hint = self._hints.get(job_id)
            if error is not None and hint is not None:
                self._errors[job_id] = error
        if hint is not None:
            hint.set()

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """The job's row once it has finished; its error re-raised. JobStillRunning after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            hint = self._hints.setdefault(job_id, threading.Event())
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
                self._hints.pop(job_id, None)
                self._errors.pop(job_id, None)

    def _read(self, job_id: str) -> dict | None:
        """The job's row; None when the database does not answer this time (the waiter tries again)."""
        try:
            return self.jobs.get(job_id)
        except NotFoundError:
            raise
        except SeedcoreError as exc:
            self.guard.note("read job", exc)
            return None

    def _outcome(self, job: dict) -> dict:
        if job["state"] == JOB_SUCCEEDED:
            return job
        with self._lock:
            error = self._errors.pop(job["id"], None)
        raise error or ended_error(job["id"], job["state"], job["error"])

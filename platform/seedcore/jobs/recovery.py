"""What a dead or stopped process leaves behind: jobs still marked running that no runner runs any more.

A job whose runner died (by pid, host and start time: a recycled pid is not the runner) is taken over when
its kind can resume it (a sweep, from its Tune storage) and marked failed ("interrupted") otherwise; a
cancel for such a job ends it at once; jobs a stopping runner could not end in time are marked cancelled.
Each closes the job's MLflow runs (KILLED), so no run is left RUNNING.
"""

from __future__ import annotations

import logging
from typing import Callable

from seedcore.config import Settings
from seedcore.errors import ConflictError
from seedcore.jobs.guard import StepGuard
from seedcore.jobs.kinds import KINDS
from seedcore.jobs.store import JOB_CANCELLED, JobStore

log = logging.getLogger("seedcore.jobs.runner")

STOPPED = "stopped: the server shut down while the job ran; its runs are KILLED"
ORPHAN_CANCELLED = "cancelled: the process that ran it had died; its runs are KILLED"


def recover_interrupted(settings: Settings, jobs: JobStore, take_over: Callable[[dict], None]) -> list[str]:
    """Jobs whose runner died: `take_over(job)` for those their kind can resume, the others marked failed
    and their MLflow runs ended. The ids of the jobs found."""
    from seedcore.tuning.resume import close_job_runs

    recovered = []
    for job in jobs.find_interrupted():
        reason = KINDS[job["kind"]].why_not_resumed(settings, job)
        if reason is None:
            take_over(job)
        else:
            jobs.mark_interrupted(job["id"], reason)
            closed = close_job_runs(settings, job["id"])
            log.warning("job %s: %s; marked failed, %d MLflow runs closed", job["id"], reason, closed)
        recovered.append(job["id"])
    return recovered


def cancel_orphan(settings: Settings, jobs: JobStore, guard: StepGuard, job_id: str) -> dict:
    """End a running job whose owner died on this host: cancelled now, its MLflow runs KILLED."""
    from seedcore.tuning.resume import close_job_runs

    try:
        job = jobs.finish(job_id, JOB_CANCELLED, error=ORPHAN_CANCELLED)
    except ConflictError:
        return jobs.get(job_id)  # it ended meanwhile
    closed = guard.guarded("close the runs of job " + job_id, close_job_runs, settings, job_id)
    log.warning("job %s was cancelled after its runner died; %s MLflow runs closed", job_id, closed)
    return job


def abandon(settings: Settings, jobs: JobStore, guard: StepGuard, job_ids: list[str]) -> None:
    """After a stop's deadline: jobs still running here are cancelled in SQL and their runs KILLED."""
    from seedcore.tuning.resume import close_job_runs

    for job_id in job_ids:
        try:
            jobs.finish(job_id, JOB_CANCELLED, error=STOPPED)
        except ConflictError:
            pass  # it ended meanwhile
        guard.guarded("close the runs of job " + job_id, close_job_runs, settings, job_id)
        log.warning("job %s did not stop in time; marked cancelled, its runs KILLED", job_id)

"""`/xgboost` tuning, training and promotion: sweeps run as jobs (synchronous or submitted)."""

from __future__ import annotations

import logging

from flask import request, url_for

from seedcore.api._http import BEARER, NOT_FOUND, WRITE_ERRORS, _error, api_blueprint, respond
from seedcore.api.schemas_xgboost import (JobList, JobListQuery, JobPath, JobResponse, PromoteRequest,
                                          PromoteResponse, TrainRequest, TrainResponse, TuneRequest, TuneResponse)
from seedcore.names import TRIGGER_HEADER
from seedcore.db.tables_jobs import TRIGGER_API, TRIGGER_MANUAL
from seedcore.errors import ValidationError
from seedcore.jobs.runner import JobRunner, JobStillRunning
from seedcore.services import current_services

log = logging.getLogger(__name__)
bp = api_blueprint("xgboost", __name__, url_prefix="/xgboost")


def _runner() -> JobRunner:
    return current_services().runner


def _settings():
    return current_services().settings


# A synchronous call holds a request thread: bounded in number (429) and in time (then 202 with the job id).
SYNC_ANSWERS = {202: JobResponse, 429: _error("every synchronous-wait slot is taken (SEEDCORE_MAX_SYNC_WAITS): "
                                              "use /xgboost/tune/submit; or the queue is full "
                                              "(SEEDCORE_MAX_QUEUED_JOBS); `Retry-After` says when to try again")}
# The queue is bounded too: beyond SEEDCORE_MAX_QUEUED_JOBS waiting jobs a new one is a 429.
QUEUE_FULL = {429: _error("the queue is full (SEEDCORE_MAX_QUEUED_JOBS); `Retry-After` says when to try again")}


@bp.post("/tune", summary="Run a sweep and wait for its result (202 with the job id if it outlasts "
                          "SEEDCORE_SYNC_WAIT_TIMEOUT_S)",
         responses={200: TuneResponse, **SYNC_ANSWERS, **WRITE_ERRORS}, security=BEARER)
def tune(body: TuneRequest):
    return _run_and_wait(body, TuneResponse)


@bp.post("/tune/submit", summary="Queue a sweep; answers 202 with its job id",
         responses={202: JobResponse, **QUEUE_FULL, **WRITE_ERRORS}, security=BEARER)
def submit(body: TuneRequest):
    return accepted(_runner().submit(body, trigger=_caller_trigger()))


# Who queued a sweep: `api` unless the caller says it is a person at the CLI (`seedcore tune` handing its
# sweep to this server); the header can only choose between these two, never a monitor's or schedule's.
CALLER_TRIGGERS = (TRIGGER_API, TRIGGER_MANUAL)


def _caller_trigger() -> str:
    value = request.headers.get(TRIGGER_HEADER, TRIGGER_API)
    if value not in CALLER_TRIGGERS:
        raise ValidationError(f"header {TRIGGER_HEADER} must be one of {', '.join(CALLER_TRIGGERS)}",
                              field=TRIGGER_HEADER)
    return value


@bp.get("/tune/status/<job_id>", summary="A job's state, live progress and result",
        responses={200: JobResponse, **NOT_FOUND})
def status(path: JobPath):
    return respond(JobResponse, _job_view(_runner().jobs.get(path.job_id)))


@bp.get("/tune/jobs", summary="Tuning jobs, newest first", responses={200: JobList})
def jobs(query: JobListQuery):
    page = _runner().jobs.list(limit=query.limit, offset=query.offset, state=query.state)
    return respond(JobList, {**page, "items": [_job_view(job) for job in page["items"]]})


@bp.post("/tune/<job_id>/cancel", summary="Cancel a queued or running sweep (runs KILLED, nothing promoted)",
         responses={202: JobResponse, **NOT_FOUND, **WRITE_ERRORS}, security=BEARER)
def cancel(path: JobPath):
    return respond(JobResponse, _job_view(_runner().cancel(path.job_id)), 202)


@bp.post("/train", summary="Train and register one model with fixed hyperparameters (a job of kind train, "
                           "waited for like /xgboost/tune)",
         responses={200: TrainResponse, **SYNC_ANSWERS, **WRITE_ERRORS}, security=BEARER)
def train(body: TrainRequest):
    return _run_and_wait(body, TrainResponse)


def _run_and_wait(body, model):
    """Queue the job and wait for it in one of the bounded slots: its result, a 429, or a 202 on time-out."""
    runner = _runner()
    try:
        with runner.sync_slot():
            job = runner.submit(body)
            finished = runner.wait(job["id"], timeout=_settings().sync_wait_timeout_s)
    except JobStillRunning as exc:
        return accepted(exc.job)
    return respond(model, finished["result"])


def accepted(job: dict):
    """202: the job goes on; follow it at `status_url` (also the Location header)."""
    url = url_for("xgboost.status", job_id=job["id"])
    body, status = respond(JobResponse, {**_job_view(job), "status": "accepted", "status_url": url}, 202)
    return body, status, {"Location": url}


@bp.post("/promote", summary="Promote a registered version through the champion gate",
         responses={200: PromoteResponse, **WRITE_ERRORS}, security=BEARER)
def promote(body: PromoteRequest):
    promotion = current_services().promotion.promote(body.version, force=body.force, trigger="api",
                                                         allow_schema_change=body.allow_schema_change)
    return respond(PromoteResponse, promotion)


def _job_view(job: dict) -> dict:
    return {
        "job_id": job["id"], "state": job["state"], "experiment_name": job.get("experiment_name"),
        "progress": {"trials_done": job.get("trials_done") or 0, "trials_total": job.get("trials_total") or 0,
                     "best_auc": job.get("best_auc")},
        "result": job.get("result"), "error": job.get("error"), "created_at": job.get("created_at"),
        "started_at": job.get("started_at"), "finished_at": job.get("finished_at"),
        "mlflow_parent_run_id": job.get("mlflow_parent_run_id"), "request": job.get("request"),
        "trigger": job.get("trigger"), "kind": job.get("kind"),
    }

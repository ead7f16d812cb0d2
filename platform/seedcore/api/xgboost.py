"""`/xgboost` tuning, training and promotion: sweeps run as jobs (synchronous or submitted)."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, url_for

from seedcore.api._http import documented, parse_body, parse_query, require_token
from seedcore.api.schemas_xgboost import (JobList, JobListQuery, JobResponse, PromoteRequest, PromoteResponse,
                                          TrainRequest, TrainResponse, TuneRequest, TuneResponse)
from seedcore.flywheel import Flywheel
from seedcore.runner import JobRunner

bp = Blueprint("xgboost", __name__, url_prefix="/xgboost")
RUNNER = "seedcore_runner"
FLYWHEEL = "seedcore_flywheel"


def init_app(app: Flask) -> None:
    """Start the job runner over the app's SQL database (opened by the mfb blueprint)."""
    settings, db = app.config["SEEDCORE_SETTINGS"], app.extensions["seedcore_db"]
    app.extensions[FLYWHEEL] = Flywheel(settings, db, on_promoted=lambda _record: _refresh_served_model(app)).install()
    runner = JobRunner(settings, db).start()
    app.extensions[RUNNER] = runner
    app.extensions.setdefault("seedcore_stop", []).insert(0, runner.stop)


def _refresh_served_model(app: Flask) -> None:
    """Swap the served model now; poll_once never raises (a registry hiccup is reported by /health)."""
    holder = app.extensions.get("seedcore_model")
    if holder is not None:
        holder.poll_once()


def _runner() -> JobRunner:
    return current_app.extensions[RUNNER]


def _settings():
    return current_app.config["SEEDCORE_SETTINGS"]


def _json(model, data: dict, status: int = 200):
    return jsonify(model.model_validate(data).model_dump(mode="json", exclude_none=False)), status


@bp.post("/tune")
@documented("/xgboost/tune", "POST", "Run a sweep and wait for its result", request_model=TuneRequest,
            response_model=TuneResponse)
@require_token
def tune():
    request = parse_body(TuneRequest)
    job = _runner().wait(_runner().submit(request)["id"])
    return _json(TuneResponse, job["result"])


@bp.post("/tune/submit")
@documented("/xgboost/tune/submit", "POST", "Queue a sweep; answers 202 with its job id", request_model=TuneRequest,
            response_model=JobResponse, status=202)
@require_token
def submit():
    job = _runner().submit(parse_body(TuneRequest))
    body = {**_job_view(job), "status": "accepted",
            "status_url": url_for("xgboost.status", job_id=job["id"])}
    return _json(JobResponse, body, 202)


@bp.get("/tune/status/<job_id>")
@documented("/xgboost/tune/status/<job_id>", "GET", "A job's state, live progress and result",
            response_model=JobResponse)
def status(job_id: str):
    return _json(JobResponse, _job_view(_runner().jobs.get(job_id)))


@bp.get("/tune/jobs")
@documented("/xgboost/tune/jobs", "GET", "Tuning jobs, newest first", query_model=JobListQuery,
            response_model=JobList)
def jobs():
    query = parse_query(JobListQuery)
    page = _runner().jobs.list(limit=query.limit, offset=query.offset, state=query.state)
    return _json(JobList, {**page, "items": [_job_view(job) for job in page["items"]]})


@bp.post("/tune/<job_id>/cancel")
@documented("/xgboost/tune/<job_id>/cancel", "POST", "Cancel a queued or running sweep (runs KILLED, "
            "nothing promoted)", response_model=JobResponse, status=202)
@require_token
def cancel(job_id: str):
    return _json(JobResponse, _job_view(_runner().cancel(job_id)), 202)


@bp.post("/train")
@documented("/xgboost/train", "POST", "Train and register one model with fixed hyperparameters",
            request_model=TrainRequest, response_model=TrainResponse)
@require_token
def train():
    from seedcore.tuning.single import train_model

    body = parse_body(TrainRequest)
    result = train_model(_settings(), body.params, experiment_name=body.experiment_name,
                         data_source=body.data_source, label_column=body.label_column,
                         feature_columns=body.feature_columns, promote=body.promote, force=body.force)
    return _json(TrainResponse, result)


@bp.post("/promote")
@documented("/xgboost/promote", "POST", "Promote a registered version through the champion gate",
            request_model=PromoteRequest, response_model=PromoteResponse)
@require_token
def promote():
    body = parse_body(PromoteRequest)
    promotion = current_app.extensions[FLYWHEEL].promote(body.version, force=body.force, trigger="api")
    return _json(PromoteResponse, promotion)


def _job_view(job: dict) -> dict:
    return {
        "job_id": job["id"], "state": job["state"], "experiment_name": job.get("experiment_name"),
        "progress": {"trials_done": job.get("trials_done") or 0, "trials_total": job.get("trials_total") or 0,
                     "best_auc": job.get("best_auc")},
        "result": job.get("result"), "error": job.get("error"), "created_at": job.get("created_at"),
        "started_at": job.get("started_at"), "finished_at": job.get("finished_at"),
        "mlflow_parent_run_id": job.get("mlflow_parent_run_id"), "request": job.get("request"),
    }

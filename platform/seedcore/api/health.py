"""`GET /health`: can this process serve, and how are its model, database and MLflow settings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import metadata
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from flask import jsonify
from pydantic import BaseModel, Field

from seedcore.api._http import api_blueprint
from seedcore.errors import SeedcoreError
from seedcore.runtime.discovery import call
from seedcore.runtime.store_health import check_database, check_mlflow
from seedcore.serving.model import UNAVAILABLE
from seedcore.tuning.cluster import dashboard_url
from seedcore.services import current_services

bp = api_blueprint("health", __name__)

DISTRIBUTION = "seedcore-flywheel"
REPLICA_TIMEOUT_S = 2.0  # a replica slower than this to answer its /health is listed as unreachable


class DatabaseHealth(BaseModel):
    """Our SQL database: `ok` when its file is the one opened and writable (SQLite), `SELECT 1` answers and a
    write probe (rolled back) is taken; `not_configured` in a serve-only process."""

    status: Literal["ok", "error", "not_configured"]
    dialect: str | None = None
    error: str | None = Field(None, description="why it cannot be used (missing, replaced, read-only, not "
                                                "answering), without SQL text; writes answer 503 meanwhile")


class MlflowHealth(BaseModel):
    """Where MLflow runs and models live (credentials masked), and whether that store answers and takes a
    write now."""

    status: Literal["ok", "error"] = "ok"
    tracking_uri: str
    registry_uri: str
    error: str | None = Field(None, description="why the store cannot be used (missing, replaced, corrupt, "
                                                "read-only, not answering), without SQL text; writes that "
                                                "need it answer 503 meanwhile")


class ReplicaHealth(BaseModel):
    """A serving replica this process knows of (SEEDCORE_REPLICAS), as its own `/health` answers now."""

    url: str
    status: Literal["ok", "degraded", "unreachable"]
    version: str | None = Field(None, description="the package version it runs")
    model_version: str | None = Field(None, description="the model version it serves (null: none)")
    error: str | None = Field(None, description="why it did not answer")


class Health(BaseModel):
    """Body of `GET /health`; 200 whenever the process can answer, `degraded` when a part is failing."""

    status: Literal["ok", "degraded"]
    model: Any = Field(description="the served model's status, or null when this process serves none")
    database: DatabaseHealth
    mlflow: MlflowHealth
    version: str
    instance_id: str | None = Field(None, description="this process's SEEDCORE_INSTANCE_ID (null: unset), so the "
                                                      "one who started it knows the answer is its own")
    ray_dashboard: str | None = Field(None, description="the Ray dashboard of the Ray session this process runs "
                                                        "sweeps on (null: none here); token auth: `ray get-auth-token`")
    runner: Any = Field(None, description="the job runner (null in a serve-only process): alive, threads, "
                                          "current_job, last_error, last_error_at; not alive is `degraded`")
    prediction_log: Any = Field(None, description="the prediction log writer: ok or degraded (predict answers "
                                                  "either way), rows written, dropped, queued")
    replicas: list[ReplicaHealth] | None = Field(None, description="the serving replicas SEEDCORE_REPLICAS names "
                                                                   "(null: none), each asked at once; one that "
                                                                   "does not answer leaves this answer `ok`")


@lru_cache(maxsize=1)
def package_version() -> str:
    """The installed version of this package ("unknown" when running from an uninstalled tree)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def mask_password(uri: str) -> str:
    """`uri` with any password in its authority replaced by `***`, safe to show."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def database_health() -> DatabaseHealth:
    """The file, `SELECT 1` and a write probe through the SQL layer the app opened, if it opened one, within
    the check timeout."""
    db = current_services().database
    if db is None:
        return DatabaseHealth(status="not_configured")
    error = check_database(db, current_services().settings.store_check_timeout_s)
    return DatabaseHealth(status="error" if error else "ok", dialect=db.dialect, error=error)


def mlflow_health(settings) -> MlflowHealth:
    """MLflow's tracking and registry stores: the SQLite file looked at, then one cheap call and a write
    probe, time-bounded."""
    error = check_mlflow(settings, settings.store_check_timeout_s)
    return MlflowHealth(status="error" if error else "ok", tracking_uri=mask_password(settings.tracking_uri),
                        registry_uri=mask_password(settings.registry_uri), error=error)


def model_health() -> Any:
    """The model holder's own status report (`no_model_loaded` is a state, not a failure)."""
    holder = current_services().model
    if holder is None:
        return None
    try:
        return holder.status()
    except SeedcoreError as exc:  # e.g. the registry is unreachable: report it, keep answering
        return {"status": "error", "error": exc.message}


def _model_failing(model: Any) -> bool:
    """True when the model holder cannot reach what it needs (not merely: no model promoted yet)."""
    return isinstance(model, dict) and (model.get("status") == "error" or model.get("state") == UNAVAILABLE)



def replicas_health(urls: list[str]) -> list[ReplicaHealth] | None:
    """Each replica's own `/health`, asked in parallel, within REPLICA_TIMEOUT_S."""
    if not urls:
        return None
    with ThreadPoolExecutor(max_workers=min(len(urls), 16)) as pool:
        return list(pool.map(_replica, urls))


def _replica(url: str) -> ReplicaHealth:
    status, body = call("GET", f"{url}/health", timeout=REPLICA_TIMEOUT_S)
    if status != 200 or not isinstance(body, dict) or "version" not in body:
        return ReplicaHealth(url=url, status="unreachable", error=str(body.get("error") or f"HTTP {status}")[:300])
    model = body.get("model") if isinstance(body.get("model"), dict) else {}
    served = model.get("version")
    return ReplicaHealth(url=url, status="ok" if body.get("status") == "ok" else "degraded",
                         version=str(body["version"]), model_version=None if served is None else str(served))


def runner_health() -> dict | None:
    """The job runner's own report, if this process runs jobs."""
    runner = current_services().runner
    return None if runner is None else runner.status()

@bp.get("/health", summary="Liveness and readiness: model, database, MLflow, version", responses={200: Health})
def health():
    """200 with the state of each part; `degraded` when the database or the model registry is failing."""
    settings = current_services().settings
    database, model, mlflow = database_health(), model_health(), mlflow_health(settings)
    predlog = current_services().prediction_log
    log_status = predlog.status() if predlog is not None else None
    log_failing = log_status is not None and log_status["status"] == "degraded"
    report = Health(
        status="degraded" if (database.status == "error" or mlflow.status == "error" or _model_failing(model)
                              or log_failing) else "ok",
        prediction_log=log_status,
        model=model,
        database=database,
        mlflow=mlflow,
        version=package_version(),
        instance_id=settings.instance_id,
        ray_dashboard=dashboard_url(),
    )
    report.runner = runner_health()
    report.replicas = replicas_health(settings.replica_urls)
    if report.runner is not None and not report.runner["alive"]:
        report.status = "degraded"
    return jsonify(report.model_dump(mode="json"))

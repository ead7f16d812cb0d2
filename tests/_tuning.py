"""Helpers for the tuning tests: what MLflow, the registry, our SQL and the blessed dir hold; waiting."""

from __future__ import annotations

import time
from typing import Callable

from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from seedcore import names
from seedcore.config import Settings
from seedcore.jobs.store import JobStore
from seedcore.db.database import Database

# The guide's conservative sweep, shrunk: a few trials of 20 rounds each.
FAST = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 2}}
# A sweep that runs for minutes unless stopped: 50 trials of 2000 slow rounds, no early stopping.
LONG_SPACE = {"eta": {"type": "loguniform", "lower": 0.001, "upper": 0.002}, "max_depth": 6, "num_boost_round": 2000}
LONG = {"config_type": "conservative", "custom_search_space": LONG_SPACE, "custom_tune_config": {"num_samples": 50}}
FINISHED = ("succeeded", "failed", "cancelled")


def mlflow_client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def all_runs(settings: Settings) -> list:
    """Every MLflow run in every experiment (deleted ones too)."""
    client = mlflow_client(settings)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return list(client.search_runs(ids, run_view_type=ViewType.ALL, max_results=10_000)) if ids else []


def sweep_runs(settings: Settings, parent_run_id: str) -> tuple:
    """(parent run, its child runs)."""
    client = mlflow_client(settings)
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent_run_id}'",
                                  max_results=10_000)
    return parent, list(children)


def never_registered(exc: MlflowException) -> bool:
    """The registry answered that the model does not exist; any other error is the registry failing."""
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def model_versions(settings: Settings) -> list:
    """Registered versions of the model (none when it was never registered); a failing registry raises."""
    try:
        return list(mlflow_client(settings).search_model_versions(f"name = '{settings.model_name}'"))
    except MlflowException as exc:
        if never_registered(exc):
            return []
        raise


def production_version(settings: Settings) -> int | None:
    """The version behind the production alias (None when nothing was promoted); a failing registry raises."""
    try:
        model = mlflow_client(settings).get_registered_model(settings.model_name)
    except MlflowException as exc:
        if never_registered(exc):
            return None
        raise
    version = model.aliases.get(names.PRODUCTION_ALIAS)
    return None if version is None else int(version)


def job_rows(settings: Settings) -> list[dict]:
    db = Database(settings.database_url)
    try:
        return JobStore(db).list(limit=500)["items"]
    finally:
        db.dispose()


def assert_nothing_happened(settings: Settings) -> None:
    """A refused request lost nothing and left nothing behind: no run, no job, no version, no blessed file."""
    assert all_runs(settings) == []
    assert job_rows(settings) == []
    assert model_versions(settings) == []
    assert not (settings.blessed_dir / names.BLESSED_MODEL_FILE).exists()


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def job_status(client, job_id: str) -> dict:
    response = client.get(f"/xgboost/tune/status/{job_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def wait_job(client, job_id: str, timeout: float = 300) -> dict:
    """The job's status once it has finished (succeeded, failed or cancelled)."""
    def finished():
        status = job_status(client, job_id)
        return status if status["state"] in FINISHED else None

    return wait_for(finished, timeout, f"job {job_id} to finish")


def wait_followups(read: Callable[[], dict], timeout: float = 120) -> dict:
    """The job `read()` returns (a row or its REST status) once its result lists follow-ups (pictures,
    description, drift reference) and none of them is pending any more."""
    def ended():
        job = read()
        states = (job.get("result") or {}).get("followups") or {}
        return job if states and "pending" not in states.values() else None

    return wait_for(ended, timeout, "the job's follow-ups to end")

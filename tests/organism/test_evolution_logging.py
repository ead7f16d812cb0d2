"""Evolution's log of a finished sweep: its axes reach the version's MLflow run from a thread of its own (the
runner's next job does not wait for MLflow), and `stop()` waits for it (real MLflow, our SQL database)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from _serving import add_version
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_jobs import JOB_SUCCEEDED, TuningJob
from seedcore.jobs.kinds import JobContext
from seedcore.organism.evolution import Evolution
from seedcore.promotion.registry import Registry, ensure_experiment

pytestmark = pytest.mark.integration
AUCS = (0.7, 0.9, 0.8)  # in start order: the best second


def _finished_sweep(settings, registry: Registry, db: Database, job_id: str) -> int:
    """A registered version and the job row and MLflow runs of the sweep that made it."""
    version, _ = add_version(settings, registry, promote=False)
    client = registry.client
    experiment = ensure_experiment(client, settings, "evolution-tests")
    parent = client.create_run(experiment).info.run_id
    start = int(time.time() * 1000)
    for i, auc in enumerate(AUCS):
        child = client.create_run(experiment, start_time=start + 1000 * i, tags={"mlflow.parentRunId": parent})
        client.log_metric(child.info.run_id, "final_auc", auc)
        client.set_terminated(child.info.run_id)
    with db.session() as session:
        session.add(TuningJob(id=job_id, state=JOB_SUCCEEDED, request={}, experiment_name="e", finished_at=utcnow(),
                              result={"model_version": version, "mlflow": {"parent_run_id": parent},
                                      "dataset": {"fingerprint": "f"}}))
    return version


def test_a_sweeps_axes_are_logged_off_the_runners_thread_and_stop_waits_for_them(migrated_settings, caplog):
    settings, job_id = migrated_settings, "c" * 32
    registry, db = Registry(settings), Database(migrated_settings.database_url)
    version = _finished_sweep(settings, registry, db, job_id)
    evolution = Evolution(settings, db, registry)
    context = JobContext(settings, {"id": job_id}, threading.Event(), lambda _p: None, lambda: False,
                         lambda _f: None, None)
    end = evolution.watch(context)
    with caplog.at_level(logging.INFO, logger="seedcore.organism.evolution"):
        end(JOB_SUCCEEDED, {"model_version": version})  # as the runner calls it, once the job's end is recorded
        evolution.stop(timeout=120)
    logged = [r for r in caplog.records if r.getMessage() == f"evolution of job {job_id} logged to MLflow"]
    assert len(logged) == 1 and logged[0].threadName == f"seedcore-evolution-{job_id[:8]}"
    assert logged[0].thread != threading.get_ident()
    metrics = registry.client.get_run(registry.get_version(version).run_id).data.metrics  # there once stop returned
    assert metrics["evolution_trials_to_99"] == 2
    assert metrics["evolution_curve_area"] == pytest.approx((0.7 / 0.9 + 1 + 1) / 3)
    db.dispose()

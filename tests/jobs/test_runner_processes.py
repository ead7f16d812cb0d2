"""JobRunner with real processes: a runner killed mid-sweep, recovery at the next start, concurrency, stop."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import datetime

import pytest
import numpy as np
import pandas as pd
import psutil

from _lifecycle import NO_RAY_DASHBOARD, settings_env
from _tuning import LONG, all_runs, job_rows, model_versions, sweep_runs, wait_for
from seedcore.jobs.store import INTERRUPTED, JobStore
from seedcore.db.database import Database
from seedcore.promotion.registry import Registry
from seedcore.jobs.runner import JobRunner
from seedcore.tuning import SweepRequest

pytestmark = pytest.mark.e2e

# A process that runs a sweep through its own JobRunner (and its own local Ray) until it is killed.
VICTIM = textwrap.dedent("""
    import json, sys, threading
    from seedcore.config import Settings
    from seedcore.db.database import Database
    from seedcore.jobs.runner import JobRunner
    from seedcore.tuning import SweepRequest
    from seedcore.tuning.cluster import ensure_ray

    settings = Settings.from_env()
    ensure_ray(settings)
    runner = JobRunner(settings, Database(settings.database_url), poll_s=0.2).start()
    runner.submit(SweepRequest(**json.loads(sys.argv[1])))
    threading.Event().wait()
""")


def _kill_leftovers(processes: list[psutil.Process], grace: float = 30) -> None:
    """Our victim's own children (its Ray) should end with it; kill, by pid, any that did not."""
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def test_a_killed_runner_whose_sweep_storage_is_gone_leaves_a_job_the_next_start_fails(migrated_settings, tmp_path):
    """The next start would resume the sweep (tests/tuning/test_resume.py); with its Tune storage gone it
    fails the job with that reason and closes the runs."""
    settings = migrated_settings
    request = {**LONG, "experiment_name": "killed_midway"}
    log_path = tmp_path / "victim.log"
    with open(log_path, "w") as log:
        victim = subprocess.Popen([sys.executable, "-c", VICTIM, json.dumps(request)],
                                  env=settings_env(settings, **NO_RAY_DASHBOARD), stdout=log, stderr=subprocess.STDOUT)
    descendants: list[psutil.Process] = []
    db = Database(settings.database_url)
    try:
        def running_with_a_trial():
            assert victim.poll() is None, log_path.read_text()[-3000:]
            jobs = job_rows(settings)
            if not jobs or jobs[0]["state"] != "running" or not jobs[0]["mlflow_parent_run_id"]:
                return None
            parent, children = sweep_runs(settings, jobs[0]["mlflow_parent_run_id"])
            trial_running = any(run.info.status == "RUNNING" for run in children)
            return jobs[0] if parent.info.status == "RUNNING" and trial_running else None

        job = wait_for(running_with_a_trial, 300, "the victim's sweep to run a trial", interval=0.5)
        assert job["owner_pid"] == victim.pid

        # while its owner lives, another runner leaves the job alone
        assert JobRunner(settings, db).recover_interrupted() == []
        assert JobStore(db).get(job["id"])["state"] == "running"

        descendants = psutil.Process(victim.pid).children(recursive=True)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(60) == -signal.SIGKILL

        # nothing closed them: the job row and the MLflow runs still say running
        assert JobStore(db).get(job["id"])["state"] == "running"
        parent, _ = sweep_runs(settings, job["mlflow_parent_run_id"])
        assert parent.info.status == "RUNNING"

        experiment = settings.ray_results_dir / f"job_{job['id']}"
        assert (experiment / "tuner.pkl").exists()
        shutil.rmtree(experiment)  # the storage is gone: nothing to resume from
        runner = JobRunner(settings, db).start()
        try:
            recovered = JobStore(db).get(job["id"])
            assert recovered["state"] == "failed"
            assert recovered["error"].startswith(f"{INTERRUPTED}; cannot resume: its Tune experiment is gone from")
            assert recovered["finished_at"] is not None
            runs = all_runs(settings)
            assert runs and [run.info.run_name for run in runs if run.info.status == "RUNNING"] == []
            parent, children = sweep_runs(settings, job["mlflow_parent_run_id"])
            assert parent.info.status == "KILLED"
            assert any(run.info.status == "KILLED" for run in children)
            assert model_versions(settings) == []
            # a second start finds nothing more to recover
            assert runner.recover_interrupted() == []
        finally:
            runner.stop()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(60)
        _kill_leftovers(descendants)
        db.dispose()


def test_two_sweeps_at_once_each_train_on_their_own_data(migrated_settings, ray_session):
    """max_concurrent_sweeps=2: two sweeps run side by side in one process, one on the built-in data
    (10 features), one on a CSV (3 features); each trains and registers a model of its own data."""
    settings = migrated_settings.replace(max_concurrent_sweeps=2)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(600, 3)), columns=["a", "b", "c"])
    frame["label"] = (frame["a"] - frame["b"] + rng.normal(scale=0.5, size=600) > 0).astype(int)
    frame.to_csv(settings.data_dir / "small.csv", index=False)
    fast = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 4}}
    db = Database(settings.database_url)
    runner = JobRunner(settings, db, poll_s=0.2).start()
    try:
        builtin = runner.submit(SweepRequest(**fast, experiment_name="builtin_data"))
        csv = runner.submit(SweepRequest(**fast, experiment_name="csv_data", data_source="small.csv",
                                         label_column="label"))
        jobs = [runner.wait(job["id"], timeout=600) for job in (builtin, csv)]
    finally:
        runner.stop()
        db.dispose()
    first, second = jobs
    assert first["state"] == second["state"] == "succeeded"

    def at(job: dict, key: str) -> datetime:
        return datetime.fromisoformat(job[key])

    assert at(second, "started_at") < at(first, "finished_at") and at(first, "started_at") < at(second, "finished_at")
    registry = Registry(settings)
    for job, features in ((first, [f"f{i}" for i in range(10)]), (second, ["a", "b", "c"])):
        result = job["result"]
        assert result["dataset"]["feature_names"] == features
        assert result["trials"]["errored"] == 0
        booster = registry.load_booster(registry.get_version(result["model_version"]))
        assert booster.num_features() == len(features)


def test_stop_cancels_the_running_sweep_and_leaves_the_queue_for_the_next_runner(migrated_settings, ray_session):
    settings = migrated_settings
    db = Database(settings.database_url)
    runner = JobRunner(settings, db, poll_s=0.2).start()
    try:
        running = runner.submit(SweepRequest(**{**LONG, "experiment_name": "running"}))
        queued = runner.submit(SweepRequest(**{**LONG, "experiment_name": "queued"}))
        wait_for(lambda: runner.jobs.get(running["id"])["mlflow_parent_run_id"], 120, "the first sweep to run")
        assert runner.jobs.get(queued["id"])["state"] == "queued"
    finally:
        runner.stop()
    try:
        def stopped_job():
            job = runner.jobs.get(running["id"])
            return job if job["state"] != "running" else None

        stopped = wait_for(stopped_job, 300, "the running sweep to stop")
        assert stopped["state"] == "cancelled"
        parent, children = sweep_runs(settings, stopped["mlflow_parent_run_id"])
        assert parent.info.status == "KILLED" and all(run.info.status != "RUNNING" for run in children)
        assert [run.info.run_name for run in all_runs(settings) if run.info.status == "RUNNING"] == []
        assert runner.jobs.get(queued["id"])["state"] == "queued"  # for the next start to run
        assert model_versions(settings) == []
    finally:
        db.dispose()


def test_the_promotion_incident_names_the_job_and_its_trigger(migrated_settings):
    """The runner's job id and trigger reach the flashbulb record of the promotion the job made."""
    from seedcore.memory.store import IncidentStore
    from seedcore.request_models import TrainRequest

    db = Database(migrated_settings.database_url)
    runner = JobRunner(migrated_settings, db, poll_s=0.1).start()
    try:
        job = runner.submit(TrainRequest(params={"eta": 0.3, "max_depth": 2, "num_boost_round": 5},
                                         experiment_name="triggered", promote=True),
                            trigger="schedule:nightly")
        done = runner.wait(job["id"], timeout=300)
        assert done["state"] == "succeeded", done
        assert done["result"]["promotion"]["status"] == "success"
        (promoted,) = IncidentStore(db).query(event_type="model_promoted")["items"]
        assert promoted["payload"]["job_id"] == job["id"], promoted
        assert promoted["payload"]["trigger"] == "schedule:nightly", promoted
    finally:
        runner.stop()
        db.dispose()

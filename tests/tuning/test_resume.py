"""A sweep outlives its driver: the process running a job's sweep is SIGKILLed mid-sweep, once a running trial
wrote mid-trial checkpoints, and the next runner start resumes it from Tune's storage in the same MLflow parent
and child runs (no run twice, every trial accounted for, each round of each run once) and records the
resumption. Real processes, real Ray, real MLflow and SQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from _lifecycle import NO_RAY_DASHBOARD, settings_env
from _tuning import job_rows, mlflow_client, sweep_runs, wait_for
from seedcore import names
from seedcore.db.database import Database
from seedcore.jobs.runner import JobRunner
from seedcore.jobs.store import JobStore
from seedcore.tuning.checkpoints import PROGRESS_FILE
from seedcore.tuning.mlflow_callback import TAG_RESUMED_AT
from seedcore.tuning.resume import TAG_RESUMED
from tests.jobs.test_runner_processes import VICTIM, _kill_leftovers

pytestmark = pytest.mark.e2e

TRIALS, ROUNDS = 4, 3000
# One config for every trial (ASHA may still stop one: a resumed booster's scores can differ in the last digits);
# a trial reports at the rungs (rounds 10, 20, 40, ...), each report with a checkpoint here, however fast the
# machine trains.
SPACE = {"eta": 0.015, "max_depth": 6, "num_boost_round": ROUNDS}
REQUEST = {"config_type": "conservative", "custom_search_space": SPACE, "experiment_name": "resumed",
           "custom_tune_config": {"num_samples": TRIALS, "max_concurrent_trials": 1, "seed": 7, "grace_period": 10,
                                  "reduction_factor": 2}}
CHECKPOINT_INTERVAL_S = 0.001


def _early_third_checkpoint(experiment, trial_id: str) -> bool:
    """Whether the trial wrote a third checkpoint in the first half of its rounds (far from its end): the
    moment when a Tune keeping only two would have deleted the first, which a state saved earlier points at."""
    checkpoints = sorted(experiment.glob(f"*{trial_id}*/checkpoint_*"), key=lambda c: int(c.name.rsplit("_", 1)[1]))
    if not checkpoints or int(checkpoints[-1].name.rsplit("_", 1)[1]) < 2:
        return False
    try:
        progress = json.loads((checkpoints[-1] / PROGRESS_FILE).read_text())
    except (OSError, ValueError):  # still being written
        return False
    return len(progress["history"]["validation"][names.AUC]) <= ROUNDS // 2


def _saved_state_knows_a_checkpoint(experiment, trial_id: str) -> bool:
    """Whether the experiment's state as saved in its storage (what a restore reads; Tune saves it every
    TUNE_GLOBAL_CHECKPOINT_S) holds a checkpoint of the trial, read as Tune's restore reads it (the trial's
    latest checkpoint result). Before it does, a resumed sweep rightly starts that trial over, and there is no
    checkpoint to go on from. A state can name a checkpoint in the trial's last result before Tune registered
    it: a restore of that state starts the trial over too (seen in a run of this test)."""
    from ray.tune.experiment import Trial

    for path in experiment.glob("experiment_state-*.json"):
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except (OSError, ValueError, KeyError):  # being written
            continue
        for state, metadata in trials:
            if trial_id not in state:
                continue
            trial = Trial.from_json_state(state, stub=True)
            trial.restore_run_metadata(metadata)
            if trial.latest_checkpoint_result is not None:
                return True
    return False


@pytest.mark.timeout(420)
def test_a_sweep_whose_process_dies_is_resumed_by_the_next_start(migrated_settings, ray_session, tmp_path):
    settings = migrated_settings.replace(checkpoint_interval_s=CHECKPOINT_INTERVAL_S)
    log_path = tmp_path / "victim.log"
    env = settings_env(settings, SEEDCORE_CHECKPOINT_INTERVAL_S=str(CHECKPOINT_INTERVAL_S), **NO_RAY_DASHBOARD)
    with open(log_path, "w") as log:
        victim = subprocess.Popen([sys.executable, "-c", VICTIM, json.dumps(REQUEST)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    db = Database(settings.database_url)
    try:
        def one_trial_done_and_one_checkpointed_thrice():
            assert victim.poll() is None, log_path.read_text()[-3000:]
            jobs = job_rows(settings)
            if not jobs or jobs[0]["trials_done"] < 1 or not jobs[0]["mlflow_parent_run_id"]:
                return None
            _, children = sweep_runs(settings, jobs[0]["mlflow_parent_run_id"])
            experiment = settings.ray_results_dir / f"job_{jobs[0]['id']}"
            running = [run.data.tags[names.TAG_TRIAL_ID] for run in children if run.info.status == "RUNNING"]
            return jobs[0] if any(_early_third_checkpoint(experiment, trial)
                                  and _saved_state_knows_a_checkpoint(experiment, trial) for trial in running) else None

        job = wait_for(one_trial_done_and_one_checkpointed_thrice, 240, "the victim's sweep to finish a trial and "
                       "checkpoint another", interval=0.2)
        _, before = sweep_runs(settings, job["mlflow_parent_run_id"])
        finished_before = {run.info.run_id for run in before if run.info.status == "FINISHED"}
        descendants = psutil.Process(victim.pid).children(recursive=True)
        os.killpg(victim.pid, signal.SIGKILL)  # the process and its Ray: the driver is gone
        victim.wait(60)
        _kill_leftovers(descendants)

        runner = JobRunner(settings, db, poll_s=0.2).start()
        try:
            done = wait_for(lambda: (j := JobStore(db).get(job["id"]))["state"] not in ("queued", "running") and j,
                            300, "the resumed sweep to end", interval=0.5)
        finally:
            runner.stop()
        assert done["state"] == "succeeded", done["error"]
        assert done["result"]["resumed"] == 1
        assert done["result"]["mlflow"]["parent_run_id"] == job["mlflow_parent_run_id"]  # the same parent run
        trials = done["result"]["trials"]
        assert trials["completed"] + trials["pruned"] == TRIALS and trials["errored"] == trials["killed"] == 0

        parent, children = sweep_runs(settings, job["mlflow_parent_run_id"])
        assert parent.info.status == "FINISHED" and parent.data.tags[TAG_RESUMED] == "1"
        trial_ids = [run.data.tags[names.TAG_TRIAL_ID] for run in children]
        assert len(children) == TRIALS and len(set(trial_ids)) == TRIALS, trial_ids  # every trial once
        assert {run.info.status for run in children} == {"FINISHED"}
        client = mlflow_client(settings)
        for run in children:  # the resumed trial's rounds before its checkpoint too: each round once
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, names.AUC))
            last = ROUNDS if run.data.tags["seedcore.outcome"] == "completed" else steps[-1]  # or ASHA stopped it
            assert steps == list(range(1, last + 1)), run.data.tags
        resumed_at = [int(run.data.tags[TAG_RESUMED_AT]) for run in children if TAG_RESUMED_AT in run.data.tags]
        assert len(resumed_at) == 1 and 0 < resumed_at[0] <= ROUNDS // 2  # the running trial: from its checkpoint
        assert finished_before <= {run.info.run_id for run in children}  # finished trials were not run again
        running = mlflow_client(settings).search_runs([parent.info.experiment_id],
                                                      filter_string="attributes.status = 'RUNNING'")
        assert running == []
    finally:
        if victim.poll() is None:
            victim.kill()
        db.dispose()

"""A trial whose worker dies mid-trial is retried (SEEDCORE_MAX_FAILURES) and goes on in the same MLflow run:
one run per trial, FINISHED, tagged with its retry count, every round's metrics once. Real Ray (the worker
process is SIGKILLed, as when its node dies), real MLflow, real XGBoost.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from seedcore import names
from seedcore.tuning import run_sweep
from seedcore.tuning.mlflow_callback import TAG_RETRIES

pytestmark = pytest.mark.integration

ROUNDS = 600
SPACE = {"eta": {"type": "loguniform", "lower": 0.01, "upper": 0.02}, "max_depth": 8, "num_boost_round": ROUNDS}
TRIAL = b"ray::ImplicitFunc.train"  # a Tune trial's worker while it trains (Ray sets the process title)


def _trial_workers() -> list[int]:
    """This test process's trial workers (its local Ray's raylet starts them): never another process's."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(TRIAL) and _ours(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _ours(pid: int) -> bool:
    """Whether `pid` descends from this process."""
    for _ in range(64):
        if pid == os.getpid():
            return True
        if pid <= 1:
            return False
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return False


def test_a_trial_whose_worker_dies_is_retried_in_the_same_run(migrated_settings, ray_session):
    settings = migrated_settings.replace(max_failures=2)
    outcome: dict = {}
    done: list[int] = [0]

    def sweep() -> None:
        try:
            outcome["result"] = run_sweep(settings, progress=lambda p: done.append(p["trials_done"]),
                                          custom_search_space=SPACE, config_type="conservative",
                                          custom_tune_config={"num_samples": 2, "max_concurrent_trials": 1,
                                                              "seed": 5, "grace_period": ROUNDS},
                                          experiment_name="retried")
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    deadline = time.monotonic() + 120
    while not (workers := _trial_workers()):
        assert thread.is_alive() and time.monotonic() < deadline, f"no trial started: {outcome}"
        time.sleep(0.05)
    time.sleep(0.5)  # mid-trial: some rounds reported
    assert done[-1] == 0 and _trial_workers() == workers  # the first trial still trains
    for pid in workers:
        os.kill(pid, signal.SIGKILL)

    thread.join(300)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result["trials"]["completed"] == 2 and result["trials"]["errored"] == 0, result["trials"]

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    parent = client.get_run(result["mlflow"]["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent.info.run_id}'")
    assert len(children) == 2  # no second run for the retried trial
    assert {run.info.status for run in children} == {"FINISHED"}
    assert sorted(run.data.tags[TAG_RETRIES] for run in children) == ["0", "1"]
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, names.AUC)]
        assert sorted(steps) == list(range(1, ROUNDS + 1)), run.data.tags  # each round once, none lost

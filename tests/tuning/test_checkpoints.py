"""A retried trial goes on from its last checkpoint: it trains only the remaining rounds, early stopping judges
every round, and its MLflow run has each round once. Real Ray (the trial's worker SIGKILLs itself right after
its first mid-trial checkpoint reached Tune), real MLflow (SQLite), real XGBoost.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
import xgboost as xgb
from mlflow import MlflowClient
from ray import tune

from seedcore import names
from seedcore.datasets import load_dataset
from seedcore.promotion.model_logging import booster_from
from seedcore.tuning import run_sweep, tuner
from seedcore.tuning.checkpoints import CHECKPOINT_FILE, checkpoint_bytes, load, save
from seedcore.tuning.mlflow_callback import TAG_RESUMED_AT, TAG_RETRIES
from seedcore.tuning.spaces import FIXED_PARAMS
from seedcore.tuning.trainable import TrialData, make_dmatrices, split_config, train_booster

pytestmark = pytest.mark.integration

ROUNDS = 2000  # a few seconds of training: reports every second (REPORT_INTERVAL_S), one rung at the end
SPACE = {"eta": {"type": "loguniform", "lower": 0.01, "upper": 0.02}, "max_depth": 8, "num_boost_round": ROUNDS}


def _dies_after_its_first_checkpoint(marker, reports):
    """train_xgb, in workers that note each report's rounds (the ones trained since the previous report) in
    `reports`; the first worker to send a mid-trial checkpoint then SIGKILLs itself, once (`marker` holds the
    checkpoint's round). A report returns once Tune took it (and its checkpoint): the retry finds it."""

    def dying_train_xgb(config, **kwargs):
        from seedcore.tuning import trainable

        reporter = trainable._ReportRounds
        if not getattr(reporter.flush, "noted", False):  # a reused worker keeps its class from the last trial
            flush = reporter.flush

            def noted(self, extra=None, booster=None):
                rounds = [int(step) for step, _, _ in self.pending]
                flush(self, extra, booster)
                mid_trial = booster is not None and extra is None
                with open(reports, "a") as out:
                    out.write(json.dumps({"pid": os.getpid(), "rounds": rounds, "checkpoint": mid_trial}) + "\n")
                if mid_trial:
                    try:
                        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    except FileExistsError:
                        return
                    os.write(fd, str(rounds[-1]).encode())
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)

            noted.noted = True
            reporter.flush = noted
        return trainable.train_xgb(config, **kwargs)

    return dying_train_xgb


def test_a_retried_trial_goes_on_from_its_last_checkpoint(migrated_settings, ray_session, tmp_path, monkeypatch):
    settings = migrated_settings.replace(max_failures=2, checkpoint_interval_s=0.2)
    marker, reports = tmp_path / "killed", tmp_path / "reports.jsonl"
    monkeypatch.setattr(tuner, "train_xgb", _dies_after_its_first_checkpoint(marker, reports))
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = run_sweep(settings, custom_search_space=SPACE, config_type="conservative",
                                          custom_tune_config={"num_samples": 1, "max_concurrent_trials": 1,
                                                              "seed": 3, "grace_period": ROUNDS},
                                          experiment_name="resumed_trial")
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(300)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result["trials"]["completed"] == 1 and result["trials"]["errored"] == 0, result["trials"]
    assert marker.exists(), "no mid-trial checkpoint was reported"
    k = int(marker.read_text())
    assert 0 < k < ROUNDS

    lines = [json.loads(line) for line in reports.read_text().splitlines()]
    killed = next(line["pid"] for line in lines if line["checkpoint"])
    before = [r for line in lines if line["pid"] == killed for r in line["rounds"]]
    after = [r for line in lines if line["pid"] != killed for r in line["rounds"]]
    assert before[:k] == list(range(1, k + 1))
    assert after == list(range(k + 1, ROUNDS + 1)), after[:5]  # rounds 1..k were not trained again

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    parent = result["mlflow"]["parent_run_id"]
    (run,) = client.search_runs([result["mlflow"]["experiment_id"]],
                                filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent}'")
    assert run.info.status == "FINISHED" and run.data.tags[TAG_RETRIES] == "1"
    assert run.data.tags[TAG_RESUMED_AT] == str(k)
    for key in (names.AUC, names.LOGLOSS):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(range(1, ROUNDS + 1)), key  # each round once, none lost
    assert run.data.metrics["final_training_time"] > 0


def _checkpoint_at(config: dict, data: TrialData, rounds: int, directory) -> tune.Checkpoint:
    """What a trial's report writes after `rounds` rounds: the booster and XGBoost's log so far."""
    params, _, _ = split_config(config, 1)
    dtrain, dvalid = make_dmatrices(data)
    log: dict = {}
    booster = xgb.train(params, dtrain, num_boost_round=rounds, evals=[(dvalid, "validation")], evals_result=log,
                        verbose_eval=False)
    directory.mkdir()
    save(str(directory), booster, log, 1.5)
    return tune.Checkpoint.from_directory(str(directory))


def test_a_resumed_training_stops_early_where_an_uninterrupted_one_does(settings, tmp_path):
    data = TrialData.of(load_dataset(settings.data_dir))
    config = {**FIXED_PARAMS, "eta": 0.3, "max_depth": 3, "num_boost_round": 200, "early_stopping_rounds": 5}
    whole, final = train_booster(config, data, 1)
    assert final["rounds_trained"] < 200 and 0 < final["best_iteration"] < final["rounds_trained"] - 1
    for k in range(1, final["rounds_trained"]):  # a checkpoint at every round it passed through
        earlier = load(_checkpoint_at(config, data, k, tmp_path / str(k)))
        assert earlier.rounds == k and earlier.training_s == 1.5
        booster, resumed = train_booster(config, data, 1, earlier=earlier)
        assert resumed == final, k  # the same best round, rounds trained and curve (every round, once)
        assert booster.num_boosted_rounds() == whole.num_boosted_rounds() == final["best_iteration"] + 1


def test_a_checkpoint_without_a_log_makes_the_trial_start_over(settings, tmp_path):
    """A checkpoint written before checkpoints kept the evaluation log (the booster alone): nothing to go on from."""
    data = TrialData.of(load_dataset(settings.data_dir))
    dtrain, _ = make_dmatrices(data)
    xgb.train({"max_depth": 2}, dtrain, num_boost_round=3).save_model(str(tmp_path / CHECKPOINT_FILE))
    checkpoint = tune.Checkpoint.from_directory(str(tmp_path))
    assert load(checkpoint) is None
    assert booster_from(checkpoint_bytes(checkpoint)).num_boosted_rounds() == 3  # still the trial's model, for registration

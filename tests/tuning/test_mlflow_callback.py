"""What a person sees of a sweep in MLflow's UI: experiments open on runs, readable trial names, final
metrics as single values, a failed trial's own error, the pictures on the sweep's parent run (drawn after
the answer), and each round of a trial once in its run, ended as it ended, when a resumed sweep completes it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import mlflow
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.entities import Metric
from ray import tune
from ray.tune.experiment import Trial

from seedcore import names

from seedcore.promotion import plots
from seedcore.promotion.registry import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Registry, ensure_experiment
from seedcore.promotion import followups
from seedcore.tuning import run_sweep
from seedcore.tuning.mlflow_callback import MLflowTrialLogger
from seedcore.tuning.checkpoints import save
from seedcore.tuning.resume import Resumed, settle_runs
from seedcore.tuning.trainable import BEST_ITERATION, CURVE, DONE_TRAINING, TRAINING_TIME

pytestmark = pytest.mark.integration

SPACE = {"eta": {"type": "uniform", "lower": 0.05, "upper": 0.3}, "max_depth": 3, "num_boost_round": 6}


def test_a_sweep_reads_well_in_the_mlflow_ui(migrated_settings, ray_session):
    settings = migrated_settings
    result = run_sweep(settings, custom_search_space=SPACE, config_type="conservative",
                       custom_tune_config={"num_samples": 4, "seed": 3}, experiment_name="readable")
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name("readable")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    parent = result["mlflow"]["parent_run_id"]
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent}'")
    assert len(children) == 4
    numbers = sorted(int(re.fullmatch(r"trial-(\d{3}) eta=0\.\d+ depth=3", r.info.run_name).group(1))
                     for r in children)
    assert numbers == [1, 2, 3, 4]

    finished = [r for r in children if r.data.tags["seedcore.outcome"] == "completed"]
    assert finished
    for run in finished:
        for key in ("final_auc", "final_logloss"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [0]  # a single value, drawn as a bar, not a one-dot line
        assert len(client.get_metric_history(run.info.run_id, names.AUC)) == 6  # the curve, one point a round
    assert result["followups"]["plots"] == "pending"  # drawn after the answer
    assert set(result["followups"]) == set(followups.STEPS)  # one objective: no Pareto front to log
    assert followups.wait(parent, 120)["plots"] == "done"
    pictures = {f.path for f in client.list_artifacts(parent, plots.PLOTS_DIR)}
    assert pictures == {f"{plots.PLOTS_DIR}/{name}" for name in plots.SWEEP_PLOTS}


def test_a_failed_trial_tags_its_own_error_not_a_file(settings, ray_session, tmp_path):
    registry = Registry(settings)
    experiment_id = ensure_experiment(registry.client, settings, "failing")
    parent = registry.client.create_run(experiment_id).info.run_id
    logger = MLflowTrialLogger(registry.client, experiment_id, parent, total_trials=1)

    def refuses(config):  # a trainable that fails the way a user's data or parameters can
        raise ValueError(f"label column holds 3 classes, eta={config['eta']}")

    tuner = tune.Tuner(refuses, param_space={"eta": 0.1, "max_depth": 3},
                       run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=[logger], verbose=0,
                                                 failure_config=tune.FailureConfig(max_failures=0)))
    tuner.fit()
    logger.close_open_runs()
    logger.close()
    (run,) = registry.client.search_runs([experiment_id], f"tags.`{names.TAG_PARENT_RUN}` = '{parent}'")
    assert run.info.status == "FAILED" and run.info.run_name == "trial-001 eta=0.1 depth=3"
    assert run.data.tags["seedcore.error"] == "ValueError: label column holds 3 classes, eta=0.1"
    assert logger.trial_summaries() == [{"number": 1, "params": {"eta": 0.1, "max_depth": 3}, "auc": None,
                                         "outcome": "errored"}]


def test_an_experiment_made_elsewhere_gets_the_kind_tag(settings):
    client = Registry(settings).client
    experiment_id = mlflow.create_experiment("made_by_mlflow")
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags
    assert ensure_experiment(client, settings, "made_by_mlflow") == experiment_id
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_a_resumed_sweep_completes_a_half_written_trial_run_with_each_round_once(settings):
    """The driver died while its writer sent a finished trial's curve (MLflow takes 1000 metrics a call): the run
    holds the first batch and is still open. The resumed sweep runs the trial again; its run gets the rest."""
    registry = Registry(settings)
    client = registry.client
    experiment_id = ensure_experiment(client, settings, "half_written")
    parent = client.create_run(experiment_id).info.run_id
    config, rounds = {"eta": 0.1, "max_depth": 3}, 600
    trial = Trial("train_xgb", config=config, trial_id="abcde_00000", stub=True)
    run = client.create_run(experiment_id, tags={names.TAG_PARENT_RUN: parent, names.TAG_TRIAL_ID: trial.trial_id})
    first_batch = [Metric(key, 0.5, 1000, step) for step in range(1, 501) for key in (names.AUC, names.LOGLOSS)]
    client.log_batch(run.info.run_id, metrics=first_batch)  # what the dead writer's first call sent

    logger = MLflowTrialLogger(client, experiment_id, parent, total_trials=1)
    Resumed(parent, [client.get_run(run.info.run_id)], 1).seed(logger)
    logger.on_trial_start(0, [trial], trial)
    curve = [[step, 0.6, 0.4] for step in range(1, rounds + 1)]
    logger.on_trial_result(0, [trial], trial, {names.ROUND: rounds, names.AUC: 0.6, names.LOGLOSS: 0.4, CURVE: curve})
    final = {names.ROUND: rounds, names.AUC: 0.6, names.LOGLOSS: 0.4, CURVE: [], BEST_ITERATION: rounds - 1,
             TRAINING_TIME: 1.0, DONE_TRAINING: True}
    logger.on_trial_result(0, [trial], trial, final)
    logger.on_trial_complete(0, [trial], trial)
    logger.close_open_runs()
    logger.close()

    (only,) = client.search_runs([experiment_id], f"tags.`{names.TAG_PARENT_RUN}` = '{parent}'")
    assert only.info.run_id == run.info.run_id and only.info.status == "FINISHED"
    for key in (names.AUC, names.LOGLOSS):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(1, rounds + 1)), key  # each round once
    assert [m.step for m in client.get_metric_history(run.info.run_id, "final_auc")] == [0]


def test_a_resumed_sweep_ends_the_open_run_of_a_trial_that_had_ended(settings, tmp_path):
    """The driver died once Tune had saved a trial as ended, while its writer sent the trial's curve: the run is
    open with its first rounds. The resumed sweep does not run the trial again; its run ends completed, with the
    rounds of the trial's final checkpoint (past the best round early stopping kept) it did not hold."""
    registry = Registry(settings)
    client = registry.client
    experiment_id = ensure_experiment(client, settings, "ended_before")
    parent = client.create_run(experiment_id).info.run_id
    trial_id, rounds = "abcde_00001", 8
    run = client.create_run(experiment_id, tags={names.TAG_PARENT_RUN: parent, names.TAG_TRIAL_ID: trial_id})
    client.log_batch(run.info.run_id, metrics=[Metric(names.AUC, 0.7, 1000, step) for step in (1, 2, 3)])
    log = {"validation": {names.LOGLOSS: [0.5] * rounds, names.AUC: [0.7] * rounds}}
    x = np.arange(20.0).reshape(10, 2)
    booster = xgb.train({"max_depth": 1}, xgb.DMatrix(x, label=np.arange(10) % 2), num_boost_round=5)
    save(str(tmp_path), booster, log, 2.0)  # the final checkpoint: the booster cut at its best round, the whole log
    final = {"trial_id": trial_id, names.ROUND: rounds, names.AUC: 0.7, names.LOGLOSS: 0.5, BEST_ITERATION: 4,
             TRAINING_TIME: 2.0, DONE_TRAINING: True}
    results = [tune.Result(metrics=final, checkpoint=tune.Checkpoint.from_directory(str(tmp_path)), error=None,
                           path=str(tmp_path))]

    logger = MLflowTrialLogger(client, experiment_id, parent, total_trials=1)
    Resumed(parent, [client.get_run(run.info.run_id)], 1).seed(logger)
    settle_runs(logger, results)  # what the resumed sweep does once the restored experiment's fit is over
    logger.close_open_runs()
    logger.close()

    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "FINISHED" and ended.data.tags["seedcore.outcome"] == "completed"
    assert logger.counts()["completed"] == 1 and logger.counts()["killed"] == 0
    for key in (names.AUC, names.LOGLOSS):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(1, rounds + 1)), key  # each round once
    assert ended.data.metrics["final_auc"] == 0.7

"""What a person sees of a sweep in MLflow's UI: experiments open on runs, readable trial names, final
metrics as single values, a failed trial's own error, and the pictures on the sweep's parent run (drawn after
the answer)."""

from __future__ import annotations

import re

import pytest
import mlflow
from mlflow import MlflowClient
from ray import tune

from seedcore import names

from seedcore.promotion import plots
from seedcore.promotion.registry import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Registry, ensure_experiment
from seedcore.promotion import followups
from seedcore.tuning import run_sweep
from seedcore.tuning.mlflow_callback import MLflowTrialLogger

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

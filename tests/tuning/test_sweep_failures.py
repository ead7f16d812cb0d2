"""Sweeps that go wrong: failing trials, a sweep where every trial fails, cancel, an exception while
promoting. No MLflow run is left RUNNING and nothing is promoted by a sweep that did not succeed."""

from __future__ import annotations

import os
import threading

import pytest
import xgboost as xgb
from mlflow import MlflowClient

from seedcore import names

from seedcore.promotion import blessed
from seedcore.datasets import load_dataset
from seedcore.errors import SweepCancelledError, SweepFailedError, ValidationError
from seedcore.scoring import evaluate
from seedcore.promotion.model_logging import Candidate
from seedcore.promotion.production import Production
from seedcore.promotion.registry import Registry, ensure_experiment
from seedcore.tuning import run_sweep
from seedcore.tuning.params_check import MAX_DRY_RUNS

pytestmark = pytest.mark.integration

# Twelve constraints for ten features: XGBoost refuses it at train time ("size of monotone constraint
# ... <= n_features"). Alone in a space it is a 400 from the dry run (params_check); here it hides where
# the dry run does not look. The dry run tries at most MAX_DRY_RUNS configs: the lowest corner, the
# highest, then each choice's middle values in the space's order. A first choice with 64 values (every
# one fine) uses up that budget, so the middle values of the monotone_constraints choice are never tried,
# while its corners (the first and last value) are, and pass. The trials that sample a middle value fail
# inside the trial, in XGBoost, as they would with any refusal the dry run misses.
TOO_MANY_CONSTRAINTS = "(" + ",".join(["1"] * 12) + ")"
FITS = "(1,-1)"
FILLER = {"type": "choice", "values": list(range(200, 200 + MAX_DRY_RUNS))}  # max_bin: all valid


def hidden_refusal(bad: int) -> dict:
    """A monotone_constraints choice whose corners fit and whose `bad` middle values XGBoost refuses."""
    return {"type": "choice", "values": [FITS] + [TOO_MANY_CONSTRAINTS] * bad + [FITS]}


def runs_of(settings, experiment_name: str):
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if names.TAG_PARENT_RUN not in r.data.tags]
    children = [r for r in runs if names.TAG_PARENT_RUN in r.data.tags]
    assert len(parents) == 1
    assert all(r.data.tags[names.TAG_PARENT_RUN] == parents[0].info.run_id for r in children)
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []  # nothing left RUNNING
    return parents[0], children


def versions(settings) -> list[int]:
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{settings.model_name}'"))


def promote_a_champion(settings) -> tuple[int, bytes]:
    """Register and promote a tiny model directly; returns its version and the blessed file's bytes."""
    registry = Registry(settings)
    dataset = load_dataset(settings.data_dir)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 1, "nthread": 1},
                        xgb.DMatrix(dataset.x_train, dataset.y_train, feature_names=list(dataset.feature_names)), 1)
    run_id = registry.client.create_run(ensure_experiment(registry.client, settings, "champion")).info.run_id
    mv = registry.register(Candidate(booster, {}, dataset, evaluate(booster, dataset.x_valid, dataset.y_valid),
                                     run_id, "champion"))
    assert Production(registry).promote(mv.version)["status"] == "success"
    return int(mv.version), (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes()


def production(settings) -> int | None:
    mv = Registry(settings).production_version()
    return None if mv is None else int(mv.version)


def test_failing_trials_are_failed_runs_and_the_sweep_goes_on(migrated_settings, ray_session):
    settings = migrated_settings  # the winner is promoted through seedcore.promotion.service (our SQL locks)
    space = {"max_bin": FILLER, "monotone_constraints": hidden_refusal(4), "max_depth": 3, "num_boost_round": 5}
    result = run_sweep(settings, custom_search_space=space, config_type="conservative",
                       custom_tune_config={"num_samples": 4, "seed": 3}, experiment_name="some_fail")
    trials = result["trials"]
    assert trials["errored"] >= 1 and trials["completed"] >= 1
    assert trials["errored"] + trials["completed"] + trials["pruned"] == 4

    parent, children = runs_of(settings, "some_fail")
    assert parent.info.status == "FINISHED" and len(children) == 4
    failed = [r for r in children if r.info.status == "FAILED"]
    assert len(failed) == trials["errored"]
    for run in failed:
        assert run.data.params["monotone_constraints"] == TOO_MANY_CONSTRAINTS
        assert run.data.tags["seedcore.outcome"] == "errored" and run.data.tags[names.TAG_PRUNED] == "false"
        assert "seedcore.error" in run.data.tags
        assert run.data.tags["seedcore.retries"] == "0"  # its own code raised: not retried (max_failures is 2)
    assert result["best_trial"]["config"]["monotone_constraints"] == FITS
    assert result["promotion"]["status"] == "success"


def test_a_sweep_where_every_trial_fails_promotes_nothing(settings, ray_session):
    champion, blessed_bytes = promote_a_champion(settings)
    # Where the dry run looks, the refusal is a 400 naming the key before any run exists.
    with pytest.raises(ValidationError) as refused:
        run_sweep(settings, custom_search_space={"monotone_constraints": TOO_MANY_CONSTRAINTS, "num_boost_round": 5},
                  config_type="conservative", custom_tune_config={"num_samples": 2}, experiment_name="refused")
    assert refused.value.status_code == 400 and refused.value.field == "custom_search_space.monotone_constraints"
    assert MlflowClient(tracking_uri=settings.tracking_uri).get_experiment_by_name("refused") is None
    space = {"max_bin": FILLER, "monotone_constraints": hidden_refusal(40), "num_boost_round": 5}
    with pytest.raises(SweepFailedError) as err:
        run_sweep(settings, custom_search_space=space, config_type="conservative",
                  custom_tune_config={"num_samples": 2, "seed": 3}, experiment_name="all_fail")
    assert "no trial finished" in err.value.message and "'errored': 2" in err.value.message
    assert "XGBoostError" in err.value.message and "monotone constraint" in err.value.message

    parent, children = runs_of(settings, "all_fail")
    assert parent.info.status == "FAILED"
    assert [r.info.status for r in children] == ["FAILED", "FAILED"]
    assert versions(settings) == [champion] and production(settings) == champion
    assert (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes() == blessed_bytes


def test_cancel_kills_the_runs_and_registers_nothing(settings, two_cpu_ray):  # trials side by side
    cancel = threading.Event()
    seen: list[dict] = []

    def progress(update: dict) -> None:
        seen.append(update)
        if update["trials_done"] >= 1:  # the first trial has finished
            cancel.set()

    # Long enough that the second trial is still training when the first one finishes.
    space = {"eta": 0.01, "max_depth": 6, "num_boost_round": 400}
    with pytest.raises(SweepCancelledError) as err:
        run_sweep(settings, custom_search_space=space, config_type="conservative", progress=progress,
                  cancel_event=cancel, experiment_name="cancelled",
                  custom_tune_config={"num_samples": 4, "max_concurrent_trials": 2, "grace_period": 400})
    assert err.value.status_code == 409

    parent, children = runs_of(settings, "cancelled")
    assert parent.info.status == "KILLED"
    statuses = sorted(r.info.status for r in children)
    assert "KILLED" in statuses and len(children) < 4  # the queued trials never started
    assert set(statuses) <= {"FINISHED", "KILLED"}
    for run in children:
        if run.info.status == "KILLED":
            assert run.data.tags["seedcore.outcome"] == "killed"
    assert seen[-1]["trials_done"] == len(children)
    assert versions(settings) == [] and production(settings) is None
    assert not (settings.blessed_dir / names.BLESSED_MODEL_FILE).exists()
    experiment_id = MlflowClient(tracking_uri=settings.tracking_uri).get_experiment_by_name("cancelled").experiment_id
    assert MlflowClient(tracking_uri=settings.tracking_uri).search_logged_models(experiment_ids=[experiment_id]) == []


def test_an_exception_while_promoting_leaves_no_run_open_and_the_champion_in_place(migrated_settings, ray_session,
                                                                                   monkeypatch):
    settings = migrated_settings  # so promotion gets as far as the blessed files (our SQL locks)
    champion, blessed_bytes = promote_a_champion(settings)
    target = os.readlink(settings.blessed_dir)  # the blessed link and the champion's directory behind it

    def disk_fails(link, target):
        raise OSError(28, "No space left on device")

    # Switching the blessed link fails mid-promotion (after the new directory is written).
    monkeypatch.setattr(blessed, "switch_link", disk_fails)
    # A failed promotion is reported in the result (promote_or_report), not raised: the sweep succeeded.
    result = run_sweep(settings, space_type="conservative", config_type="conservative",
                       custom_tune_config={"num_samples": 2}, experiment_name="promotion_fails")
    promotion = result["promotion"]
    assert promotion["status"] == "error" and "No space left on device" in promotion["error"]
    assert promotion["version"] == champion + 1

    parent, children = runs_of(settings, "promotion_fails")
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert parent.data.tags["seedcore.promotion"] == "error"
    assert all(r.info.status == "FINISHED" for r in children)
    # The winner was registered, but the alias, the stage and the blessed files did not move.
    assert versions(settings) == [champion, champion + 1]
    assert production(settings) == champion
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    assert client.get_model_version(settings.model_name, str(champion + 1)).current_stage == "None"
    assert client.get_model_version(settings.model_name, str(champion)).current_stage == names.PRODUCTION_STAGE
    assert os.readlink(settings.blessed_dir) == target
    assert (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes() == blessed_bytes
    # The half-written directory was removed: only the champion's is published.
    assert [p.name for p in settings.blessed_dir.parent.glob(f"{settings.model_name}_v*")] == [target]

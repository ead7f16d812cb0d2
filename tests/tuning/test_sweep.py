"""Sweeps end to end on real Ray, MLflow (SQLite) and XGBoost: the result, what reaches XGBoost, the
MLflow runs, registration and first promotion, ASHA pruning, early stopping, one Ray session.

Three sweeps, each run once per module in a store of its own and shared by the tests that read it.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import ray
import xgboost as xgb
from mlflow import MlflowClient

from seedcore import names
from seedcore.config import Settings
from seedcore.datasets import load_dataset
from seedcore.scoring import evaluate
from seedcore.promotion.registry import Registry, configure_mlflow
from seedcore.tuning import run_sweep
from seedcore.tuning.spaces import EARLY_STOPPING_ROUNDS, FIXED_PARAMS, NUM_BOOST_ROUND
from seedcore.tuning.trainable import CONFIG_ATTR

pytestmark = pytest.mark.integration

# Every range avoids XGBoost's default (eta 0.3, max_depth 6, subsample 1, colsample_* 1, lambda 1,
# alpha 0, gamma 0, min_child_weight 1), so a parameter that never reached XGBoost shows up.
FULL_SPACE = {
    "eta": {"type": "loguniform", "lower": 0.05, "upper": 0.29},
    "max_depth": {"type": "randint", "lower": 2, "upper": 6},
    "subsample": {"type": "uniform", "lower": 0.6, "upper": 0.95},
    "colsample_bytree": {"type": "uniform", "lower": 0.6, "upper": 0.95},
    "colsample_bylevel": {"type": "uniform", "lower": 0.6, "upper": 0.95},
    "lambda": {"type": "uniform", "lower": 1.5, "upper": 3.0},
    "alpha": {"type": "uniform", "lower": 0.1, "upper": 2.0},
    "gamma": {"type": "uniform", "lower": 0.05, "upper": 0.5},
    "min_child_weight": {"type": "uniform", "lower": 1.5, "upper": 6.0},
    "num_boost_round": 15,
}
MAIN_TRIALS, MAIN_ROUNDS, MAIN_GRACE = 4, 15, 8  # one ASHA rung, at round 8
# XGBoost's name for each of our parameters in learner.gradient_booster.tree_train_param.
TREE_PARAM = {"eta": "eta", "max_depth": "max_depth", "subsample": "subsample",
              "colsample_bytree": "colsample_bytree", "colsample_bylevel": "colsample_bylevel",
              "lambda": "reg_lambda", "alpha": "reg_alpha", "gamma": "gamma", "min_child_weight": "min_child_weight"}
XGB_DEFAULTS = {"eta": 0.3, "max_depth": 6, "subsample": 1, "colsample_bytree": 1, "colsample_bylevel": 1,
                "lambda": 1, "alpha": 0, "gamma": 0, "min_child_weight": 1}

PRUNE_SPACE = {"eta": {"type": "loguniform", "lower": 0.001, "upper": 0.5}, "max_depth": 3, "num_boost_round": 30}
PRUNE_TRIALS, PRUNE_ROUNDS, GRACE, RF = 12, 30, 2, 2
PRUNE_RUNGS = {2, 4, 8, 16}  # GRACE * RF**k below the last round

# Deep trees at eta 1 overfit within a few rounds; validation AUC peaks early.
EARLY_SPACE = {"eta": 1.0, "max_depth": 10, "min_child_weight": 0.0, "lambda": 0.0, "num_boost_round": 200,
               "early_stopping_rounds": 3}


def fresh_settings(tmp_path_factory, mlflow_template, name: str, **changes) -> Settings:
    """What conftest's `settings` builds, for module scope: own data dir and MLflow SQLite store."""
    root = tmp_path_factory.mktemp(name)
    mlruns = root / "mlruns"
    mlruns.mkdir()
    shutil.copy(mlflow_template, mlruns / "mlflow.db")
    settings = Settings(data_dir=root / "data", mlruns_dir=mlruns, poll_interval_s=0.2, **changes)
    settings.ensure_dirs()
    from seedcore.db.migrations import upgrade

    upgrade(settings.database_url)  # promotion goes through seedcore.promotion.service: our SQL schema (locks)
    return settings


def ray_ids() -> tuple[str, str]:
    context = ray.get_runtime_context()
    return context.get_job_id(), context.get_node_id()


def sweep(tmp_path_factory, mlflow_template, name: str, settings_changes=None, **request) -> SimpleNamespace:
    settings = fresh_settings(tmp_path_factory, mlflow_template, name, **(settings_changes or {}))
    progress: list[dict] = []
    senders: set[str] = set()

    def record(update: dict) -> None:
        progress.append(update)
        senders.add(threading.current_thread().name)

    result = run_sweep(settings, experiment_name=name, progress=record, **request)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    runs = client.search_runs([result["mlflow"]["experiment_id"]], max_results=1000)
    parent = [r for r in runs if names.TAG_PARENT_RUN not in r.data.tags]
    children = [r for r in runs if names.TAG_PARENT_RUN in r.data.tags]
    return SimpleNamespace(settings=settings, result=result, progress=progress, senders=senders, client=client, runs=runs,
                           parents=parent, parent=parent[0], children=children, ray_ids=ray_ids())


# The module's sweeps have both CPUs of the shared Ray (test 10: one session): two trials side by side, and in
# `early` one trial on two CPUs.
@pytest.fixture(scope="module")
def main(tmp_path_factory, mlflow_template, two_cpu_ray):
    # refit=False: these tests hold the registered model against the trial's (the refit: test_search_sweeps.py)
    return sweep(tmp_path_factory, mlflow_template, "flywheel_main", custom_search_space=FULL_SPACE,
                 config_type="conservative", refit=False,
                 custom_tune_config={"num_samples": MAIN_TRIALS, "max_concurrent_trials": 2,
                                     "grace_period": MAIN_GRACE, "seed": 11})


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, mlflow_template, two_cpu_ray):
    return sweep(tmp_path_factory, mlflow_template, "flywheel_asha", custom_search_space=PRUNE_SPACE,
                 config_type="conservative", promote=False,
                 custom_tune_config={"num_samples": PRUNE_TRIALS, "max_concurrent_trials": 2, "grace_period": GRACE,
                                     "reduction_factor": RF, "seed": 1})


@pytest.fixture(scope="module")
def early(tmp_path_factory, mlflow_template, two_cpu_ray):
    return sweep(tmp_path_factory, mlflow_template, "flywheel_early", settings_changes={"cpus_per_trial": 2},
                 custom_search_space=EARLY_SPACE, config_type="conservative", refit=False,
                 custom_tune_config={"num_samples": 1})


def child_of(s, trial_id: str):
    (run,) = [r for r in s.children if r.data.tags[names.TAG_TRIAL_ID] == trial_id]
    return run


def steps(s, run_id: str, key: str = names.AUC) -> list[int]:
    return sorted(m.step for m in s.client.get_metric_history(run_id, key))


def curve(s, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(s.client.get_metric_history(run_id, key), key=lambda m: m.step)]


def registered_booster(s) -> xgb.Booster:
    registry = Registry(s.settings)
    return registry.load_booster(registry.get_version(s.result["model_version"]))


def xgb_config(booster: xgb.Booster) -> dict:
    return json.loads(booster.attr(CONFIG_ATTR))


def plain_params(config: dict, nthread: int) -> dict:
    params = {k: v for k, v in config.items() if k not in (NUM_BOOST_ROUND, EARLY_STOPPING_ROUNDS)}
    return {**params, "nthread": nthread}


def matrices(dataset):
    features = list(dataset.feature_names)
    return (xgb.DMatrix(dataset.x_train, dataset.y_train, feature_names=features),
            xgb.DMatrix(dataset.x_valid, dataset.y_valid, feature_names=features))


# -- 8. the result ----------------------------------------------------------------------------------
def test_result_has_the_guides_shape_and_ours(main):
    r = main.result
    assert r["status"] == "success" and r["experiment_name"] == "flywheel_main"
    assert set(r["best_trial"]) >= {"trial_id", "auc", "logloss", "training_time", "config"}
    assert set(r["best_trial"]["config"]) == set(FULL_SPACE) | set(FIXED_PARAMS)
    assert 0.5 < r["best_trial"]["auc"] <= 1 and r["best_trial"]["logloss"] > 0
    assert r["best_trial"]["training_time"] > 0
    assert set(r["promotion"]) >= {"status", "source_path", "blessed_path", "metadata_path"}
    assert r["promotion"]["status"] == "success"
    assert r["total_trials"] == MAIN_TRIALS
    assert Path(r["experiment_path"]).is_dir()
    assert Path(r["experiment_path"]).parent == main.settings.ray_results_dir
    assert r["model_version"] == 1
    assert set(r["holdout"]) == {"auc", "logloss"} and 0.5 < r["holdout"]["auc"] <= 1
    assert r["mlflow"]["experiment_id"] == main.client.get_experiment_by_name("flywheel_main").experiment_id
    assert r["mlflow"]["parent_run_id"] == main.parent.info.run_id
    trials = r["trials"]
    assert trials["total"] == MAIN_TRIALS and trials["errored"] == trials["killed"] == 0
    assert trials["completed"] + trials["pruned"] == MAIN_TRIALS and trials["completed"] >= 1
    assert r["dataset"]["fingerprint"] == load_dataset(main.settings.data_dir).fingerprint
    # Progress went to the caller as trials ended, ending with the result's counts, and from a thread of its
    # own: the caller writes SQL, which must not hold up Tune's control loop.
    done = [p["trials_done"] for p in main.progress]
    assert done == sorted(done) and done[-1] == MAIN_TRIALS
    assert main.senders == {"seedcore-progress"}
    assert {k: main.progress[-1][k] for k in ("completed", "pruned", "errored", "killed")} == \
        {k: trials[k] for k in ("completed", "pruned", "errored", "killed")}


def test_best_trial_auc_is_what_plain_xgboost_gives(main):
    best = main.result["best_trial"]
    dataset = load_dataset(main.settings.data_dir)
    dtrain, dvalid = matrices(dataset)
    history: dict = {}
    booster = xgb.train(plain_params(best["config"], main.settings.cpus_per_trial), dtrain,
                        num_boost_round=best["best_iteration"] + 1, evals=[(dvalid, "validation")],
                        evals_result=history, verbose_eval=False)
    assert abs(history["validation"]["auc"][-1] - best["auc"]) < 1e-9
    assert abs(history["validation"]["logloss"][-1] - best["logloss"]) < 1e-9
    # The winner's MLflow curve is XGBoost's own evaluation, round by round.
    run_id = best["run_id"]
    assert steps(main, run_id) == list(range(1, MAIN_ROUNDS + 1))
    assert np.allclose(curve(main, run_id, names.AUC), history["validation"]["auc"], rtol=0, atol=1e-9)
    assert np.allclose(curve(main, run_id, names.LOGLOSS), history["validation"]["logloss"], rtol=0, atol=1e-9)
    # ... and the holdout metrics are the plain model's.
    holdout = evaluate(booster, dataset.x_holdout, dataset.y_holdout)
    assert abs(holdout["auc"] - main.result["holdout"]["auc"]) < 1e-9
    assert abs(holdout["logloss"] - main.result["holdout"]["logloss"]) < 1e-9


# -- 2. every sampled hyperparameter reaches XGBoost ------------------------------------------------
def test_every_sampled_hyperparameter_reaches_xgboost(main):
    config = main.result["best_trial"]["config"]
    learner = xgb_config(registered_booster(main))["learner"]
    tree = learner["gradient_booster"]["tree_train_param"]
    for ours, theirs in TREE_PARAM.items():
        assert config[ours] != XGB_DEFAULTS[ours], ours  # sampled away from the default...
        assert float(tree[theirs]) == pytest.approx(config[ours], rel=1e-6), ours  # ...and XGBoost used it
    assert learner["gradient_booster"]["gbtree_train_param"]["tree_method"] == "hist"
    assert learner["objective"]["name"] == "binary:logistic"
    assert learner["generic_param"]["seed"] == "0"
    assert learner["metrics"] == [{"name": "logloss"}, {"name": "auc"}]
    # nthread: the CPUs Ray gave the trial (Settings.cpus_per_trial), as XGBoost recorded it.
    assert learner["generic_param"]["nthread"] == str(main.settings.cpus_per_trial) == "1"


def test_nthread_follows_cpus_per_trial(early):
    learner = xgb_config(registered_booster(early))["learner"]
    assert early.settings.cpus_per_trial == 2
    assert learner["generic_param"]["nthread"] == "2"


def test_trials_sample_inside_the_space(main):
    for run in main.children:
        params = run.data.params
        assert set(params) == set(FULL_SPACE) | set(FIXED_PARAMS)
        for key, spec in FULL_SPACE.items():
            if isinstance(spec, dict):
                assert spec["lower"] <= float(params[key]) < spec["upper"], key
        assert params["num_boost_round"] == "15" and params["objective"] == "binary:logistic"
    # Four trials, four different samples.
    assert len({run.data.params["eta"] for run in main.children}) == MAIN_TRIALS


# -- 5. MLflow ----------------------------------------------------------------------------------------
def test_one_parent_run_and_one_child_run_per_trial(main):
    assert len(main.parents) == 1 and len(main.children) == MAIN_TRIALS
    parent_id = main.parent.info.run_id
    assert all(r.data.tags[names.TAG_PARENT_RUN] == parent_id for r in main.children)
    trial_ids = {r.data.tags[names.TAG_TRIAL_ID] for r in main.children}
    assert len(trial_ids) == MAIN_TRIALS and main.result["best_trial"]["trial_id"] in trial_ids
    # Runs are named for people, in the order trials started: `trial-001 eta=0.149 depth=3` (the trial id is a tag).
    numbered = sorted(((int(r.info.run_name.split()[0].removeprefix("trial-")), r) for r in main.children),
                      key=lambda pair: pair[0])
    assert [n for n, _ in numbered] == list(range(1, MAIN_TRIALS + 1))
    for n, r in numbered:
        params = r.data.params
        assert r.info.run_name == f"trial-{n:03d} eta={float(params['eta']):.3g} depth={int(params['max_depth'])}"
    assert main.parent.info.status == "FINISHED"
    assert all(r.info.status == "FINISHED" for r in main.children)


def test_child_runs_hold_params_curves_and_final_metrics(main):
    best = main.result["best_trial"]
    best_run = child_of(main, best["trial_id"])
    assert best_run.info.run_id == best["run_id"]
    assert best_run.data.params == {k: json.dumps(v) if isinstance(v, list) else str(v)
                                    for k, v in best["config"].items()}
    counted = {"true": 0, "false": 0}
    for run in main.children:
        pruned = run.data.tags[names.TAG_PRUNED]
        counted[pruned] += 1
        auc_steps, logloss_steps = steps(main, run.info.run_id), steps(main, run.info.run_id, names.LOGLOSS)
        assert auc_steps == logloss_steps == list(range(1, len(auc_steps) + 1))  # step = round, every round
        if pruned == "false":
            assert len(auc_steps) == MAIN_ROUNDS
            metrics = run.data.metrics
            assert {"final_auc", "final_logloss", "final_best_iteration", "final_training_time"} <= set(metrics)
            assert metrics["final_auc"] == curve(main, run.info.run_id, names.AUC)[-1]
        else:
            assert len(auc_steps) == MAIN_GRACE  # stopped at the rung
    assert counted["false"] == main.result["trials"]["completed"]
    assert counted["true"] == main.result["trials"]["pruned"]
    assert best_run.data.metrics["final_auc"] == best["auc"]


def test_parent_run_holds_settings_fingerprint_and_the_winner(main):
    parent = main.parent.data
    r = main.result
    assert parent.params["tune.num_samples"] == str(MAIN_TRIALS)
    assert parent.params["tune.max_concurrent_trials"] == "2"
    assert parent.params["tune.grace_period"] == str(MAIN_GRACE)
    assert parent.params["tune.reduction_factor"] == "2"
    assert parent.params["tune.time_budget_s"] == "600"
    assert "loguniform" in parent.params["space.eta"] and "0.29" in parent.params["space.eta"]
    assert parent.params["data.source"] == "builtin" and parent.params["data.rows"] == "2000"
    fingerprint = load_dataset(main.settings.data_dir).fingerprint
    assert parent.tags[names.TAG_FINGERPRINT] == parent.params["data.fingerprint"] == fingerprint
    assert parent.tags["seedcore.best_trial_id"] == r["best_trial"]["trial_id"]
    assert parent.tags["seedcore.best_run_id"] == r["best_trial"]["run_id"]
    assert parent.tags["seedcore.model_version"] == "1" and parent.tags["seedcore.promotion"] == "success"
    assert parent.metrics["best_validation_auc"] == r["best_trial"]["auc"]
    assert parent.metrics["best_validation_logloss"] == r["best_trial"]["logloss"]
    assert parent.metrics["holdout_auc"] == r["holdout"]["auc"]
    assert parent.metrics["holdout_logloss"] == r["holdout"]["logloss"]


# -- 6. the winner in the registry --------------------------------------------------------------------
def test_winner_is_logged_once_and_registered_with_holdout_tags(main):
    r = main.result
    experiment_id = r["mlflow"]["experiment_id"]
    logged = main.client.search_logged_models(experiment_ids=[experiment_id])
    assert [m.source_run_id for m in logged] == [r["best_trial"]["run_id"]]

    versions = main.client.search_model_versions("name = 'utility_risk_model'")
    assert [int(v.version) for v in versions] == [1]
    mv = main.client.get_model_version("utility_risk_model", "1")
    assert mv.run_id == r["best_trial"]["run_id"]
    assert mv.tags["source_run_id"] == r["best_trial"]["run_id"]
    assert mv.tags["trial_id"] == r["best_trial"]["trial_id"]
    assert float(mv.tags["holdout_auc"]) == r["holdout"]["auc"]
    assert float(mv.tags["holdout_logloss"]) == r["holdout"]["logloss"]
    assert float(mv.tags["validation_auc"]) == r["best_trial"]["auc"]
    assert mv.tags["dataset_fingerprint"] == r["dataset"]["fingerprint"]

    configure_mlflow(main.settings)
    uri = "models:/utility_risk_model/1"
    info = mlflow.models.get_model_info(uri)
    assert "xgboost" in info.flavors
    assert info.signature.inputs.input_names() == [f"f{i}" for i in range(10)]
    example = mlflow.models.Model.load(uri).load_input_example(mlflow.artifacts.download_artifacts(uri))
    assert list(example.columns) == [f"f{i}" for i in range(10)] and len(example) == 5
    assert (Path(r["promotion"]["source_path"]) / "MLmodel").is_file()


# -- 7. the first sweep promotes ------------------------------------------------------------------------
def test_first_sweep_promotes_alias_stage_and_blessed_files(main):
    promotion, settings = main.result["promotion"], main.settings
    assert promotion["status"] == "success" and promotion["reason"] == "no champion to beat"
    assert promotion["champion"] is None and promotion["version"] == 1
    mv = main.client.get_model_version_by_alias("utility_risk_model", "production")
    assert int(mv.version) == 1 and mv.current_stage == "Production"
    assert promotion["blessed_path"] == str(settings.data_dir / "models" / "utility_risk_model_latest" / "model.xgb")
    meta = json.loads(Path(promotion["metadata_path"]).read_text())
    assert meta["version"] == 1 and meta["trial_id"] == main.result["best_trial"]["trial_id"]
    assert meta["holdout"] == main.result["holdout"] and meta["aliases"] == ["production"]

    dataset = load_dataset(settings.data_dir)
    blessed = xgb.Booster()
    blessed.load_model(promotion["blessed_path"])
    from_blessed = blessed.predict(xgb.DMatrix(dataset.x_holdout, feature_names=list(dataset.feature_names)))
    configure_mlflow(settings)
    pyfunc = mlflow.pyfunc.load_model("models:/utility_risk_model@production")
    from_registry = np.asarray(pyfunc.predict(pd.DataFrame(dataset.x_holdout, columns=list(dataset.feature_names))))
    assert np.array_equal(from_blessed, from_registry)
    assert evaluate(blessed, dataset.x_holdout, dataset.y_holdout) == main.result["holdout"]
    assert blessed.attr(CONFIG_ATTR) == registered_booster(main).attr(CONFIG_ATTR)


# -- 3. ASHA prunes on per-round reports ---------------------------------------------------------------
def test_asha_prunes_at_its_rungs(pruned):
    trials = pruned.result["trials"]
    assert trials["total"] == PRUNE_TRIALS and trials["errored"] == trials["killed"] == 0
    assert trials["pruned"] > 0 and trials["completed"] >= 1
    assert trials["pruned"] + trials["completed"] == PRUNE_TRIALS
    assert pruned.result["tune_config"]["grace_period"] == GRACE
    assert pruned.parent.data.params["tune.reduction_factor"] == str(float(RF))

    tagged = [r for r in pruned.children if r.data.tags[names.TAG_PRUNED] == "true"]
    assert len(tagged) == trials["pruned"] and len(pruned.children) == PRUNE_TRIALS
    for run in tagged:
        rounds = steps(pruned, run.info.run_id)
        assert rounds == list(range(1, len(rounds) + 1))
        assert len(rounds) < PRUNE_ROUNDS and len(rounds) in PRUNE_RUNGS  # stopped at an ASHA rung
        assert run.info.status == "FINISHED" and "final_auc" not in run.data.metrics
    for run in pruned.children:
        if run.data.tags[names.TAG_PRUNED] == "false":
            assert steps(pruned, run.info.run_id) == list(range(1, PRUNE_ROUNDS + 1))
    # Pruned trials never win.
    assert pruned.result["best_trial"]["trial_id"] not in {r.data.tags[names.TAG_TRIAL_ID] for r in tagged}


def test_promotion_can_be_skipped(pruned):
    assert pruned.result["promotion"]["status"] == "skipped"
    assert pruned.result["model_version"] == 1
    assert Registry(pruned.settings).production_version() is None
    assert not (pruned.settings.blessed_dir / names.BLESSED_MODEL_FILE).exists()


# -- 3. early stopping ---------------------------------------------------------------------------------
def test_early_stopping_stops_early_and_keeps_the_best_iteration(early):
    best = early.result["best_trial"]
    rounds = steps(early, best["run_id"])
    aucs = curve(early, best["run_id"], names.AUC)
    assert len(rounds) < EARLY_SPACE["num_boost_round"]
    assert len(rounds) == best["best_iteration"] + 1 + EARLY_SPACE["early_stopping_rounds"]
    assert best["auc"] == max(aucs) == aucs[best["best_iteration"]]
    assert registered_booster(early).num_boosted_rounds() == best["best_iteration"] + 1

    dataset = load_dataset(early.settings.data_dir)
    dtrain, dvalid = matrices(dataset)
    plain = xgb.train(plain_params(best["config"], 2), dtrain, num_boost_round=EARLY_SPACE["num_boost_round"],
                      evals=[(dvalid, "validation")], early_stopping_rounds=EARLY_SPACE["early_stopping_rounds"],
                      verbose_eval=False)
    assert plain.best_iteration == best["best_iteration"]
    assert early.result["holdout"] == evaluate(plain[: plain.best_iteration + 1], dataset.x_holdout,
                                               dataset.y_holdout)


# -- 10. one Ray session --------------------------------------------------------------------------------
def test_consecutive_sweeps_reuse_one_ray_session(main, pruned, early):
    assert ray.is_initialized()
    assert main.ray_ids == pruned.ray_ids == early.ray_ids == ray_ids()
    assert len(ray.nodes()) == 1


def test_a_rung_on_the_last_round_never_prunes_a_finished_trial(tmp_path_factory, mlflow_template, ray_session):
    # 16 rounds, grace 4, factor 2: rungs at 4, 8 and 16 — the last rung IS the last round. A trial
    # that trains all 16 rounds must complete with its checkpoint, whatever ASHA thinks of round 16.
    space = {"eta": {"type": "uniform", "lower": 0.2, "upper": 0.3}, "max_depth": 3, "num_boost_round": 16}
    s = sweep(tmp_path_factory, mlflow_template, "flywheel_last_rung", custom_search_space=space,
              config_type="conservative", promote=False,
              custom_tune_config={"num_samples": 12, "grace_period": 4, "reduction_factor": 2, "seed": 5})
    full = [r for r in s.children if steps(s, r.info.run_id) == list(range(1, 17))]
    assert len(full) >= 2  # at least two trials reached rung 16, so ASHA had a cutoff there
    for run in full:
        assert run.data.tags[names.TAG_PRUNED] == "false" and "final_auc" in run.data.metrics
    assert s.result["trials"]["completed"] == len(full)

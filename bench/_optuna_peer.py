"""Peer: Optuna in one process, each trial a nested MLflow run under one parent, curves logged per round.

What a user of Optuna and MLflow typically writes: the fluent MLflow API, `mlflow.log_params` per
trial and one `mlflow.log_metrics` call per boosting round (both metrics in one call: one write per
round). No pruning: a plain Optuna objective reports nothing mid-training, so every trial runs its
rounds (early stopping still applies where the space sets it). XGBoost gets nthread=1, as each of our
trials does: on small data that is Optuna's fastest setting (XGBoost's default, all cores, is slower
on a few hundred rows, and many times slower when anything else wants the CPUs).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import mlflow
import optuna
import xgboost as xgb
from ray.tune.search.sample import Categorical, Float, Integer

from bench._workspace import load_split
from seedcore.datasets import Dataset
from seedcore.scoring import evaluate
from seedcore.names import AUC, LOGLOSS
from seedcore.tuning.spaces import EARLY_STOPPING_ROUNDS, NUM_BOOST_ROUND, TRAINING_KEYS

NTHREAD = 1

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("mlflow").setLevel(logging.WARNING)


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """Sample the same ranges as the Ray Tune space: loguniform, uniform, randint (upper exclusive), choice."""
    config = {}
    for key, domain in space.items():
        if isinstance(domain, Float):
            log = isinstance(domain.get_sampler(), Float._LogUniform)
            config[key] = trial.suggest_float(key, domain.lower, domain.upper, log=log)
        elif isinstance(domain, Integer):
            config[key] = trial.suggest_int(key, domain.lower, domain.upper - 1)
        elif isinstance(domain, Categorical):
            config[key] = trial.suggest_categorical(key, domain.categories)
        else:
            config[key] = domain
    return config


class _LogRounds(xgb.callback.TrainingCallback):
    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        log = evals_log["validation"]
        mlflow.log_metrics({"validation-auc": log[AUC][-1], "validation-logloss": log[LOGLOSS][-1]}, step=epoch)
        return False


def optuna_sweep(data_path: Path, space: dict, n_trials: int, tracking_uri: str, experiment_name: str,
                 seed: int | None = None, nthread: int = NTHREAD) -> dict:
    """Load, split, optimise with nested runs; returns wall seconds, the best AUC and the best booster."""
    started = time.perf_counter()
    dataset = load_split(data_path)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment_name)
    dtrain, dvalid = _dmatrices(dataset)
    best: dict = {"auc": -1.0, "booster": None}

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial, space)
        params = {**{k: v for k, v in config.items() if k not in TRAINING_KEYS}, "nthread": nthread}
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params(config)
            booster = xgb.train(params, dtrain, num_boost_round=int(config[NUM_BOOST_ROUND]),
                                evals=[(dvalid, "validation")], early_stopping_rounds=config.get(EARLY_STOPPING_ROUNDS),
                                verbose_eval=False, callbacks=[_LogRounds()])
            if config.get(EARLY_STOPPING_ROUNDS):
                booster = booster[: booster.best_iteration + 1]
            auc = evaluate(booster, dataset.x_valid, dataset.y_valid)[AUC]
            mlflow.log_metric("final_validation_auc", auc)
        if auc > best["auc"]:
            best.update(auc=auc, booster=booster)
        return auc

    sampler = optuna.samplers.TPESampler(seed=seed)
    with mlflow.start_run(run_name="optuna-sweep"):
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=n_trials)
        mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric("best_validation_auc", study.best_value)
    return {"seconds": time.perf_counter() - started, "best_auc": float(study.best_value), "booster": best["booster"],
            "dataset": dataset, "trials": len(study.trials)}


def _dmatrices(data: Dataset) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    names = list(data.feature_names)
    return (xgb.DMatrix(data.x_train, label=data.y_train, feature_names=names),
            xgb.DMatrix(data.x_valid, label=data.y_valid, feature_names=names))



def main(argv: list[str]) -> None:
    """`python -m bench._optuna_peer DATA TRIALS SEED TRACKING_URI [NTHREAD [ROUNDS]]`: the default space
    (with ROUNDS rounds if given); one JSON line, test AUC included."""
    from seedcore.tuning.spaces import resolve_space

    data, trials, seed, uri, *rest = argv
    space = resolve_space("default", None)
    if len(rest) > 1:
        space[NUM_BOOST_ROUND] = int(rest[1])
    out = optuna_sweep(Path(data), space, int(trials), uri, "optuna", seed=int(seed),
                       nthread=int(rest[0]) if rest else NTHREAD)
    dataset = out["dataset"]
    holdout = evaluate(out["booster"], dataset.x_holdout, dataset.y_holdout)[AUC]
    print(json.dumps({"seconds": out["seconds"], "best_auc": out["best_auc"], "holdout_auc": float(holdout),
                      "trials": out["trials"]}))


if __name__ == "__main__":
    main(sys.argv[1:])

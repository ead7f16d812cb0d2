"""Train one model with given hyperparameters (no sweep): one MLflow run, registered, optionally promoted."""

from __future__ import annotations

import time
from typing import Callable

from mlflow.entities import Metric, Param
from ray.tune.search.sample import Domain

from seedcore import names
from seedcore.config import Settings
from seedcore.datasets import load_dataset
from seedcore.errors import ValidationError
from seedcore.promotion.service import PromotionService
from seedcore.vocabulary import PromotionStatus
from seedcore.promotion.model_logging import Candidate
from seedcore.promotion.registry import Registry, ensure_experiment
from seedcore.promotion.followups import RESULT_KEY, FollowUps
from seedcore.tuning.params_check import check_params
from seedcore.tuning.spaces import resolve_space
from seedcore.tuning.trainable import BEST_ITERATION, CURVE, train_booster


def train_model(settings: Settings, params: dict, *, experiment_name: str = "xgboost_training",
                data_source: str | None = None, label_column: str | None = None,
                feature_columns: list[str] | None = None, promote: bool = False, force: bool = False,
                callbacks=(), job_id: str | None = None, trigger: str | None = None,
                hold_followups: Callable[[FollowUps], None] | None = None,
                promotion: PromotionService | None = None) -> dict:
    """Train, log the curve and final metrics, register a version; promote through the gate if asked.

    `callbacks` are XGBoost training callbacks (the job runner's cancel and time limit). The follow-ups
    (pictures, description, drift reference) start as it returns, or go to `hold_followups` as run_sweep's do.
    A version to promote goes to `promotion` (one of its own, closed after, when none is handed in).
    """
    if promote and promotion is None:
        with PromotionService.opened(settings) as own:
            return train_model(settings, params, experiment_name=experiment_name, data_source=data_source,
                               label_column=label_column, feature_columns=feature_columns, promote=True,
                               force=force, callbacks=callbacks, job_id=job_id, trigger=trigger,
                               hold_followups=hold_followups, promotion=own)
    config = fixed_params(params)
    dataset = load_dataset(settings.data_dir, data_source, label_column, feature_columns)
    check_params(config, dataset.feature_names, "params")  # XGBoost's own judgement, before any run exists
    registry = Registry(settings)
    client = registry.client
    experiment_id = ensure_experiment(client, settings, experiment_name)
    run = client.create_run(experiment_id, run_name=f"train-{time.strftime('%Y%m%d-%H%M%S')}",
                            tags={"seedcore.kind": "train", names.TAG_FINGERPRINT: dataset.fingerprint})
    run_id = run.info.run_id
    status = "FAILED"
    try:
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(config.items())])
        started = time.perf_counter()
        booster, final = train_booster(config, dataset, nthread=settings.local_cpus, callbacks=callbacks)
        training_time = time.perf_counter() - started
        _log_curve(client, run_id, final, training_time)
        validation = {names.AUC: final[names.AUC], names.LOGLOSS: final[names.LOGLOSS]}
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    candidate = Candidate(booster, config, dataset, validation, run_id, experiment_name, experiment_id=experiment_id)
    version = registry.register(candidate)
    outcome = (promotion.promote_or_report(version.version, force=force, dataset=dataset,
                                                          challenger=booster, experiment_name=experiment_name,
                                                          job_id=job_id, trigger=trigger)
                 if promote else {"status": PromotionStatus.SKIPPED, "reason": "promotion not requested",
                                  "version": int(version.version)})
    followups = FollowUps(settings, version.version, run_id, registry=registry, booster=booster, dataset=dataset)
    result = {"status": "success", "experiment_name": experiment_name, "model_version": int(version.version),
              "validation": validation, "holdout": candidate.holdout, "config": config,
              "best_iteration": final[BEST_ITERATION], "training_time": round(training_time, 4),
              "promotion": outcome, "mlflow": {"run_id": run_id, "tracking_uri": settings.tracking_uri},
              "dataset": dataset.describe(), RESULT_KEY: followups.describe()}
    if hold_followups is None:
        followups.start()
    else:
        hold_followups(followups)
    return result


def fixed_params(params: dict) -> dict:
    """The training config from `params`: constants only (a search space is a 400 naming the key)."""
    config = resolve_space(None, params, field="params")
    sampled = [key for key, value in config.items() if isinstance(value, Domain)]
    if sampled:
        raise ValidationError("train takes fixed values; use /xgboost/tune to search", field=f"params.{sampled[0]}")
    return config


def _log_curve(client, run_id: str, final: dict, training_time: float) -> None:
    ts = int(time.time() * 1000)
    metrics = [Metric(key, value, ts, step) for step, auc, logloss in final[CURVE]
               for key, value in ((names.AUC, auc), (names.LOGLOSS, logloss))]
    step = len(final[CURVE])
    metrics += [Metric("final_auc", final[names.AUC], ts, step), Metric("final_logloss", final[names.LOGLOSS], ts, step),
                Metric("final_training_time", training_time, ts, step)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])

"""A sweep's winner: refit (or the trial's own model), registered, promoted through the flywheel when asked,
its figures on the sweep's parent run. What the answer does not need is handed back as follow-ups."""

from __future__ import annotations

import time

from mlflow.entities import Metric, RunTag

from seedcore import names
from seedcore.config import REFIT_ALL_CPUS_ROWS, Settings
from seedcore.datasets import Dataset
from seedcore.promotion.service import PromotionService
from seedcore.vocabulary import PromotionStatus
from seedcore.promotion.model_logging import Candidate, booster_from
from seedcore.promotion.registry import Registry
from seedcore.promotion.followups import FollowUps
from seedcore.tuning.mlflow_callback import MLflowTrialLogger
from seedcore.tuning.objectives import measured_metrics, meets
from seedcore.tuning.plan import SweepPlan
from seedcore.tuning.checkpoints import checkpoint_bytes
from seedcore.tuning.trainable import BEST_ITERATION, TRAINING_TIME, measure_costs, refit_booster

TRAIN_ROWS = "train_rows"  # rows the registered model was trained on: a tag of its run and of its version


def register_and_promote(registry: Registry, plan: SweepPlan, dataset: Dataset, best, logger: MLflowTrialLogger,
                         experiment_id: str, promotion: PromotionService, job_id: str | None = None,
                         trigger: str | None = None, front: list[dict] | None = None) -> dict:
    """The answer's parts (best trial, promotion, version, holdout, refit) and its `followups`, not started
    (a multi-objective sweep's Pareto `front` among them). The registered version goes to `promotion` when the
    request asks for it, with the job and trigger."""
    trial_id = best.metrics["trial_id"]
    child_run_id, parent = logger.run_ids[trial_id], logger.parent_run_id
    booster, refit = final_booster(plan, dataset, best, refit_threads(registry.settings, dataset))
    validation = {names.AUC: float(best.metrics[names.AUC]), names.LOGLOSS: float(best.metrics[names.LOGLOSS])}
    candidate = Candidate(booster, dict(best.config), dataset, validation, child_run_id, plan.request.experiment_name,
                          trial_id, tags={TRAIN_ROWS: refit["train_rows"]}, experiment_id=experiment_id)
    version = registry.register(candidate)
    if plan.request.promote:
        outcome = promotion.promote_or_report(
            version.version, force=plan.request.force, dataset=dataset, challenger=booster,
            experiment_name=plan.request.experiment_name, job_id=job_id, trigger=trigger)
    else:
        outcome = {"status": PromotionStatus.SKIPPED, "reason": "promotion not requested", "version": int(version.version)}
    ts = int(time.time() * 1000)
    registry.client.log_batch(parent, metrics=[
        Metric("best_validation_auc", validation[names.AUC], ts, 0),
        Metric("best_validation_logloss", validation[names.LOGLOSS], ts, 0),
        Metric("holdout_auc", candidate.holdout[names.AUC], ts, 0),
        Metric("holdout_logloss", candidate.holdout[names.LOGLOSS], ts, 0),
    ], tags=[RunTag("seedcore.best_trial_id", trial_id), RunTag("seedcore.best_run_id", child_run_id),
             RunTag("seedcore.model_version", str(version.version)),
             RunTag("seedcore.promotion", outcome["status"])])
    best_trial = {"trial_id": trial_id, "auc": validation[names.AUC], "logloss": validation[names.LOGLOSS],
                  "training_time": round(float(best.metrics[TRAINING_TIME]), 4), "config": dict(best.config),
                  "best_iteration": int(best.metrics[BEST_ITERATION]), "run_id": child_run_id}
    followups = FollowUps(registry.settings, version.version, parent, registry=registry, booster=booster,
                          dataset=dataset, parent_run_id=parent, trials=logger.trial_summaries(), front=front,
                          objectives=[o.describe() for o in plan.objectives])
    return {"best_trial": best_trial, "promotion": outcome, "model_version": int(version.version),
            "holdout": dict(candidate.holdout), "refit": refit, "followups": followups}


def refit_threads(settings: Settings, dataset: Dataset) -> int:
    """XGBoost threads for the refit: every CPU the trials had (Settings.local_cpus) on REFIT_ALL_CPUS_ROWS rows or
    more, a trial's below. Either gives the same model (XGBoost's hist: the same predictions, checked on flights).
    On flights' 262k rows (200 rounds, depth 9) two threads took 7 s against 12 s on one, idle machine; on small data
    more threads cost more than they bring (569 rows, 20 rounds, both CPUs busy: 0.10 s on one, 0.65 s on two)."""
    rows = len(dataset.y_train) + len(dataset.y_valid)
    return settings.local_cpus if rows >= REFIT_ALL_CPUS_ROWS else settings.cpus_per_trial  # >= 1 by its field


def final_booster(plan: SweepPlan, dataset: Dataset, best, nthread: int) -> tuple:
    """The model to register: the winner's config refit on training + validation rows with the rounds
    it earned (best_iteration + 1) on `nthread` threads, or, with `refit: false`, the trial's own booster (with its
    checkpoint's bytes: registered and blessed without serialising it again)."""
    if not plan.request.refit:
        return booster_from(checkpoint_bytes(best.checkpoint)), {"enabled": False, "train_rows": len(dataset.y_train)}
    rounds = int(best.metrics[BEST_ITERATION]) + 1
    booster = refit_booster(dict(best.config), dataset, rounds, nthread=nthread)
    measure = measured_metrics((), plan.selection)
    costs = {**best.metrics, **measure_costs(booster, dataset.x_valid, measure)}
    if not meets(costs, plan.selection):  # more rows can grow the trees past a size or latency bound
        return booster_from(checkpoint_bytes(best.checkpoint)), {
            "enabled": False, "train_rows": len(dataset.y_train),
            "reason": f"the refit model breaks the constraints ({ {m: costs[m] for m in measure} }); "
                      "registered the trial's own model"}
    return booster, {"enabled": True, "train_rows": len(dataset.y_train) + len(dataset.y_valid), "rounds": rounds}

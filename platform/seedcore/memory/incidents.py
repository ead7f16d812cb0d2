"""What the platform remembers of its own events: sweeps, promotions, refreshes, as flashbulb incidents."""

from __future__ import annotations

import time

from seedcore.memory import salience
from seedcore.memory.store import IncidentStore
from seedcore.db.tables_memory import (MODEL_PROMOTED, MODEL_PROMOTION_REJECTED, MODEL_REFRESHED,
                                    MODEL_TUNING_COMPLETED, MODEL_TUNING_FAILED)
from seedcore.names import AUC
from seedcore.vocabulary import PromotionStatus


def record_sweep_completed(store: IncidentStore, result: dict, job_id: str | None = None) -> dict:
    """The tuning-completed incident (the guide's payload); the promotion recorded its own incident."""
    best, promotion = result["best_trial"], result["promotion"]
    champion = (promotion.get("champion") or {}).get(AUC)
    holdout_auc = result["holdout"][AUC]
    payload = {
        "event_type": MODEL_TUNING_COMPLETED, "timestamp": time.time(), "outcome": "success",
        "experiment_name": result["experiment_name"], "job_id": job_id,
        "best_model_path": promotion.get("blessed_path"),
        "metric_achieved": {"auc": best["auc"], "logloss": best["logloss"]},
        "holdout": result["holdout"], "best_params": best["config"], "best_trial_id": best["trial_id"],
        "model_version": result["model_version"], "promotion_status": promotion["status"],
        "champion_auc": champion, "trials": result["trials"], "mlflow": result["mlflow"],
    }
    score = salience.tuning_completed(holdout_auc, champion)
    return store.record(MODEL_TUNING_COMPLETED, "success", score, {**payload, "salience": score},
                        experiment_name=result["experiment_name"], model_version=result["model_version"])


def record_promotion(store: IncidentStore, promotion: dict, experiment_name: str | None = None,
                     job_id: str | None = None, trigger: str | None = None, extra: dict | None = None) -> dict:
    """model_promoted or model_promotion_rejected, salience by the AUC gain over the champion; `extra` keys
    join the payload (the energy ledger as of the promotion: seedcore.organism.energy).

    Recorded by the flywheel, the one promotion path, as part of each promotion it decides.
    """
    challenger = promotion["challenger"][AUC]
    champion = (promotion.get("champion") or {}).get(AUC)
    if promotion["status"] == PromotionStatus.SUCCESS:
        event, outcome, score = MODEL_PROMOTED, PromotionStatus.SUCCESS, salience.model_promoted(challenger, champion)
    else:
        event, outcome, score = MODEL_PROMOTION_REJECTED, PromotionStatus.REJECTED, salience.promotion_rejected(challenger, champion)
    payload = {"event_type": event, "timestamp": time.time(), "outcome": outcome, **promotion,
               "job_id": job_id, "trigger": trigger, **(extra or {}), "salience": score}
    return store.record(event, outcome, score, payload, experiment_name=experiment_name,
                        model_version=promotion.get("version"))


def record_sweep_failed(store: IncidentStore, experiment_name: str, error: str, job_id: str | None = None,
                        cancelled: bool = False) -> dict:
    """A failed (or cancelled) sweep; production experiments weigh more."""
    score = salience.tuning_failed(production=salience.looks_production(experiment_name))
    outcome = "cancelled" if cancelled else "failure"
    payload = {"event_type": MODEL_TUNING_FAILED, "timestamp": time.time(), "outcome": outcome,
               "experiment_name": experiment_name, "error": error, "job_id": job_id, "salience": score}
    return store.record(MODEL_TUNING_FAILED, outcome, score, payload, experiment_name=experiment_name)


def record_refresh(store: IncidentStore, version: int, previous: int | None, model_name: str | None = None,
                   pid: int | None = None) -> dict:
    """model_refreshed: `POST /xgboost/refresh_model` swapped the served model from `previous` to `version`.

    Recorded by the request that swapped; a refresh that found the version already served records nothing.
    """
    score = salience.model_refreshed()
    payload = {"event_type": MODEL_REFRESHED, "timestamp": time.time(), "outcome": "success",
               "model_name": model_name, "model_version": version, "previous_version": previous, "pid": pid,
               "salience": score}
    return store.record(MODEL_REFRESHED, "success", score, payload, model_version=version)

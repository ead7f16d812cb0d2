"""Validate a registered version on labelled data: scores, a calibration table, stored in SQL and MLflow."""

from __future__ import annotations

import time

import numpy as np
from mlflow.entities import Metric, RunTag
from sqlalchemy import select

from seedcore import names
from seedcore.config import Settings
from seedcore.datasets import load_dataset
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import ModelEvaluation, new_id
from seedcore.errors import DataError, NotFoundError
from seedcore.scoring import log_loss, roc_auc

EVALUATION_EXPERIMENT = "seedcore_evaluations"
TAG_MODEL_NAME, TAG_MODEL_VERSION, TAG_EVALUATION = "seedcore.model_name", "seedcore.model_version", "seedcore.evaluation_id"
CALIBRATION_BINS = 10


def scores(y: np.ndarray, prob: np.ndarray) -> dict:
    """AUC, logloss, Brier score, accuracy at 0.5, positive rate (of the labels), mean prediction, rows."""
    auc = roc_auc(y, prob)
    return {names.AUC: None if auc != auc else auc, names.LOGLOSS: log_loss(y, prob),
            "brier": float(np.mean((prob - y) ** 2)), "accuracy": float(np.mean((prob >= 0.5) == (y > 0.5))),
            "positive_rate": float(np.mean(y)), "mean_prediction": float(np.mean(prob)), "rows": int(len(y))}


def calibration_table(y: np.ndarray, prob: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Equal-width probability bins: rows, mean predicted probability, observed positive rate."""
    index = np.minimum((prob * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        table.append({"lower": b / bins, "upper": (b + 1) / bins, "rows": n,
                      "mean_predicted": float(prob[mask].mean()) if n else None,
                      "observed_rate": float(y[mask].mean()) if n else None})
    return table


def evaluate_version(settings: Settings, db: Database, data_source: str | None, label_column: str | None = None,
                     feature_columns: list[str] | None = None, version: int | None = None) -> dict:
    """Score `version` (default: production) on every row of the data; store it and log an MLflow run."""
    from seedcore.promotion.registry import Registry, ensure_experiment

    registry = Registry(settings)
    mv = registry.get_version(version) if version is not None else registry.production_version()
    if mv is None:
        raise NotFoundError(f"no version of {settings.model_name} is in production; name a version", field="version")
    described = registry.describe(mv)
    features = feature_columns or described["feature_names"] or None
    dataset = load_dataset(settings.data_dir, data_source, label_column, features,  # the one data validation
                           max_columns=settings.max_features)
    booster = registry.load_booster(mv)
    if booster.num_features() != len(dataset.feature_names):
        raise DataError(f"version {mv.version} takes {booster.num_features()} features, the data gives "
                        f"{len(dataset.feature_names)}", field="feature_columns")
    x = np.concatenate([dataset.x_train, dataset.x_valid, dataset.x_holdout])
    y = np.concatenate([dataset.y_train, dataset.y_valid, dataset.y_holdout]).astype(np.float64)
    prob = booster.inplace_predict(x).astype(np.float64)
    result = {"id": new_id(), "model_name": settings.model_name, "model_version": int(mv.version),
              "data_source": dataset.source, "label_column": dataset.label_column,
              "feature_names": list(dataset.feature_names), "metrics": scores(y, prob),
              "calibration": calibration_table(y, prob), "holdout": described["holdout"]}
    experiment = ensure_experiment(registry.client, settings, EVALUATION_EXPERIMENT)
    result["mlflow_run_id"] = _log_run(registry.client, experiment, result)
    _store(db, result)
    return result


def _log_run(client, experiment_id: str, result: dict) -> str:
    """A finished run carrying the scores, tagged with the model version it judged."""
    tags = {TAG_MODEL_NAME: result["model_name"], TAG_MODEL_VERSION: str(result["model_version"]),
            TAG_EVALUATION: result["id"], "seedcore.kind": "evaluation"}
    run = client.create_run(experiment_id, run_name=f"evaluate-v{result['model_version']}", tags=tags)
    run_id, ts = run.info.run_id, int(time.time() * 1000)
    status = "FAILED"
    try:
        metrics = [Metric(k, float(v), ts, 0) for k, v in result["metrics"].items() if v is not None]
        client.log_batch(run_id, metrics=metrics, tags=[RunTag("seedcore.data_source", result["data_source"][:5000])])
        client.log_dict(run_id, result["calibration"], "calibration.json")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)
    return run_id


def _store(db: Database, result: dict) -> None:
    with db.session() as session:
        session.add(ModelEvaluation(id=result["id"], model_name=result["model_name"],
                                    model_version=result["model_version"], created_at=utcnow(),
                                    data_source=result["data_source"], rows=result["metrics"]["rows"],
                                    metrics=result["metrics"], calibration=result["calibration"],
                                    mlflow_run_id=result["mlflow_run_id"]))


def latest_evaluation(db: Database, model_name: str, version: int) -> dict | None:
    """The newest stored evaluation of the version, or None."""
    with db.session() as session:
        row = session.scalar(select(ModelEvaluation).where(ModelEvaluation.model_name == model_name,
                                                           ModelEvaluation.model_version == int(version))
                             .order_by(ModelEvaluation.created_at.desc()).limit(1))
        return None if row is None else row.to_dict()

"""The MLflow Model Registry side: experiments, registering winners (logged by seedcore.promotion.model_logging),
reading versions back. Putting one into production is seedcore.promotion.production."""

from __future__ import annotations

import hashlib
import json
import logging
import time

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from seedcore import names
from seedcore._xgboost import xgb
from seedcore.config import Settings
from seedcore.datasets import Dataset, load_dataset
from seedcore.errors import NotFoundError, RegistryUnavailableError, ValidationError
from seedcore.promotion.model_logging import Candidate, log_candidate
from seedcore.promotion.version_tags import (T_DATA_SOURCE, T_EXPERIMENT, T_FEATURES, T_FINGERPRINT, T_HOLDOUT_AUC,
                                             T_HOLDOUT_LOGLOSS, T_LABEL, T_PARAMS, T_PROMOTED_AT, T_SOURCE_RUN,
                                             T_TRAINED_AT, T_TRIAL, T_VALID_AUC, T_VALID_LOGLOSS)
from seedcore.runtime import logs
from seedcore.runtime.store_health import first_line, mlflow_file_problem

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow's fluent API and a client at our tracking and registry stores."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def experiment_dir(name: str) -> str:
    """The artifact directory of an experiment: a hash of its name, never the name itself.

    A name is caller text: `../../x` would escape the artifact root and `exp#frag` or `exp?q=1` would
    lose their tail in a file URI (and share a directory with `exp`).
    """
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def ensure_experiment(client: MlflowClient, settings: Settings, name: str) -> str:
    """The experiment's id, creating it (artifacts under our mlruns dir) if new."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        if EXPERIMENT_KIND_TAG not in (found.tags or {}):  # made elsewhere (mlflow.set_experiment, older us)
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return found.experiment_id
    # A local store keeps artifacts under our mlruns dir; a tracking server decides for itself.
    local = settings.tracking_uri.startswith("sqlite:")
    location = f"{settings.artifact_root}/{experiment_dir(name)}" if local else None
    try:
        return client.create_experiment(name, artifact_location=location,
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException as exc:  # created meanwhile by another process, or the store refuses writes
        found = client.get_experiment_by_name(name)
        if found is None:
            raise unavailable(exc) from exc
        return found.experiment_id


class Registry:
    """Versions of the registered model: register, describe, load, promote."""

    def __init__(self, settings: Settings, client: MlflowClient | None = None):
        self.settings = settings
        self.name = settings.model_name
        self._client = client

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, opened on first use: a store that cannot be opened (corrupt, gone) is a
        RegistryUnavailableError then, never a failure to construct whatever holds this registry."""
        if self._client is None:
            try:
                self._client = configure_mlflow(self.settings)
            except (MlflowException, SQLAlchemyError, OSError) as exc:
                raise unavailable(exc) from exc
            mlflow_file_problem(self.settings)  # notes the store file as seen, so its loss is noticed later
        return self._client

    # -- reading -------------------------------------------------------------------------------
    def production_version(self):
        """The version behind alias `production`, or None if nothing was promoted yet."""
        try:
            return self.client.get_model_version_by_alias(self.name, names.PRODUCTION_ALIAS)
        except MlflowException as exc:
            if _is_not_found(exc):
                return None
            raise unavailable(exc) from exc
        except SQLAlchemyError as exc:
            raise unavailable(exc) from exc

    def get_version(self, version: int | str):
        try:
            return self.client.get_model_version(self.name, str(int(version)))
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"version must be an integer, got {version!r}", field="version") from exc
        except MlflowException as exc:
            if _is_not_found(exc):
                raise NotFoundError(f"{self.name} has no version {version}", field="version") from exc
            raise unavailable(exc) from exc
        except SQLAlchemyError as exc:
            raise unavailable(exc) from exc

    def load_booster(self, mv) -> xgb.Booster:
        return mlflow.xgboost.load_model(f"models:/{self.name}/{mv.version}")

    def list_versions(self, limit: int = 20, offset: int = 0) -> dict:
        """Versions newest first, each described as `describe` does."""
        try:
            versions = self.client.search_model_versions(f"name = '{self.name}'", max_results=10_000)
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise unavailable(exc) from exc
            versions = []
        except SQLAlchemyError as exc:
            raise unavailable(exc) from exc
        versions = sorted(versions, key=lambda v: int(v.version), reverse=True)
        page = [self.client.get_model_version(self.name, v.version) for v in versions[offset: offset + limit]]
        return {"items": [self.describe(v) for v in page], "total": len(versions), "limit": limit, "offset": offset}

    def describe(self, mv) -> dict:
        """Everything a user wants to know about a version, from its registry tags."""
        tags = mv.tags or {}
        return {
            "name": mv.name,
            "version": int(mv.version),
            "aliases": list(mv.aliases or []),
            "stage": mv.current_stage,
            "source_run_id": mv.run_id,
            "source": mv.source,
            "experiment_name": tags.get(T_EXPERIMENT),
            "trial_id": tags.get(T_TRIAL),
            "metrics": {
                names.AUC: _float(tags.get(T_HOLDOUT_AUC)),
                names.LOGLOSS: _float(tags.get(T_HOLDOUT_LOGLOSS)),
            },
            "validation": {names.AUC: _float(tags.get(T_VALID_AUC)), names.LOGLOSS: _float(tags.get(T_VALID_LOGLOSS))},
            "holdout": {names.AUC: _float(tags.get(T_HOLDOUT_AUC)), names.LOGLOSS: _float(tags.get(T_HOLDOUT_LOGLOSS))},
            "hyperparameters": json.loads(tags.get(T_PARAMS, "{}")),
            "feature_names": json.loads(tags.get(T_FEATURES, "[]")),
            "dataset": {"source": tags.get(T_DATA_SOURCE), "label_column": tags.get(T_LABEL),
                        "fingerprint": tags.get(T_FINGERPRINT)},
            "trained_at": tags.get(T_TRAINED_AT),
            "promoted_at": tags.get(T_PROMOTED_AT),
            "created_at": _iso(mv.creation_timestamp / 1000.0),
        }

    # -- writing -------------------------------------------------------------------------------
    def register(self, candidate: Candidate):
        """Log the booster once into its source run and register it as a new version.

        Only what answering needs: the version's pictures and description come after (seedcore.promotion.followups).
        """
        ds = candidate.dataset
        info = log_candidate(self.client, candidate)
        tags = {
            T_HOLDOUT_AUC: candidate.holdout[names.AUC], T_HOLDOUT_LOGLOSS: candidate.holdout[names.LOGLOSS],
            T_VALID_AUC: candidate.validation[names.AUC], T_VALID_LOGLOSS: candidate.validation[names.LOGLOSS],
            T_SOURCE_RUN: candidate.run_id, T_TRIAL: candidate.trial_id, T_EXPERIMENT: candidate.experiment_name,
            T_DATA_SOURCE: ds.source, T_LABEL: ds.label_column, T_FEATURES: json.dumps(list(ds.feature_names)),
            T_FINGERPRINT: ds.fingerprint, T_PARAMS: json.dumps(candidate.params, sort_keys=True, default=str),
            T_TRAINED_AT: _iso(time.time()), **candidate.tags,
        }
        mv = mlflow.register_model(info.model_uri, self.name, tags={k: str(v) for k, v in tags.items()})
        logs.model_registered(self.name, mv.version, candidate.run_id, candidate.holdout[names.AUC])
        return mv  # as created, tags included

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        """`metrics` on a run, stamped now, in one batch: a reader sees all of them or none."""
        stamp = int(time.time() * 1000)
        if metrics:
            self.client.log_batch(run_id, metrics=[Metric(key, float(value), stamp, 0) for key, value in metrics.items()])

    def dataset_of(self, mv) -> Dataset:
        """Reload the version's dataset; the fixed-seed split gives the same holdout."""
        tags = mv.tags or {}
        features = json.loads(tags.get(T_FEATURES, "[]")) or None
        return load_dataset(self.settings.data_dir, tags.get(T_DATA_SOURCE), tags.get(T_LABEL), features)

def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def unavailable(exc: BaseException) -> RegistryUnavailableError:
    """Our 503 for a failing MLflow store, its message cut to the driver's first line (no SQL text)."""
    message = exc.message if isinstance(exc, MlflowException) else str(exc)
    return RegistryUnavailableError(f"model registry unavailable: {first_line(message)}")


def _float(value) -> float | None:
    return None if value in (None, "") else float(value)


def _iso(ts: float) -> str:
    return pd.Timestamp(ts, unit="s", tz="UTC").isoformat()

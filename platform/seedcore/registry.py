"""The MLflow Model Registry side: log and register winners, the champion gate, promotion."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sqlalchemy.exc import SQLAlchemyError

from seedcore import blessed, logs, model_card, names, plots
from seedcore.config import Settings
from seedcore.data import Dataset, load_dataset
from seedcore.errors import NotFoundError, RegistryUnavailableError, ValidationError
from seedcore.metrics import evaluate
from seedcore.stores import first_line, mlflow_file_problem

# A logged model's requirements, pinned to what runs here (distribution name: its module). MLflow's own
# inference spawns a subprocess and costs seconds.
_PINNED = {"mlflow": mlflow, "xgboost": xgb, "pandas": pd, "numpy": np}
_PIP_REQUIREMENTS = [f"{name}=={module.__version__}" for name, module in _PINNED.items()]

# Tags on each registered version; model_info and the champion gate read them back.
T_HOLDOUT_AUC, T_HOLDOUT_LOGLOSS = "holdout_auc", "holdout_logloss"
T_VALID_AUC, T_VALID_LOGLOSS = "validation_auc", "validation_logloss"
T_SOURCE_RUN, T_TRIAL, T_EXPERIMENT = "source_run_id", "trial_id", "experiment_name"
T_DATA_SOURCE, T_LABEL, T_FEATURES, T_FINGERPRINT = "data_source", "label_column", "feature_names", "dataset_fingerprint"
T_PARAMS, T_TRAINED_AT, T_PROMOTED_AT = "params", "trained_at", "promoted_at"
# MLflow's UI opens an experiment of this kind on its runs (not on the GenAI traces page).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


@dataclass
class Candidate:
    """A trained model on its way into the registry."""

    booster: xgb.Booster
    params: dict
    dataset: Dataset
    validation: dict
    run_id: str
    experiment_name: str
    trial_id: str = ""
    holdout: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reason: str


class ChampionGate:
    """Promote a challenger only if it beats the champion's holdout AUC by `min_delta`."""

    def __init__(self, min_delta: float = 0.0):
        self.min_delta = min_delta

    def decide(self, challenger_auc: float, champion_auc: float | None, force: bool = False) -> GateDecision:
        if force:
            return GateDecision(True, "forced")
        if champion_auc is None:
            return GateDecision(True, "no champion to beat")
        if challenger_auc > champion_auc + self.min_delta or (self.min_delta == 0 and challenger_auc == champion_auc == 1.0):
            return GateDecision(True, f"holdout AUC {challenger_auc:.6f} beats champion {champion_auc:.6f} "
                                      f"by more than min_delta {self.min_delta}")
        return GateDecision(False, f"holdout AUC {challenger_auc:.6f} does not beat champion {champion_auc:.6f} "
                                   f"by more than min_delta {self.min_delta}")


@functools.cache
def warm_model_logging() -> None:
    """Import matplotlib's drawing parts in the background, once per process, before the first model's plots."""
    threading.Thread(target=plots.warm, name="seedcore-plots-warmup", daemon=True).start()


def _map_pinned_packages() -> None:
    """Give MLflow the module-to-package map of our pinned requirements.

    log_model checks each pinned requirement against the installed version, and before that maps every
    module of every installed distribution to its package (2-3 s of CPU in this environment, taken from
    the trials). Our requirements are named by distribution and each is its own module, so their entries
    are the whole map that check needs. Models are logged only with _PIP_REQUIREMENTS in our processes.
    """
    from mlflow.utils import requirements_utils

    if requirements_utils._MODULES_TO_PACKAGES is None:
        requirements_utils._MODULES_TO_PACKAGES = {module.__name__: [name] for name, module in _PINNED.items()}


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
        self.gate = ChampionGate(settings.min_delta)

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
        """Log the booster once into its source run and register it as a new version."""
        ds = candidate.dataset
        if not candidate.holdout:
            candidate.holdout = evaluate(candidate.booster, ds.x_holdout, ds.y_holdout)
        # Declared as double, what `pd.read_csv` gives users; XGBoost turns it into float32 itself.
        example = pd.DataFrame(ds.x_holdout[:5].astype(np.float64), columns=list(ds.feature_names))
        signature = infer_signature(example, candidate.booster.inplace_predict(ds.x_holdout[:5]))
        # MLflow refuses to resume a run outside the process's active experiment (any code may have set it).
        mlflow.set_experiment(experiment_id=self.client.get_run(candidate.run_id).info.experiment_id)
        _map_pinned_packages()
        with mlflow.start_run(run_id=candidate.run_id):
            info = mlflow.xgboost.log_model(candidate.booster, name=names.MLFLOW_MODEL_ARTIFACT,
                                            signature=signature, input_example=example, model_format="ubj",
                                            pip_requirements=_PIP_REQUIREMENTS)
            mlflow.log_metrics({f"holdout_{k}": v for k, v in candidate.holdout.items()})
        tags = {
            T_HOLDOUT_AUC: candidate.holdout[names.AUC], T_HOLDOUT_LOGLOSS: candidate.holdout[names.LOGLOSS],
            T_VALID_AUC: candidate.validation[names.AUC], T_VALID_LOGLOSS: candidate.validation[names.LOGLOSS],
            T_SOURCE_RUN: candidate.run_id, T_TRIAL: candidate.trial_id, T_EXPERIMENT: candidate.experiment_name,
            T_DATA_SOURCE: ds.source, T_LABEL: ds.label_column, T_FEATURES: json.dumps(list(ds.feature_names)),
            T_FINGERPRINT: ds.fingerprint, T_PARAMS: json.dumps(candidate.params, sort_keys=True, default=str),
            T_TRAINED_AT: _iso(time.time()),
        }
        plots.log_model_plots(self.client, info.model_id, candidate.booster, ds.x_holdout, ds.y_holdout)
        tags = {k: str(v) for k, v in tags.items()}
        mv = mlflow.register_model(info.model_uri, self.name, tags=tags)
        model_card.write_description(self.client, self.name, mv.version, tags)
        logs.model_registered(self.name, mv.version, candidate.run_id, candidate.holdout[names.AUC])
        return self.client.get_model_version(self.name, mv.version)

    def promote(self, version: int | str, *, force: bool = False, dataset: Dataset | None = None,
                challenger: xgb.Booster | None = None) -> dict:
        """Champion gate, then blessed files + alias + stage, all or nothing. Returns the promotion record.

        The mechanism only: callers go through `seedcore.flywheel.Flywheel.promote`, which serialises
        promotions across processes, records the incident and tells serving. `challenger` is the
        version's booster when the caller has it in hand (it was just registered).
        """
        mv = self.get_version(version)
        champion_mv = self.production_version()
        if champion_mv is not None and champion_mv.version == mv.version and self._blessed_version() == int(mv.version):
            return {"status": "unchanged", "version": int(mv.version), "previous_version": int(mv.version),
                    "reason": f"version {mv.version} is already in production", **self._paths()}
        challenger = challenger or self.load_booster(mv)
        dataset = dataset or self.dataset_of(mv)
        challenger_scores = evaluate(challenger, dataset.x_holdout, dataset.y_holdout)
        champion_scores = self._champion_scores(champion_mv, dataset, exclude=mv.version)
        record = {
            "version": int(mv.version),
            "previous_version": int(champion_mv.version) if champion_mv else None,
            "challenger": challenger_scores,
            "champion": champion_scores,
            "min_delta": self.gate.min_delta,
        }
        decision = self.gate.decide(challenger_scores[names.AUC],
                                    champion_scores[names.AUC] if champion_scores else None, force)
        record["reason"] = decision.reason
        if not decision.accepted:
            result = {"status": "rejected", **record}
        else:
            result = {"status": "success", **record, **self._bless(mv, challenger, record, champion_mv)}
        model_card.write_description(self.client, self.name, mv.version, mv.tags or {}, result)
        return result

    def dataset_of(self, mv) -> Dataset:
        """Reload the version's dataset; the fixed-seed split gives the same holdout."""
        tags = mv.tags or {}
        features = json.loads(tags.get(T_FEATURES, "[]")) or None
        return load_dataset(self.settings.data_dir, tags.get(T_DATA_SOURCE), tags.get(T_LABEL), features)

    def _champion_scores(self, champion_mv, dataset: Dataset, exclude: str) -> dict | None:
        if champion_mv is None or champion_mv.version == exclude:
            return None
        champion = self.load_booster(champion_mv)
        if champion.num_features() != len(dataset.feature_names):
            return None  # trained on other features: it cannot be scored on this holdout
        return evaluate(champion, dataset.x_holdout, dataset.y_holdout)

    def _bless(self, mv, booster: xgb.Booster, record: dict, champion_mv) -> dict:
        """Blessed files first, then the registry; if the registry step fails, the files switch back."""
        promoted_at = _iso(time.time())
        metadata = {**self.describe(mv), "aliases": [names.PRODUCTION_ALIAS], "stage": names.PRODUCTION_STAGE,
                    "promoted_at": promoted_at, "promotion": record}
        try:
            switch = blessed.publish(self.settings.blessed_dir, int(mv.version), bytes(booster.save_raw("ubj")),
                                     metadata)
        except OSError as exc:
            raise blessed.BlessedFileError(f"cannot write the blessed model files ({exc}); nothing was promoted, "
                                           "the previous blessed files stay") from exc
        try:
            self._set_production(mv, champion_mv, promoted_at)
        except BaseException:
            switch.undo()
            raise
        blessed.prune(self.settings.blessed_dir, keep=self.settings.blessed_history)
        return {"source_path": _model_location(self, mv), **self._paths(), "alias": names.PRODUCTION_ALIAS,
                "stage": names.PRODUCTION_STAGE, "promoted_at": promoted_at}

    def _set_production(self, mv, champion_mv, promoted_at: str) -> None:
        """Alias, stage and tag; a failure part-way points the alias back at the champion."""
        try:
            self.client.set_registered_model_alias(self.name, names.PRODUCTION_ALIAS, mv.version)
            with warnings.catch_warnings():  # stages are deprecated in MLflow 3 but still shown in its UI
                warnings.simplefilter("ignore", FutureWarning)
                # Archived one by one: MLflow's archive_existing_versions=True fails on a PostgreSQL tracking
                # server (it compares the integer version column with the version string it was sent).
                for old in self.client.get_latest_versions(self.name, stages=[names.PRODUCTION_STAGE]):
                    if old.version != mv.version:
                        self.client.transition_model_version_stage(self.name, old.version, names.ARCHIVED_STAGE)
                self.client.transition_model_version_stage(self.name, mv.version, names.PRODUCTION_STAGE)
            self.client.set_model_version_tag(self.name, mv.version, T_PROMOTED_AT, promoted_at)
        except MlflowException as exc:
            self._restore_alias(champion_mv)
            raise unavailable(exc) from exc

    def _restore_alias(self, champion_mv) -> None:
        try:
            if champion_mv is None:
                self.client.delete_registered_model_alias(self.name, names.PRODUCTION_ALIAS)
            else:
                self.client.set_registered_model_alias(self.name, names.PRODUCTION_ALIAS, champion_mv.version)
        except MlflowException:
            pass  # the registry is failing: the alias most likely never moved

    def _blessed_version(self) -> int | None:
        """The version the verified blessed files hold, or None."""
        try:
            return blessed.read_blessed(self.settings.blessed_dir).version
        except (blessed.BlessedFileError, ValueError, TypeError):
            return None

    def _paths(self) -> dict:
        blessed_dir = self.settings.blessed_dir
        return {"blessed_path": str(blessed_dir / names.BLESSED_MODEL_FILE),
                "metadata_path": str(blessed_dir / names.METADATA_FILE)}


def _model_location(registry: Registry, mv) -> str:
    """Where the version's model files live: a local path when the artifact store is local."""
    try:
        uri = registry.client.get_model_version_download_uri(registry.name, mv.version)
    except MlflowException:
        return mv.source
    return urlparse(uri).path if uri.startswith("file:") else uri


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

"""The MLflow Model Registry side: register winners (logged by seedcore.model_logging), the champion gate,
promotion."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import mlflow
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from seedcore import blessed, logs, model_card, names
from seedcore.config import Settings
from seedcore.data import Dataset, load_dataset
from seedcore.errors import ConflictError, NotFoundError, RegistryUnavailableError, ValidationError
from seedcore.metrics import evaluate
from seedcore.model_logging import Candidate, holdout_scores, log_candidate
from seedcore.promotion_journal import (JOURNAL_ROLLED_BACK, JOURNAL_ROLLED_FORWARD, STEP_ALIAS, STEP_ARCHIVED,
                                        STEP_BLESSED, STEP_DESCRIBED, STEP_PREPARED, STEP_STAGE, STEP_TAGGED,
                                        JournalEntry)
from seedcore.stores import first_line, mlflow_file_problem

log = logging.getLogger(__name__)

# Tags on each registered version; model_info and the champion gate read them back.
T_HOLDOUT_AUC, T_HOLDOUT_LOGLOSS = "holdout_auc", "holdout_logloss"
T_VALID_AUC, T_VALID_LOGLOSS = "validation_auc", "validation_logloss"
T_SOURCE_RUN, T_TRIAL, T_EXPERIMENT = "source_run_id", "trial_id", "experiment_name"
T_DATA_SOURCE, T_LABEL, T_FEATURES, T_FINGERPRINT = "data_source", "label_column", "feature_names", "dataset_fingerprint"
T_PARAMS, T_TRAINED_AT, T_PROMOTED_AT = "params", "trained_at", "promoted_at"
# MLflow's UI opens an experiment of this kind on its runs (not on the GenAI traces page).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


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
        """Log the booster once into its source run and register it as a new version.

        Only what answering needs: the version's pictures and description come after (seedcore.tuning.followups).
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

    def promote(self, version: int | str, *, force: bool = False, dataset: Dataset | None = None,
                challenger: xgb.Booster | None = None, allow_schema_change: bool = False,
                journal: Callable[..., JournalEntry] | None = None) -> dict:
        """Champion gate, then blessed files + alias + stage, all or nothing. Returns the promotion record.

        The mechanism only: callers go through `seedcore.flywheel.Flywheel.promote`, which serialises
        promotions across processes, journals them, records the incident and tells serving. `challenger` is
        the version's booster when the caller has it in hand (it was just registered). A version trained on
        other features than production's is refused (409) unless `allow_schema_change`. `journal(**intent)`
        writes the promotion's journal row and returns its entry (seedcore.promotion_journal); without it
        nothing is journalled and a crash mid-promotion cannot be settled later.
        """
        mv = self.get_version(version)
        champion_mv = self.production_version()
        if (champion_mv is not None and champion_mv.version == mv.version
                and champion_mv.current_stage == names.PRODUCTION_STAGE and self._blessed_version() == int(mv.version)):
            return {"status": "unchanged", "version": int(mv.version), "previous_version": int(mv.version),
                    "reason": f"version {mv.version} is already in production", **self._paths()}
        schema_change = self.schema_change(mv, champion_mv)
        if schema_change is not None and not allow_schema_change:
            raise ConflictError(schema_change["message"] + "; promote with allow_schema_change: true "
                                "(seedcore promote --allow-schema-change) to replace it anyway",
                                field="allow_schema_change")
        challenger = challenger or self.load_booster(mv)
        dataset = dataset or self.dataset_of(mv)
        challenger_scores = holdout_scores(challenger, dataset)
        champion_scores = self._champion_scores(champion_mv, dataset, exclude=mv.version)
        record = {
            "version": int(mv.version),
            "previous_version": int(champion_mv.version) if champion_mv else None,
            "challenger": challenger_scores,
            "champion": champion_scores,
            "min_delta": self.gate.min_delta,
            "allow_schema_change": bool(allow_schema_change),
        }
        if schema_change is not None:
            record["schema_change"] = {k: v for k, v in schema_change.items() if k != "message"}
        decision = self.gate.decide(challenger_scores[names.AUC],
                                    champion_scores[names.AUC] if champion_scores else None, force)
        record["reason"] = decision.reason
        if not decision.accepted:
            result = {"status": "rejected", **record}
            model_card.write_description(self.client, self.name, mv.version, mv.tags or {}, result)
            return result
        return self._bless(mv, challenger, record, journal or JournalEntry.detached)

    def schema_change(self, mv, champion_mv) -> dict | None:
        """How `mv`'s feature names differ from the champion's (a message and the lists), None when they do not
        (or either is unknown). Order counts: XGBoost reads features by position."""
        if champion_mv is None or champion_mv.version == mv.version:
            return None
        new, old = _feature_names(mv), _feature_names(champion_mv)
        if new is None or old is None or new == old:
            return None
        added = [n for n in dict.fromkeys(new) if n not in old]
        removed = [n for n in dict.fromkeys(old) if n not in new]
        duplicated = sorted({n for n in new if new.count(n) > 1})
        parts = [f"added {added}" if added else "", f"removed {removed}" if removed else "",
                 f"duplicated {duplicated}" if duplicated else "",
                 "the same names in another order" if not (added or removed or duplicated) else ""]
        message = (f"version {mv.version} was trained on other features than production version "
                   f"{champion_mv.version}: {', '.join(p for p in parts if p)}")
        return {"message": message, "production_version": int(champion_mv.version), "production_features": old,
                "features": new, "added": added, "removed": removed, "duplicated": duplicated}

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

    def _bless(self, mv, booster: xgb.Booster, record: dict, journal: Callable[..., JournalEntry]) -> dict:
        """Journal the intent, then each step: blessed files, alias, stages, tag, description. A failure part-way
        undoes what was done (files first); a crash part-way is settled later from the journal (`settle`)."""
        link, version = self.settings.blessed_dir, int(mv.version)
        promoted_at = _iso(time.time())
        blessed.retire_legacy_directory(link)
        before = self._production_stage_versions()
        entry = journal(model_name=self.name, version=version, previous_version=record["previous_version"],
                        alias=names.PRODUCTION_ALIAS, stage=names.PRODUCTION_STAGE, blessed_link=link,
                        blessed_dir=blessed.directory_name(link, version),
                        previous_blessed_dir=blessed.current_target(link),
                        detail={"promoted_at": promoted_at, "stage_before": mv.current_stage,
                                "production_before": before, "record": record})
        record["promotion_id"] = entry.id
        metadata = {**self.describe(mv), "aliases": [names.PRODUCTION_ALIAS], "stage": names.PRODUCTION_STAGE,
                    "promoted_at": promoted_at, "promotion": record}
        try:
            try:
                blessed.prepare(link, entry.blessed_dir, bytes(booster.save_raw("ubj")), metadata)
                entry.step(STEP_PREPARED)
                blessed.switch_link(link, entry.blessed_dir)
            except OSError as exc:
                raise blessed.BlessedFileError(f"cannot write the blessed model files ({exc}); nothing was promoted, "
                                               "the previous blessed files stay") from exc
            entry.step(STEP_BLESSED)
            self._set_production(mv, promoted_at, entry)
        except BaseException:
            self._undo(entry)
            raise
        result = {"status": "success", **record, "source_path": _model_location(self, mv), **self._paths(),
                  "alias": names.PRODUCTION_ALIAS, "stage": names.PRODUCTION_STAGE, "promoted_at": promoted_at}
        model_card.write_description(self.client, self.name, mv.version, mv.tags or {}, result)
        entry.step(STEP_DESCRIBED)
        blessed.prune(link, keep=self.settings.blessed_history)
        return result

    def _set_production(self, mv, promoted_at: str, entry: JournalEntry) -> None:
        """Alias, the previous Production versions archived, this one's stage, its tag; journalled one by one.
        Each step may be repeated: settling an interrupted promotion runs this again."""
        try:
            self.client.set_registered_model_alias(self.name, names.PRODUCTION_ALIAS, mv.version)
            entry.step(STEP_ALIAS)
            with warnings.catch_warnings():  # stages are deprecated in MLflow 3 but still shown in its UI
                warnings.simplefilter("ignore", FutureWarning)
                # Archived one by one: MLflow's archive_existing_versions=True fails on a PostgreSQL tracking
                # server (it compares the integer version column with the version string it was sent).
                for old in self.client.get_latest_versions(self.name, stages=[names.PRODUCTION_STAGE]):
                    if old.version != mv.version:
                        self.client.transition_model_version_stage(self.name, old.version, names.ARCHIVED_STAGE)
                entry.step(STEP_ARCHIVED)
                self.client.transition_model_version_stage(self.name, mv.version, names.PRODUCTION_STAGE)
                entry.step(STEP_STAGE)
            self.client.set_model_version_tag(self.name, mv.version, T_PROMOTED_AT, promoted_at)
            entry.step(STEP_TAGGED)
        except MlflowException as exc:
            raise unavailable(exc) from exc

    def _undo(self, entry: JournalEntry) -> None:
        """Roll a failing promotion back; if the registry fails too, the open journal row settles it later."""
        try:
            self.roll_back(entry)
            entry.finish(JOURNAL_ROLLED_BACK)
        except Exception:  # noqa: BLE001 - the promotion's own error is the one to raise
            log.warning("promotion of %s version %s not rolled back yet; the next promotion settles it",
                        self.name, entry.version, exc_info=True)

    # -- settling a promotion a crash interrupted ------------------------------------------------
    def settle(self, entry: JournalEntry) -> str:
        """Make alias, stage and blessed files agree again after `entry`'s promotion was interrupted.

        Forward (JOURNAL_ROLLED_FORWARD) when its blessed link was switched to its directory, which holds the
        verified model of its version: every registry step is done again (each may be repeated). Back
        (JOURNAL_ROLLED_BACK) otherwise, or when its version is gone from the registry. The stores are read,
        not only the row: a step done just before the crash may not be journalled.
        """
        link = Path(entry.blessed_link)
        if blessed.current_target(link) == entry.blessed_dir and self._blessed_version() == entry.version:
            try:
                mv = self.get_version(entry.version)
            except NotFoundError:
                mv = None
            if mv is not None:
                self._set_production(mv, entry.detail.get("promoted_at") or _iso(time.time()), entry)
                record = {**entry.detail.get("record", {}), "status": "success", "recovered": True}
                model_card.write_description(self.client, self.name, mv.version, mv.tags or {}, record)
                entry.step(STEP_DESCRIBED)
                blessed.prune(link, keep=self.settings.blessed_history)
                return JOURNAL_ROLLED_FORWARD
        self.roll_back(entry)
        return JOURNAL_ROLLED_BACK

    def roll_back(self, entry: JournalEntry) -> None:
        """Undo what `entry`'s promotion changed, as far as it got: the blessed link first (so that a crash in
        here settles backwards again), then alias, then stages. Each part may be repeated."""
        blessed.restore(Path(entry.blessed_link), entry.blessed_dir, entry.previous_blessed_dir)
        try:
            self._restore_alias(entry)
            before = {int(v) for v in entry.detail.get("production_before", [])}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                for mv in self.client.get_latest_versions(self.name, stages=[names.PRODUCTION_STAGE]):
                    if int(mv.version) == entry.version and entry.version not in before:
                        stage = entry.detail.get("stage_before") or names.ARCHIVED_STAGE
                        self.client.transition_model_version_stage(self.name, mv.version, stage)
                for version in sorted(before):
                    if self._stage_of(version) not in (None, names.PRODUCTION_STAGE):
                        self.client.transition_model_version_stage(self.name, str(version), names.PRODUCTION_STAGE)
        except MlflowException as exc:
            raise unavailable(exc) from exc

    def _restore_alias(self, entry: JournalEntry) -> None:
        """Alias `production` back on the previous version (or removed, when there was none or it is gone)."""
        alias = self.production_version()
        previous = entry.previous_version
        if previous is not None and self._stage_of(previous) is not None:
            if alias is None or int(alias.version) != previous:
                self.client.set_registered_model_alias(self.name, names.PRODUCTION_ALIAS, str(previous))
        elif alias is not None and int(alias.version) == entry.version:
            self.client.delete_registered_model_alias(self.name, names.PRODUCTION_ALIAS)

    def _stage_of(self, version: int) -> str | None:
        """The version's stage, or None when the registry no longer has it."""
        try:
            return self.get_version(version).current_stage
        except NotFoundError:
            return None

    def _production_stage_versions(self) -> list[int]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return [int(v.version) for v in self.client.get_latest_versions(self.name, stages=[names.PRODUCTION_STAGE])]

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


def _feature_names(mv) -> list[str] | None:
    """The feature names a version was trained on, from its tag; None when it has none."""
    try:
        names_ = json.loads((mv.tags or {}).get(T_FEATURES) or "null")
    except ValueError:
        return None
    return [str(n) for n in names_] if isinstance(names_, list) and names_ else None


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

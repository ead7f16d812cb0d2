"""Putting a version into production, all or nothing: the champion gate, then blessed files, alias, stage
and tag, each step journalled (seedcore.promotion.journal); a promotion a crash interrupted is settled from
its journal row. The mechanism only: callers go through seedcore.promotion.service."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import pandas as pd
from mlflow.exceptions import MlflowException

from seedcore import names
from seedcore._xgboost import xgb
from seedcore.datasets import Dataset
from seedcore.errors import ConflictError, NotFoundError
from seedcore.promotion import blessed, model_card
from seedcore.promotion.gate import ChampionGate, schema_change
from seedcore.promotion.journal import (JOURNAL_ROLLED_BACK, JOURNAL_ROLLED_FORWARD, STEP_ALIAS, STEP_ARCHIVED,
                                        STEP_BLESSED, STEP_DESCRIBED, STEP_PREPARED, STEP_STAGE, STEP_TAGGED,
                                        JournalEntry)
from seedcore.promotion.model_logging import holdout_scores, model_bytes
from seedcore.promotion.registry import Registry, unavailable
from seedcore.promotion.version_tags import T_PROMOTED_AT
from seedcore.scoring import evaluate
from seedcore.vocabulary import PromotionStatus

log = logging.getLogger(__name__)


class Production:
    """The production slot of one registered model: alias `production`, stage Production, the blessed files."""

    def __init__(self, registry: Registry):
        self.registry, self.settings, self.name = registry, registry.settings, registry.name
        self.gate = ChampionGate(registry.settings.min_delta)

    @property
    def client(self):
        return self.registry.client

    def promote(self, version: int | str, *, force: bool = False, dataset: Dataset | None = None,
                challenger: xgb.Booster | None = None, allow_schema_change: bool = False,
                journal: Callable[..., JournalEntry] | None = None) -> dict:
        """Champion gate, then blessed files + alias + stage, all or nothing. Returns the promotion record.

        The mechanism only: callers go through `seedcore.promotion.service.PromotionService.promote`, which serialises
        promotions across processes, journals them, records the incident and tells serving. `challenger` is
        the version's booster when the caller has it in hand (it was just registered). A version trained on
        other features than production's is refused (409) unless `allow_schema_change`. `journal(**intent)`
        writes the promotion's journal row and returns its entry (seedcore.promotion.journal); without it
        nothing is journalled and a crash mid-promotion cannot be settled later.
        """
        mv = self.registry.get_version(version)
        champion_mv = self.registry.production_version()
        if (champion_mv is not None and champion_mv.version == mv.version
                and champion_mv.current_stage == names.PRODUCTION_STAGE and self._blessed_version() == int(mv.version)):
            return {"status": PromotionStatus.UNCHANGED, "version": int(mv.version), "previous_version": int(mv.version),
                    "reason": f"version {mv.version} is already in production", **self._paths()}
        change = schema_change(mv, champion_mv)
        if change is not None and not allow_schema_change:
            raise ConflictError(change["message"] + "; promote with allow_schema_change: true "
                                "(seedcore promote --allow-schema-change) to replace it anyway",
                                field="allow_schema_change")
        challenger = challenger or self.registry.load_booster(mv)
        dataset = dataset or self.registry.dataset_of(mv)
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
        if change is not None:
            record["schema_change"] = {k: v for k, v in change.items() if k != "message"}
        decision = self.gate.decide(challenger_scores[names.AUC],
                                    champion_scores[names.AUC] if champion_scores else None, force)
        record["reason"] = decision.reason
        if not decision.accepted:
            result = {"status": PromotionStatus.REJECTED, **record}
            model_card.write_description(self.client, self.name, mv.version, mv.tags or {}, result)
            return result
        return self._bless(mv, challenger, record, journal or JournalEntry.detached)

    def _champion_scores(self, champion_mv, dataset: Dataset, exclude: str) -> dict | None:
        if champion_mv is None or champion_mv.version == exclude:
            return None
        champion = self.registry.load_booster(champion_mv)
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
        metadata = {**self.registry.describe(mv), "aliases": [names.PRODUCTION_ALIAS], "stage": names.PRODUCTION_STAGE,
                    "promoted_at": promoted_at, "promotion": record}
        raw = model_bytes(booster)  # the bytes it was registered with: serialised once
        try:
            try:
                blessed.prepare(link, entry.blessed_dir, raw, metadata)
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
        result = {"status": PromotionStatus.SUCCESS, **record, "source_path": _model_location(self.registry, mv), **self._paths(),
                  "alias": names.PRODUCTION_ALIAS, "stage": names.PRODUCTION_STAGE, "promoted_at": promoted_at,
                  "model_bytes": len(raw)}
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
                mv = self.registry.get_version(entry.version)
            except NotFoundError:
                mv = None
            if mv is not None:
                self._set_production(mv, entry.detail.get("promoted_at") or _iso(time.time()), entry)
                record = {**entry.detail.get("record", {}), "status": PromotionStatus.SUCCESS, "recovered": True}
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
        alias = self.registry.production_version()
        previous = entry.previous_version
        if previous is not None and self._stage_of(previous) is not None:
            if alias is None or int(alias.version) != previous:
                self.client.set_registered_model_alias(self.name, names.PRODUCTION_ALIAS, str(previous))
        elif alias is not None and int(alias.version) == entry.version:
            self.client.delete_registered_model_alias(self.name, names.PRODUCTION_ALIAS)

    def _stage_of(self, version: int) -> str | None:
        """The version's stage, or None when the registry no longer has it."""
        try:
            return self.registry.get_version(version).current_stage
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


def _model_location(registry: Registry, mv) -> str:
    """Where the version's model files live: a local path when the artifact store is local."""
    try:
        uri = registry.client.get_model_version_download_uri(registry.name, mv.version)
    except MlflowException:
        return mv.source
    return urlparse(uri).path if uri.startswith("file:") else uri


def _iso(ts: float) -> str:
    return pd.Timestamp(ts, unit="s", tz="UTC").isoformat()

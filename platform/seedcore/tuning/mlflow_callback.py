"""A Ray Tune callback that records a sweep in MLflow: one child run per trial under the parent run."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from ray.tune import Callback

from seedcore import names
from seedcore.tuning.trainable import BEST_ITERATION, CURVE, DONE_TRAINING, TRAINING_TIME

log = logging.getLogger(__name__)
_MAX_BATCH = 1000  # MLflow's limit of entries in one log_batch call
_PARAM_LIMIT = 6000


class TrialOutcome:
    COMPLETED, PRUNED, ERRORED, KILLED = "completed", "pruned", "errored", "killed"


class MLflowTrialLogger(Callback):
    """Child run per trial: params, per-round curves (step = round), final metrics and status.

    Metrics are buffered and written with `log_batch` when a trial ends, so a sweep costs a few
    round trips per trial instead of one per metric.
    """

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str,
                 on_progress: Callable[[dict], None] | None = None, total_trials: int = 0):
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.on_progress = on_progress
        self.total_trials = total_trials
        self.run_ids: dict[str, str] = {}
        self.buffers: dict[str, list[Metric]] = {}
        self.last_results: dict[str, dict] = {}
        self.outcomes: dict[str, str] = {}
        self.best_auc: float | None = None
        self._lock = threading.Lock()

    def __getstate__(self):
        # Tune pickles its callbacks into the experiment state; the live client stays here.
        return {k: v for k, v in self.__dict__.items() if k not in ("client", "_lock", "on_progress")}

    # -- Tune hooks ---------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.run_ids:
            return
        run = self.client.create_run(self.experiment_id, run_name=trial.trial_id, tags={
            names.TAG_PARENT_RUN: self.parent_run_id, names.TAG_TRIAL_ID: trial.trial_id})
        self.run_ids[trial.trial_id] = run.info.run_id
        self.buffers[trial.trial_id] = []
        params = [Param(k, _param_value(v)) for k, v in sorted(trial.config.items())]
        self.client.log_batch(run.info.run_id, params=params)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        buffer = self.buffers.setdefault(trial.trial_id, [])
        ts = int(time.time() * 1000)
        for step, auc, logloss in result.get(CURVE) or ():
            buffer.append(Metric(names.AUC, auc, ts, int(step)))
            buffer.append(Metric(names.LOGLOSS, logloss, ts, int(step)))
        self.last_results[trial.trial_id] = result

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = self.last_results.get(trial.trial_id, {})
        outcome = TrialOutcome.COMPLETED if last.get(DONE_TRAINING) else TrialOutcome.PRUNED
        self._finish(trial.trial_id, outcome, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial.trial_id, TrialOutcome.ERRORED, "FAILED", error=str(trial.error_file or "trial failed"))

    # -- ours ---------------------------------------------------------------------------------
    def close_open_runs(self, status: str = "KILLED") -> int:
        """End every child run still open (cancel, time budget, Ctrl-C, crash). Returns how many."""
        open_trials = [t for t in self.run_ids if t not in self.outcomes]
        for trial_id in open_trials:
            self._finish(trial_id, TrialOutcome.KILLED, status)
        return len(open_trials)

    def counts(self) -> dict[str, int]:
        counts = {o: 0 for o in (TrialOutcome.COMPLETED, TrialOutcome.PRUNED, TrialOutcome.ERRORED,
                                 TrialOutcome.KILLED)}
        for outcome in self.outcomes.values():
            counts[outcome] += 1
        return counts

    def _finish(self, trial_id: str, outcome: str, status: str, error: str | None = None) -> None:
        with self._lock:
            if trial_id in self.outcomes or trial_id not in self.run_ids:
                return
            self.outcomes[trial_id] = outcome
        run_id = self.run_ids[trial_id]
        last = self.last_results.get(trial_id, {})
        metrics = self.buffers.pop(trial_id, [])
        ts = int(time.time() * 1000)
        step = int(last.get(names.ROUND, 0))
        if outcome == TrialOutcome.COMPLETED:
            for key in (BEST_ITERATION, TRAINING_TIME):
                metrics.append(Metric(f"final_{key}", float(last[key]), ts, step))
            for key in (names.AUC, names.LOGLOSS):
                metrics.append(Metric(f"final_{key}", float(last[key]), ts, step))
        tags = [RunTag(names.TAG_PRUNED, str(outcome == TrialOutcome.PRUNED).lower()),
                RunTag("seedcore.outcome", outcome)]
        if error:
            tags.append(RunTag("seedcore.error", error[:5000]))
        try:
            for start in range(0, max(len(metrics), 1), _MAX_BATCH):
                self.client.log_batch(run_id, metrics=metrics[start:start + _MAX_BATCH],
                                      tags=tags if start == 0 else [])
        finally:
            self.client.set_terminated(run_id, status)
        if outcome == TrialOutcome.COMPLETED:
            auc = float(last[names.AUC])
            self.best_auc = auc if self.best_auc is None else max(self.best_auc, auc)
        self.report_progress()

    def report_progress(self) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress({"trials_done": len(self.outcomes), "trials_total": self.total_trials,
                              "best_auc": self.best_auc, "parent_run_id": self.parent_run_id, **self.counts()})
        except Exception:  # progress display must never break a sweep
            log.exception("progress callback failed")


def _param_value(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:_PARAM_LIMIT]

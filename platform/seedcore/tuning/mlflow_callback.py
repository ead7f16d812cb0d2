"""A Ray Tune callback that records a sweep in MLflow: one child run per trial under the parent run."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from ray import cloudpickle
from ray.tune import Callback

from seedcore import names
from seedcore.tuning.checkpoints import recorded_curve
from seedcore.tuning.cluster import TAG_NODE
from seedcore.tuning.mlflow_writer import Newest, Writer
from seedcore.tuning.trainable import BEST_ITERATION, CURVE, DONE_TRAINING, EARLIER_CURVE, NODE_ID, TRAINING_TIME

log = logging.getLogger(__name__)
_MAX_BATCH = 1000  # MLflow's limit of entries in one log_batch call
_PARAM_LIMIT = 6000
_NAME_PARAMS = (("eta", "eta"), ("max_depth", "depth"))  # the parameters a trial's run name shows
TAG_RETRIES = "seedcore.retries"  # on a trial's run: how often Tune retried it after its worker or node died
TAG_RESUMED_AT = "seedcore.resumed_at_round"  # on a trial's run: the last round of the checkpoint it went on from


class TrialOutcome:
    COMPLETED, PRUNED, ERRORED, KILLED = "completed", "pruned", "errored", "killed"
    ALL = (COMPLETED, PRUNED, ERRORED, KILLED)


class MLflowTrialLogger(Callback):
    """Child run per trial: params, per-round curves (step = round), final metrics and status. A trial Tune
    retries (its worker or node died) goes on in the same run, tagged with its retry count: from its last
    checkpoint, whose rounds it sends once; the rounds it reports replace the ones of the attempt that died.
    A run a dead driver left open (a resumed sweep's, `half_written`) gets only the rounds it does not hold.

    Tune's control loop only buffers; a writer thread creates runs and sends each trial's curve
    with `log_batch` when it ends, so MLflow round trips never hold up trial scheduling.
    """

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str,
                 on_progress: Callable[[dict], None] | None = None, total_trials: int = 0,
                 cancel_event: threading.Event | None = None):
        self.client = client
        self.cancel_event = cancel_event
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.on_progress = on_progress
        self.total_trials = total_trials
        self.run_ids: dict[str, str] = {}  # filled by the writer thread
        self.started: set[str] = set()
        self.buffers: dict[str, list[Metric]] = {}
        self.last_results: dict[str, dict] = {}
        self.outcomes: dict[str, str] = {}
        self.numbered: dict[str, tuple[int, dict]] = {}  # trial id -> (its number in this sweep, its config)
        self.best_auc: float | None = None
        self.waiting = 0  # trials waiting for free cluster resources
        self.retries: dict[str, int] = {}  # trial id -> times Tune retried it
        self.restarting: set[str] = set()  # retried trials whose first report of the new attempt is due
        self.half_written: set[str] = set()  # trials whose run a dead driver left open: it may hold part of a curve
        self._tried: set[str] = set()  # trials whose run the writer tried to create
        self._lock = threading.Lock()
        self._writer = Writer()
        self._progress = Newest(self._send_progress)

    def __getstate__(self):
        # Tune pickles its callbacks into the experiment state; live handles stay here.
        skip = ("client", "_lock", "on_progress", "_writer", "_progress", "cancel_event", "_tried")
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    # -- Tune hooks (Tune's control loop: no I/O here) ----------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.started:
            return
        self.started.add(trial.trial_id)
        self.buffers[trial.trial_id] = []
        self.numbered[trial.trial_id] = (len(self.started), dict(trial.config))
        name = run_name(len(self.started), trial.config)
        self._writer.submit(self._create_run, trial.trial_id, name, dict(trial.config))

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Tune retries the trial (its worker or node died): the same run goes on, tagged with the count."""
        count = self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
        self.restarting.add(trial.trial_id)
        self._writer.submit(self._tag_run, trial.trial_id, TAG_RETRIES, str(count))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.record(trial.trial_id, result)

    def record(self, trial_id: str, result: dict) -> None:
        """Buffer a report's rounds (written when the trial ends) and keep it as the trial's last result."""
        buffer = self.buffers.setdefault(trial_id, [])
        # An attempt that went on from a checkpoint sends the checkpoint's rounds once, in its first report.
        curve = [*(result.get(EARLIER_CURVE) or ()), *(result.get(CURVE) or ())]
        if (trial_id in self.restarting or EARLIER_CURVE in result) and curve:
            self.restarting.discard(trial_id)  # the new attempt's rounds replace the old attempt's
            first = int(min(step for step, _, _ in curve))
            buffer[:] = [m for m in buffer if m.step < first]
        if result.get(EARLIER_CURVE):
            self._writer.submit(self._tag_run, trial_id, TAG_RESUMED_AT, str(int(result[EARLIER_CURVE][-1][0])))
        ts = int(time.time() * 1000)
        for step, auc, logloss in curve:
            buffer.append(Metric(names.AUC, auc, ts, int(step)))
            buffer.append(Metric(names.LOGLOSS, logloss, ts, int(step)))
        self.last_results[trial_id] = result

    def on_step_end(self, iteration, trials, **info):
        # Trials Tune created but could not start: the cluster has no free resources for them now.
        waiting = sum(1 for t in trials if t.status == t.PENDING)
        if waiting != self.waiting:
            self.waiting = waiting
            self.report_progress()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.complete(trial.trial_id)

    def complete(self, trial_id: str) -> None:
        """The trial ended without an error: completed, pruned, or killed (a cancelled sweep)."""
        if self.last_results.get(trial_id, {}).get(DONE_TRAINING):
            self._finish(trial_id, TrialOutcome.COMPLETED, "FINISHED")
        elif self.cancel_event is not None and self.cancel_event.is_set():
            # Tune reports trials its stopper ended as complete; a cancelled sweep's trials were killed.
            self._finish(trial_id, TrialOutcome.KILLED, "KILLED")
        else:
            self._finish(trial_id, TrialOutcome.PRUNED, "FINISHED")

    def complete_ended(self, trial_id: str, result) -> None:
        """A trial that ended before this process (a resumed sweep's) and whose run is open: ended as the Tune
        result kept with the experiment says, with the curve its final checkpoint holds (the rounds the dead
        process buffered died with it; the run's half_written rounds are not written twice)."""
        curve = recorded_curve(result.checkpoint) if result.checkpoint else []
        self.record(trial_id, {**result.metrics, CURVE: curve})
        self.complete(trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial.trial_id, TrialOutcome.ERRORED, "FAILED", error=trial_error_text(trial))

    # -- ours ---------------------------------------------------------------------------------
    def close_open_runs(self, status: str = "KILLED") -> int:
        """End every child run still open (cancel, time budget, Ctrl-C, crash); wait for all writes."""
        open_trials = [t for t in self.started if t not in self.outcomes]
        for trial_id in open_trials:
            self._finish(trial_id, TrialOutcome.KILLED, status)
        self._writer.drain()
        return len(open_trials)

    def close(self) -> None:
        self._writer.close()
        self._progress.close()

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(TrialOutcome.ALL, 0)
        for outcome in self.outcomes.values():
            counts[outcome] += 1
        return counts

    def trial_summaries(self) -> list[dict]:
        """Each started trial: number, params, final validation AUC (completed trials only), outcome."""
        summaries = []
        for trial_id, (number, config) in sorted(self.numbered.items(), key=lambda kv: kv[1][0]):
            outcome = self.outcomes.get(trial_id)
            last = self.last_results.get(trial_id, {})
            auc = float(last[names.AUC]) if outcome == TrialOutcome.COMPLETED else None
            summaries.append({"number": number, "params": config, "auc": auc, "outcome": outcome})
        return summaries

    def report_progress(self) -> None:
        """Hand the sweep's progress to the caller's callback, from a thread of its own (it writes SQL)."""
        if self.on_progress is not None:
            self._progress.put({"trials_done": len(self.outcomes), "trials_total": self.total_trials,
                                "best_auc": self.best_auc, "parent_run_id": self.parent_run_id, **self.counts(),
                                "trials_waiting": self.waiting, "waiting_reason": self._waiting_reason()})

    def _send_progress(self, progress: dict) -> None:
        try:
            self.on_progress(progress)
        except Exception:  # progress display must never break a sweep
            log.exception("progress callback failed")

    def _waiting_reason(self) -> str | None:
        if not self.waiting:
            return None
        return f"{self.waiting} trial(s) waiting for free CPUs on the Ray cluster (all busy with other trials or jobs)"

    def _finish(self, trial_id: str, outcome: str, status: str, error: str | None = None) -> None:
        with self._lock:
            if trial_id in self.outcomes or trial_id not in self.started:
                return
            self.outcomes[trial_id] = outcome
        last = self.last_results.get(trial_id, {})
        metrics = self.buffers.pop(trial_id, [])
        ts = int(time.time() * 1000)
        if outcome == TrialOutcome.COMPLETED:
            # Step 0: MLflow's UI draws a single value at step >= 1 as a one-dot line chart.
            for key in (names.AUC, names.LOGLOSS, BEST_ITERATION, TRAINING_TIME):
                metrics.append(Metric(f"final_{key}", float(last[key]), ts, 0))
            auc = float(last[names.AUC])
            self.best_auc = auc if self.best_auc is None else max(self.best_auc, auc)
        tags = [RunTag(names.TAG_PRUNED, str(outcome == TrialOutcome.PRUNED).lower()),
                RunTag("seedcore.outcome", outcome), RunTag(TAG_RETRIES, str(self.retries.get(trial_id, 0)))]
        if error:
            tags.append(RunTag("seedcore.error", error[:5000]))
        if last.get(NODE_ID):
            tags.append(RunTag(TAG_NODE, str(last[NODE_ID])))
        self._writer.submit(self._end_run, trial_id, metrics, tags, status)
        self.report_progress()

    # -- the writer thread's work -------------------------------------------------------------
    def _create_run(self, trial_id: str, name: str, config: dict) -> None:
        run = self._made_before(trial_id) if trial_id in self._tried else None
        self._tried.add(trial_id)
        run = run or self.client.create_run(self.experiment_id, run_name=name, tags={
            names.TAG_PARENT_RUN: self.parent_run_id, names.TAG_TRIAL_ID: trial_id})
        self.run_ids[trial_id] = run.info.run_id
        params = [Param(k, _param_value(v)) for k, v in sorted(config.items())]
        self.client.log_batch(run.info.run_id, params=params)

    def _made_before(self, trial_id: str):
        """The trial's run, if an earlier attempt made it although its answer was lost (the write is retried)."""
        found = self.client.search_runs([self.experiment_id], max_results=1, filter_string=(
            f"tags.`{names.TAG_PARENT_RUN}` = '{self.parent_run_id}' and tags.`{names.TAG_TRIAL_ID}` = '{trial_id}'"))
        return found[0] if found else None

    def _tag_run(self, trial_id: str, key: str, value: str) -> None:
        self.client.set_tag(self.run_ids[trial_id], key, value)

    def _end_run(self, trial_id: str, metrics: list[Metric], tags: list[RunTag], status: str) -> None:
        run_id = self.run_ids[trial_id]
        if trial_id in self.half_written:  # a dead driver's writer may have stopped between two batches
            logged = {(key, m.step) for key in {m.key for m in metrics}
                      for m in self.client.get_metric_history(run_id, key)}
            metrics = [m for m in metrics if (m.key, m.step) not in logged]
        try:
            for start in range(0, max(len(metrics), 1), _MAX_BATCH):
                self.client.log_batch(run_id, metrics=metrics[start:start + _MAX_BATCH],
                                      tags=tags if start == 0 else [])
        finally:
            self.client.set_terminated(run_id, status)


def _param_value(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:_PARAM_LIMIT]


def run_name(number: int, config: dict) -> str:
    """A trial run's name a person can read in MLflow's table: `trial-007 eta=0.12 depth=5`."""
    shown = [f"{label}={config[key]:.3g}" for key, label in _NAME_PARAMS
             if isinstance(config.get(key), (int, float)) and not isinstance(config.get(key), bool)]
    return " ".join([f"trial-{number:03d}", *shown])


def trial_error_text(trial) -> str:
    """A failed trial's own exception as text; Ray wraps it and keeps it in files beside the trial."""
    try:  # the driver's own copy: the trial's storage may not have it yet
        with open(trial.pickled_error_file, "rb") as f:
            error = cloudpickle.load(f)
    except Exception:  # none pickled (an unpicklable error): the last line of Ray's text of it
        return _last_line(trial.error_file)
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {str(cause).strip()}"


def _last_line(path: str | None) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, TypeError):
        return "trial failed"
    return lines[-1] if lines else "trial failed"

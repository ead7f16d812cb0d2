"""What a job does, by kind: a sweep (`tune`) or one training run with fixed parameters (`train`).

The runner owns the queue and the lifecycle; this module owns the work: checking a request before it is
queued, and running a claimed job under the caps every job shares (cancel, time budget).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from seedcore.config import Settings
from seedcore.db.stored_json import check_request_json
from seedcore.db.tables_jobs import KIND_TRAIN, KIND_TUNE
from seedcore.errors import BudgetError, SweepCancelledError
from seedcore.request_models import TrainRequest, TuneRequest

REQUEST_MODELS = {KIND_TUNE: TuneRequest, KIND_TRAIN: TrainRequest}
CANCEL_CHECK_S = 1.0  # how often a training run asks the database whether someone cancelled it


def check(settings: Settings, request: TuneRequest | TrainRequest, kind: str) -> int:
    """Everything that can be checked before a job is queued (400s); returns the job's trials_total."""
    check_request_json(settings, request)  # what is stored must be served back by /tune/jobs and /status
    if kind == KIND_TRAIN:
        from seedcore.tuning.params_check import check_request_params
        from seedcore.tuning.single import fixed_params

        check_request_params(settings, request, fixed_params(request.params), "params")  # the data, dry run
        trials = 1
    else:
        from seedcore.tuning.plan import plan_sweep

        trials = plan_sweep(settings, request).tune.num_samples  # checks the data and the space too
    return trials


def load_request(job: dict) -> TuneRequest | TrainRequest:
    """The job's stored request, as the model of its kind."""
    return REQUEST_MODELS[job["kind"]].model_validate(job["request"])


def execute(settings: Settings, job: dict, cancel: threading.Event, progress: Callable[[dict], None],
            cancel_requested: Callable[[], bool], hold_followups: Callable[[Any], None] | None = None) -> dict:
    """Run a claimed job to its result; SweepCancelledError when cancelled, our errors otherwise. Its
    follow-ups (seedcore.tuning.followups) go to `hold_followups` when given, else start at once."""
    request = load_request(job)
    if job["kind"] == KIND_TRAIN:
        result = _train(settings, request, cancel, cancel_requested, job["id"], job.get("trigger"), hold_followups)
        progress({"trials_done": 1, "trials_total": 1, "best_auc": result["validation"]["auc"]})
        return result
    from seedcore.tuning.sweep import run_sweep

    return run_sweep(settings, request, progress=progress, cancel_event=cancel, job_id=job["id"],
                     trigger=job.get("trigger"), hold_followups=hold_followups)


def _train(settings: Settings, request: TrainRequest, cancel: threading.Event,
           cancel_requested: Callable[[], bool], job_id: str, trigger: str | None,
           hold_followups: Callable[[Any], None] | None) -> dict:
    from seedcore.tuning.single import train_model

    limit = _TrainingLimit(cancel, settings.max_time_budget_s, cancel_requested)
    return train_model(settings, request.params, experiment_name=request.experiment_name,
                       data_source=request.data_source, label_column=request.label_column,
                       feature_columns=request.feature_columns, promote=request.promote, force=request.force,
                       callbacks=[limit.callback()], job_id=job_id, trigger=trigger, hold_followups=hold_followups)


class _TrainingLimit:
    """Stops a training run between rounds when it is cancelled or over the sweeps' time cap."""

    def __init__(self, cancel: threading.Event, budget_s: float, cancel_requested: Callable[[], bool]):
        self.cancel, self.budget_s, self.cancel_requested = cancel, budget_s, cancel_requested
        self.started = self.last_check = time.monotonic()

    def check(self) -> None:
        now = time.monotonic()
        if now - self.last_check >= CANCEL_CHECK_S:
            self.last_check = now
            if self.cancel_requested():
                self.cancel.set()
        if self.cancel.is_set():
            raise SweepCancelledError("the training was cancelled; nothing was registered")
        if now - self.started > self.budget_s:
            raise BudgetError(f"training ran past the time cap of {self.budget_s:g} s (SEEDCORE_MAX_TIME_BUDGET_S); "
                              "ask for fewer rounds", field="params.num_boost_round")

    def callback(self) -> Any:
        import xgboost as xgb

        limit = self

        class StopTraining(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log) -> bool:
                limit.check()
                return False

        return StopTraining()

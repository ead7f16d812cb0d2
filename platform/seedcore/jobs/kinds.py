"""What a job does, by kind: a sweep (`tune`) or one training run with fixed parameters (`train`).

Each kind is one object: its request model, the checks before it is queued, the work once claimed, and
what flashbulb memory keeps of its end. The runner owns the queue and the lifecycle and names no kind:

    kind = KINDS[job["kind"]]
    result = kind.execute(JobContext(settings, job, cancel, progress, cancel_requested, held.append, promotion))

Adding a kind is one more `JobKind` in KINDS (and its name in the jobs table's vocabulary).

Whatever watches every job whatever its kind (the energy ledger's meter, evolution's log) is a `JobWatcher`
the runner is built with: called with the job's context as it starts; what it returns is called with the
job's final state and its result (or error) once that end is recorded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

from seedcore.config import Settings
from seedcore.db.stored_json import check_request_json
from seedcore.db.tables_jobs import KIND_TRAIN, KIND_TUNE
from seedcore.errors import BudgetError, SweepCancelledError
from seedcore.jobs.store import INTERRUPTED
from seedcore.memory.incidents import record_sweep_completed, record_sweep_failed
from seedcore.memory.store import IncidentStore
from seedcore.promotion.service import PromotionService
from seedcore.request_models import TrainRequest, TuneRequest

CANCEL_CHECK_S = 1.0  # how often a training run asks the database whether someone cancelled it


@dataclass(frozen=True)
class JobContext:
    """What a claimed job is handed: its row, its cancel switch, where its progress and follow-ups go, and
    the process's promotion service (which records `job_id` and `trigger` with every promotion)."""

    settings: Settings
    job: dict
    cancel: threading.Event
    progress: Callable[[dict], None]
    cancel_requested: Callable[[], bool]
    hold_followups: Callable[[Any], None]
    promotion: PromotionService
    prepared: Any = None  # what `check` made when the job was queued in this process (a sweep's plan)

    @property
    def job_id(self) -> str:
        return self.job["id"]

    @property
    def trigger(self) -> str | None:
        return self.job.get("trigger")


JobEnd = Callable[[str, Any], None]  # (state, result or error), after the job's end is recorded
JobWatcher = Callable[[JobContext], "JobEnd | None"]  # called as a job starts; its errors never fail the job


@dataclass(frozen=True)
class Checked:
    """A request that passed its kind's checks: the trials it will run, and what the checks made that the
    run can use (a sweep's plan: a job is planned once, when it is queued)."""

    trials_total: int
    prepared: Any = None


class JobKind:
    """One kind of job. `check` runs before the job is queued (400s)."""

    name: str
    request_model: type[BaseModel]

    def check(self, settings: Settings, request: BaseModel) -> Checked:
        raise NotImplementedError

    def execute(self, context: JobContext) -> dict:
        """Run a claimed job to its result; SweepCancelledError when cancelled, our errors otherwise."""
        raise NotImplementedError

    def remember(self, incidents: IncidentStore, job: dict, succeeded: bool, cancelled: bool, outcome: Any) -> None:
        """Write what flashbulb memory keeps of the job's end (nothing by default)."""

    def why_not_resumed(self, settings: Settings, job: dict) -> str | None:
        """Why a job of this kind whose process died cannot go on in another (None: it can, `execute` resumes
        it); by default it cannot, and is marked failed ("interrupted")."""
        return INTERRUPTED

    def load_request(self, job: dict) -> BaseModel:
        """The job's stored request, as this kind's model."""
        return self.request_model.model_validate(job["request"])


class TuneKind(JobKind):
    """A sweep: planned (data, space, budget) before it is queued; its winner registered and promoted."""

    name, request_model = KIND_TUNE, TuneRequest

    def check(self, settings: Settings, request: TuneRequest) -> Checked:
        from seedcore.tuning.plan import plan_sweep  # loaded when first used: Ray Tune and MLflow cost seconds to import

        check_request_json(settings, request)  # what is stored must be served back by /tune/jobs and /status
        plan = plan_sweep(settings, request)  # checks the data and the space too
        return Checked(plan.tune.num_samples, plan)

    def execute(self, context: JobContext) -> dict:
        from seedcore.tuning.sweep import run_sweep  # loaded when first used: Ray Tune and MLflow cost seconds to import

        return run_sweep(context.settings, self.load_request(context.job), progress=context.progress,
                         cancel_event=context.cancel, job_id=context.job_id, trigger=context.trigger,
                         hold_followups=context.hold_followups, promotion=context.promotion, plan=context.prepared)

    def why_not_resumed(self, settings: Settings, job: dict) -> str | None:
        from seedcore.tuning.resume import why_not  # loaded when first used: Ray Tune costs seconds to import

        reason = why_not(settings, job["id"])  # a sweep goes on from its Tune storage unless that is gone
        return None if reason is None else f"{INTERRUPTED}; cannot resume: {reason}"

    def remember(self, incidents: IncidentStore, job: dict, succeeded: bool, cancelled: bool, outcome: Any) -> None:
        if succeeded:
            record_sweep_completed(incidents, outcome, job["id"])  # the promotion service recorded the promotion
        else:
            record_sweep_failed(incidents, job["experiment_name"], outcome.message, job["id"], cancelled=cancelled)


class TrainKind(JobKind):
    """One training run with fixed parameters, under the sweeps' cancel and time caps."""

    name, request_model = KIND_TRAIN, TrainRequest

    def check(self, settings: Settings, request: TrainRequest) -> Checked:
        from seedcore.tuning.params_check import check_request_params  # loaded when first used: Ray Tune and MLflow cost seconds to import
        from seedcore.tuning.single import fixed_params

        check_request_json(settings, request)
        check_request_params(settings, request, fixed_params(request.params), "params")  # the data, dry run
        return Checked(1)

    def execute(self, context: JobContext) -> dict:
        from seedcore.tuning.single import train_model  # loaded when first used: Ray Tune and MLflow cost seconds to import

        request = self.load_request(context.job)
        limit = _TrainingLimit(context.cancel, context.settings.max_time_budget_s, context.cancel_requested)
        result = train_model(context.settings, request.params, experiment_name=request.experiment_name,
                             data_source=request.data_source, label_column=request.label_column,
                             feature_columns=request.feature_columns, promote=request.promote, force=request.force,
                             callbacks=[limit.callback()], job_id=context.job_id, trigger=context.trigger,
                             hold_followups=context.hold_followups, promotion=context.promotion)
        context.progress({"trials_done": 1, "trials_total": 1, "best_auc": result["validation"]["auc"]})
        return result


KINDS: dict[str, JobKind] = {kind.name: kind for kind in (TuneKind(), TrainKind())}


def kind_of(request: BaseModel) -> JobKind:
    """The kind whose request model `request` is."""
    for kind in KINDS.values():
        if type(request) is kind.request_model:
            return kind
    raise TypeError(f"no job kind takes a {type(request).__name__}")


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

"""The sweep runner: validate, load data once, tune on Ray, record in MLflow, register, promote; then the
follow-ups (pictures, description, drift reference) after the answer."""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
import uuid
from typing import Callable

from mlflow.entities import Param
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from seedcore import names

from seedcore.runtime import logs
from seedcore.config import Settings
from seedcore.datasets import Dataset, load_dataset
from seedcore.errors import SweepCancelledError, SweepFailedError, ValidationError
from seedcore.promotion.plots import warm_in_background
from seedcore.request_models import SweepRequest
from seedcore.promotion.registry import Registry, ensure_experiment
from seedcore.promotion.service import PromotionService
from seedcore.tuning.cluster import (alive_nodes, check_trial_fits, cluster_cpus, cluster_tags, ensure_ray,
                                    trials_ended, tune_storage)
from seedcore.promotion.followups import RESULT_KEY, FollowUps
from seedcore.tuning.mlflow_callback import MLflowTrialLogger
from seedcore.tuning.objectives import PER_ROUND, Selection, measured_metrics, pareto_front, select_point
from seedcore.tuning.records import log_front, log_warm_start, match_point, trial_points
from seedcore.tuning.plan import SweepPlan, plan_sweep, tune_settings
from seedcore.tuning.resume import close_orphans, experiment_name, find, restore
from seedcore.tuning.search import build_searcher
from seedcore.tuning.warmstart import WarmStart, gather
from seedcore.vocabulary import SearchAlgorithm
from seedcore.tuning.spaces import describe_space
from seedcore.tuning.trainable import REPORT_INTERVAL_S, TrialData, asha_rungs, train_xgb
from seedcore.tuning.trials_over import TrialsOver, fit
from seedcore.tuning.winner import register_and_promote

log = logging.getLogger(__name__)
# Tune's own result files are off (our callback logs to MLflow); its analysis complains it cannot find them.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
Progress = Callable[[dict], None]
_REGISTRY_LOCK = threading.Lock()


def prepare_sweep(settings: Settings, request: SweepRequest | None = None) -> None:
    """The cold work of a first sweep that needs no Ray, done ahead: MLflow's store and the experiment,
    the plots' imports, the searcher's library. A command starting Ray runs it in a thread
    meanwhile, a server once its Ray is up (no request: nothing is created, only loaded); run_sweep then
    finds it done (each step is idempotent)."""
    alg = SearchAlgorithm.TPE
    if request is not None:
        ensure_experiment(Registry(settings).client, settings, request.experiment_name)
        alg = tune_settings(settings, request).search_alg
    warm_in_background()
    build_searcher(alg, seed=0, metric=names.AUC, mode="max", max_concurrent=1)  # imports Optuna for tpe, qmc


def run_sweep(settings: Settings, request: SweepRequest | None = None, *, progress: Progress | None = None,
              cancel_event: threading.Event | None = None, job_id: str | None = None, trigger: str | None = None,
              hold_followups: Callable[[FollowUps], None] | None = None,
              promotion: PromotionService | None = None, plan: SweepPlan | None = None, **fields) -> dict:
    """Run one sweep end to end and return the guide's result shape plus ours.

    Raises ValidationError/DataError before any trial starts, SweepFailedError when no trial
    finished, SweepCancelledError when cancelled. No MLflow run is left RUNNING in any case.
    The follow-ups (seedcore.promotion.followups) start as it returns, or go to `hold_followups` to start
    later (the job runner starts them once the job's answer is recorded). The winner is promoted through
    `promotion` (the process's service; one of its own, closed after, when none is handed in). `plan` is the
    request's plan when it was made already (a job's, when it was queued in this process).
    """
    request = request or SweepRequest(**fields)
    if promotion is None:
        with PromotionService.opened(settings) as own:
            return run_sweep(settings, request, progress=progress, cancel_event=cancel_event, job_id=job_id,
                             trigger=trigger, hold_followups=hold_followups, promotion=own, plan=plan)
    plan = plan if plan is not None else plan_sweep(settings, request)  # a job's was made when it was queued
    dataset = load_dataset(settings.data_dir, request.data_source, request.label_column, request.feature_columns)
    ensure_ray(settings)
    warm_in_background()  # the follow-ups' pictures: imports overlap with the trials
    registry = Registry(settings)
    experiment_id = ensure_experiment(registry.client, settings, request.experiment_name)
    first = plan.objectives[0]
    warm = gather(registry, request.warm_start, dataset, plan.space, plan.tune.search_alg, first.metric, first.mode,
                  plan.tune.num_samples)
    started = time.time()
    resumed = find(registry, settings, job_id)  # the job's sweep, interrupted when its process died
    parent = resumed.parent_run_id if resumed else _start_parent(registry, experiment_id, plan, dataset, job_id,
                                                                 trigger)
    logs.sweep_started(request.experiment_name, plan.tune.num_samples, job_id)
    cancel_event = cancel_event or threading.Event()
    logger = MLflowTrialLogger(registry.client, experiment_id, parent, progress, plan.tune.num_samples,
                               cancel_event=cancel_event)
    if resumed:
        resumed.seed(logger)
    logger.report_progress()
    status = "FAILED"
    try:
        grid = _tune(settings, plan, dataset, logger, cancel_event, warm, job_id, resumed is not None)
        logger.close_open_runs("KILLED")  # trials cut short by the time budget
        if cancel_event.is_set():
            status = "KILLED"
            raise SweepCancelledError("the sweep was cancelled; its runs are KILLED and nothing was promoted")
        extras = _record_search(registry, parent, plan, warm, grid, logger)
        best = _chosen_result(grid, logger, plan, extras["points"])
        if best is None:  # the sweep itself went well: its runs end FINISHED, nothing is registered
            status = "FINISHED"
            registry.client.set_tag(parent, "seedcore.selection", "no trial meets the constraints")
            raise ValidationError(_unmet(plan.selection, extras["points"]), field="select")
        outcome = register_and_promote(registry, plan, dataset, best, logger, experiment_id, promotion, job_id,
                                       trigger)
        status = "FINISHED"
    except BaseException:  # Ctrl-C, or failing while stopping (Ray shut down under it): cancelled
        if status == "FAILED" and (cancel_event.is_set() or not isinstance(sys.exc_info()[1], Exception)):
            status = "KILLED"
        raise
    finally:
        logger.close_open_runs("KILLED" if status == "KILLED" else "FAILED")
        logger.close()
        registry.client.set_terminated(parent, status)
        logs.sweep_ended(request.experiment_name, status, logger.counts(), logger.best_auc,
                         time.time() - started, job_id)
    counts = logger.counts()
    followups = outcome["followups"]
    result = {
        "status": "success",
        "experiment_name": request.experiment_name,
        "best_trial": outcome["best_trial"],
        "promotion": outcome["promotion"],
        "total_trials": len(grid),
        "experiment_path": grid.experiment_path,
        "model_version": outcome["model_version"],
        "holdout": outcome["holdout"],
        "mlflow": {"experiment_id": experiment_id, "parent_run_id": parent, "tracking_uri": settings.tracking_uri},
        "trials": {"total": len(grid), **counts},
        "dataset": dataset.describe(),
        "tune_config": plan.tune.as_dict(),
        "warm_start": warm.describe() | {"seeded_trials": extras["seeded_trials"]},
        "objectives": [{"metric": o.metric, "mode": o.mode} for o in plan.objectives],
        "select": plan.selection.describe(),
        "refit": outcome["refit"],
        **({"pareto_front": extras["front"]} if len(plan.objectives) > 1 else {}),
        RESULT_KEY: followups.describe(),
        "duration_s": round(time.time() - started, 3),
        "resumed": resumed.count if resumed else 0,
    }
    if hold_followups is None:
        followups.start()
    else:
        hold_followups(followups)
    return result


def _start_parent(registry: Registry, experiment_id: str, plan: SweepPlan, dataset: Dataset, job_id,
                  trigger: str | None = None) -> str:
    request = plan.request
    tags = {names.TAG_SWEEP: "true", names.TAG_FINGERPRINT: dataset.fingerprint,
            "seedcore.space_type": str(request.space_type if request.custom_search_space is None else "custom"),
            "seedcore.config_type": str(request.config_type)}
    if job_id:
        tags[names.TAG_JOB_ID] = job_id
    if trigger:
        tags[names.TAG_TRIGGER] = trigger
    tags.update(cluster_tags())
    run = registry.client.create_run(experiment_id, run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}", tags=tags)
    params = {f"tune.{k}": v for k, v in plan.tune.as_dict().items()}
    params.update({f"space.{k}": v for k, v in describe_space(plan.space).items()})
    params.update({"data.source": dataset.source, "data.label_column": dataset.label_column,
                   "data.fingerprint": dataset.fingerprint, "data.rows": dataset.n_rows,
                   "data.features": ",".join(dataset.feature_names),
                   "objectives": json.dumps([[o.metric, o.mode] for o in plan.objectives]),
                   "select": json.dumps(plan.selection.describe()), "refit": request.refit})
    registry.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    return run.info.run_id


class _CancelStopper(tune.Stopper):
    def __init__(self, event: threading.Event):
        self.event = event

    def __getstate__(self):  # Tune pickles its stopper into the experiment state
        return {}

    def __setstate__(self, state):
        self.event = threading.Event()

    def __call__(self, trial_id, result) -> bool:
        return self.event.is_set()

    def stop_all(self) -> bool:
        return self.event.is_set()


def _tune(settings: Settings, plan: SweepPlan, dataset: Dataset, logger: MLflowTrialLogger,
          cancel_event: threading.Event, warm: WarmStart, job_id: str | None = None, resuming: bool = False):
    cpus = max(1, settings.cpus_per_trial)
    check_trial_fits(cpus)  # again: Ray may have started (or lost nodes) since the sweep was planned
    concurrent = max(1, min(plan.tune.max_concurrent_trials, cluster_cpus() // cpus))
    first = plan.objectives[0]
    # max_t one past the last round: ASHA stops a trial AT max_t, which would cut off its final report.
    grace, max_t = min(plan.tune.grace_period, plan.max_t), plan.max_t + 1
    rungs = asha_rungs(grace, plan.tune.reduction_factor, max_t)
    if first.metric in PER_ROUND:  # ASHA prunes on the first objective; a cost known only at the end cannot
        scheduler = _SeededRunsInFull(warm.rerun if warm.rewards else warm.points, time_attr=names.ROUND,
                                      max_t=max_t, grace_period=grace, reduction_factor=plan.tune.reduction_factor)
        interval = REPORT_INTERVAL_S
    else:
        # a cost known only at the end: no report before it, whatever a round takes (Tune requires the
        # first objective in every report, and the searcher reads it from each one)
        scheduler, rungs, interval = FIFOScheduler(), frozenset(), math.inf
    trainable = tune.with_parameters(train_xgb, data=TrialData.of(dataset), nthread=cpus, report_at=rungs,
                                     max_interval_s=interval, measure=measured_metrics(plan.objectives, plan.selection))
    trainable = tune.with_resources(trainable, {"cpu": cpus})
    search = build_searcher(plan.tune.search_alg, seed=plan.tune.seed, metric=first.metric, mode=first.mode,
                            max_concurrent=concurrent, warm=warm)
    over = TrialsOver(plan.tune.num_samples)
    storage = tune_storage(settings, str(settings.ray_results_dir))
    run_config = tune.RunConfig(name=experiment_name(job_id, plan.request.experiment_name), **storage,
                                callbacks=[logger, over], verbose=0, stop=_CancelStopper(cancel_event),
                                failure_config=tune.FailureConfig(max_failures=settings.max_failures))
    trainable = _register_trainable(trainable, job_id)
    if resuming:  # the job's experiment as its dead process left it; trials it never knew end as orphans
        grid = fit(restore(settings, job_id, trainable, run_config, storage), over, cancel_event, trials_ended)
        close_orphans(logger.client, logger, [r.metrics.get("trial_id") for r in grid])
        return grid
    tuner = tune.Tuner(
        trainable,
        param_space=plan.space,
        tune_config=tune.TuneConfig(metric=first.metric, mode=first.mode, scheduler=scheduler, search_alg=search,
                                    num_samples=plan.tune.num_samples, time_budget_s=plan.tune.time_budget_s,
                                    # on several nodes a reused actor keeps every trial on the node that
                                    # started first; a fresh actor per trial lets each free CPU take one
                                    reuse_actors=len(alive_nodes()) == 1),
        run_config=run_config,
    )
    return fit(tuner, over, cancel_event, on_end=trials_ended)  # the answer does not wait for Tune's shutdown


class _SeededRunsInFull(ASHAScheduler):
    """ASHA that never stops a trial re-running a seeded config: it runs to be measured in full (a good
    config at a low learning rate can trail at the early rungs). Its scores still inform the rungs."""

    def __init__(self, seeded: list[dict], **kwargs):
        super().__init__(**kwargs)
        self.seeded = list(seeded)

    def on_trial_result(self, tune_controller, trial, result):
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and self.seeded and match_point(trial.config, self.seeded) is not None:
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action


def _register_trainable(trainable, job_id: str | None = None) -> str:
    """Register this sweep's trainable (with its data) under a name of its own (its job's: a restored
    experiment must find the trainable under the name it was saved with).

    Tune's registry is keyed by the function's name per process and is not thread-safe, so two sweeps at
    once (max_concurrent_sweeps > 1) would overwrite each other's trainable or fail mid-registration.
    """
    name = f"{train_xgb.__name__}_{job_id or uuid.uuid4().hex[:12]}"
    with _REGISTRY_LOCK:
        tune.register_trainable(name, trainable)
    return name


def _record_search(registry: Registry, parent: str, plan: SweepPlan, warm: WarmStart, grid,
                   logger: MLflowTrialLogger) -> dict:
    """The points of the finished trials, the Pareto front (logged when several objectives) and the warm start."""
    points = trial_points(grid, plan.objectives)
    front = [{k: p[k] for k in ("trial_id", *(o.metric for o in plan.objectives))}
             for p in pareto_front(points, plan.objectives)] if points else []
    if len(plan.objectives) > 1 and front:
        log_front(registry.client, parent, front, plan.objectives)
    seeded = log_warm_start(registry.client, parent, warm, grid, logger.run_ids)
    return {"points": points, "front": front, "seeded_trials": seeded}


def _chosen_result(grid, logger: MLflowTrialLogger, plan: SweepPlan, points: list[dict]):
    """The trial to register by the request's objectives and rule; None when none meets the constraints."""
    if not points:
        counts = logger.counts()
        errors = [_trial_error(r.error) for r in grid if r.error is not None][:3]
        raise SweepFailedError(f"no trial finished ({counts}); first errors: {errors}")
    chosen = select_point(points, plan.objectives, plan.selection)
    if chosen is None:
        return None
    return next(r for r in grid if r.metrics and r.metrics.get("trial_id") == chosen["trial_id"])


def _unmet(selection: Selection, points: list[dict]) -> str:
    seen = "; ".join(f"{m}: {min(p[m] for p in points):g} to {max(p[m] for p in points):g}"
                     for m, _, _ in selection.constraints if all(m in p for p in points))
    return (f"no trial meets the constraints {selection.describe()} (the {len(points)} finished trials ranged "
            f"{seen or 'outside them'}); nothing was registered")


def _trial_error(error: BaseException) -> str:
    """What went wrong in a trial: the trainable's own exception (Ray wraps it; its first line is Ray's)."""
    cause = getattr(error, "cause", None) or error
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(cause).__name__}: {lines[0]}"[:300]

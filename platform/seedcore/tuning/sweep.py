"""The sweep runner: validate, load data once, open the sweep's MLflow parent run, run the trials on Ray Tune
(seedcore.tuning.tuner), choose the winner, register and promote it, answer; then the follow-ups (pictures,
description, drift reference, a multi-objective sweep's Pareto front) after the answer."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Callable

from mlflow.entities import Param

from seedcore import names

from seedcore.runtime import logs
from seedcore.config import Settings
from seedcore.datasets import Dataset, load_dataset
from seedcore.errors import SweepCancelledError, SweepFailedError, ValidationError
from seedcore.promotion.plots import log_front, warm_in_background
from seedcore.request_models import SweepRequest
from seedcore.promotion.registry import Registry, ensure_experiment
from seedcore.promotion.service import PromotionService
from seedcore.tuning.cluster import cluster_tags, ensure_ray
from seedcore.promotion.followups import RESULT_KEY, FollowUps
from seedcore.tuning.mlflow_callback import MLflowTrialLogger
from seedcore.tuning.objectives import Selection, pareto_front, select_point
from seedcore.tuning.records import log_warm_start, trial_points
from seedcore.tuning.plan import SweepPlan, plan_sweep, tune_settings
from seedcore.tuning.resume import find
from seedcore.tuning.search import build_searcher
from seedcore.tuning.tuner import run_trials
from seedcore.tuning.warmstart import WarmStart, gather
from seedcore.vocabulary import SearchAlgorithm
from seedcore.tuning.spaces import describe_space
from seedcore.tuning.winner import register_and_promote

Progress = Callable[[dict], None]


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
        grid = run_trials(settings, plan, dataset, logger, cancel_event, warm, job_id, resumed is not None)
        logger.close_open_runs("KILLED")  # trials cut short by the time budget
        if cancel_event.is_set():
            status = "KILLED"
            raise SweepCancelledError("the sweep was cancelled; its runs are KILLED and nothing was promoted")
        extras = _record_search(registry, parent, plan, warm, grid, logger)
        best = _chosen_result(grid, logger, plan, extras["points"])
        if best is None:  # the sweep itself went well: its runs end FINISHED, nothing is registered
            status = "FINISHED"
            registry.client.set_tag(parent, "seedcore.selection", "no trial meets the constraints")
            if extras["front"]:  # no version, so no follow-ups: the front is logged before the error
                log_front(registry.client, parent, extras["front"], [o.describe() for o in plan.objectives])
            raise ValidationError(_unmet(plan.selection, extras["points"]), field="select")
        outcome = register_and_promote(registry, plan, dataset, best, logger, experiment_id, promotion, job_id,
                                       trigger, front=extras["front"])
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
        "objectives": [o.describe() for o in plan.objectives],
        "select": plan.selection.describe(),
        "refit": outcome["refit"],
        **({"pareto_front": extras["front"]} if extras["front"] is not None else {}),
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


def _record_search(registry: Registry, parent: str, plan: SweepPlan, warm: WarmStart, grid,
                   logger: MLflowTrialLogger) -> dict:
    """The points of the finished trials, the Pareto front (None with one objective; logged after the answer, a
    follow-up) and the warm start."""
    points = trial_points(grid, plan.objectives)
    front = None if len(plan.objectives) == 1 else [
        {k: p[k] for k in ("trial_id", *(o.metric for o in plan.objectives))}
        for p in pareto_front(points, plan.objectives)]
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

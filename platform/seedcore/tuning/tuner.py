"""Ray Tune's side of a sweep: its trials run under the plan's scheduler (ASHA that lets seeded configs run in
full, or FIFO when the first objective is known only at the end) and searcher, on a trainable registered under
the job's name, stopped by the sweep's cancel event; answered as soon as the last trial ended (trials_over).

Everything that speaks Tune's API for a sweep is here; seedcore.tuning.sweep hands in the plan, the data, the
trial logger (a Tune callback) and the warm start, and takes back the trials' results.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from seedcore import names
from seedcore.config import Settings
from seedcore.datasets import Dataset
from seedcore.tuning.cluster import alive_nodes, check_trial_fits, cluster_cpus, trials_ended, tune_storage
from seedcore.tuning.mlflow_callback import MLflowTrialLogger
from seedcore.tuning.objectives import PER_ROUND, measured_metrics
from seedcore.tuning.plan import SweepPlan
from seedcore.tuning.records import match_point
from seedcore.tuning.resume import experiment_name, restore, settle_runs
from seedcore.tuning.retries import retry_configs
from seedcore.tuning.search import build_searcher
from seedcore.tuning.trainable import REPORT_INTERVAL_S, TrialData, asha_rungs, train_xgb
from seedcore.tuning.trials_over import TrialsOver, fit
from seedcore.tuning.warmstart import WarmStart

# Tune's own result files are off (our callback logs to MLflow); its analysis complains it cannot find them.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
_REGISTRY_LOCK = threading.Lock()


class _CancelStopper(tune.Stopper):
    """The sweep's cancel event as Tune's stopper: every trial stops once it is set."""

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


def run_trials(settings: Settings, plan: SweepPlan, dataset: Dataset, logger: MLflowTrialLogger,
               cancel_event: threading.Event, warm: WarmStart, job_id: str | None = None, resuming: bool = False):
    """The sweep's trials on Ray Tune, each logged by `logger`; their results (a ResultGrid, or the trials' own
    results the moment the last one ended). A job's sweep whose process died (`resuming`) goes on from its
    experiment in Tune's storage. `cancel_event` stops every trial."""
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
                                     max_interval_s=interval, measure=measured_metrics(plan.objectives, plan.selection),
                                     checkpoint_interval_s=settings.checkpoint_interval_s)
    trainable = tune.with_resources(trainable, {"cpu": cpus})
    search = build_searcher(plan.tune.search_alg, seed=plan.tune.seed, metric=first.metric, mode=first.mode,
                            max_concurrent=concurrent, warm=warm)
    over = TrialsOver(plan.tune.num_samples)
    storage = tune_storage(settings, str(settings.ray_results_dir))
    run_config = tune.RunConfig(name=experiment_name(job_id, plan.request.experiment_name), **storage,
                                callbacks=[logger, over], verbose=0, stop=_CancelStopper(cancel_event),
                                **retry_configs(settings.max_failures))
    trainable = _register_trainable(trainable, job_id)
    if resuming:  # the job's experiment as its dead process left it; trials it never knew end as orphans
        grid = fit(restore(settings, job_id, trainable, run_config, storage), over, cancel_event, trials_ended)
        settle_runs(logger, grid)
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

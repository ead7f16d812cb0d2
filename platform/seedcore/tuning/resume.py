"""A sweep that outlives its driver: a job's sweep whose process died goes on in the next one.

A job's Tune experiment is named after the job (`job_<id>`) in Tune's storage (SEEDCORE_RAY_STORAGE, else the
driver's disk), and its MLflow parent run carries the job id. When the process running the job dies and a
new one starts, the job runner takes the job over instead of failing it, and `run_sweep` finds both again:
`Tuner.restore` picks the experiment up (finished trials stay finished, unfinished ones start again from
their last checkpoint) and the trial logger goes on in the same parent and child runs, so no run is made
twice. When the experiment is gone from storage (or the parent run from MLflow) the job fails with that
reason. The parent run's `seedcore.resumed` tag counts the resumptions.
"""

from __future__ import annotations

import json
import time
from typing import NamedTuple

from seedcore import names
from seedcore.config import Settings
from seedcore.promotion.registry import Registry

EXPERIMENT_PREFIX = "job_"
TUNER_FILE = "tuner.pkl"  # what Tune writes at an experiment's start: without it nothing can be restored
TAG_RESUMED = "seedcore.resumed"  # on a sweep's parent run: how often its job was resumed after its driver died
TAG_ORPHANED = "seedcore.orphaned"  # on a trial run the restored experiment never knew (it began after the last save)


def experiment_name(job_id: str | None, label: str = "sweep") -> str:
    """A sweep's Tune experiment: its job's (found again by the job id), else `label` and the time."""
    if job_id:
        return f"{EXPERIMENT_PREFIX}{job_id}"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:80] or "sweep"
    return f"{safe}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"


def why_not(settings: Settings, job_id: str) -> str | None:
    """None when the job's sweep can be resumed from Tune's storage, else why not (no Ray needed)."""
    import pyarrow.fs as pafs

    base = settings.ray_storage or str(settings.ray_results_dir)
    try:
        fs, root = pafs.FileSystem.from_uri(base) if "://" in base else (pafs.LocalFileSystem(), base)
        found = fs.get_file_info(f"{root.rstrip('/')}/{experiment_name(job_id)}/{TUNER_FILE}")
    except Exception as exc:  # storage unreachable or unknown scheme: nothing to restore from
        return f"its Tune storage {base} cannot be read ({type(exc).__name__}: {exc})"
    if found.type == pafs.FileType.NotFound:
        return f"its Tune experiment is gone from {base} (no {experiment_name(job_id)}/{TUNER_FILE})"
    if _parent(Registry(settings), job_id) is None:
        return "its MLflow parent run is gone"
    return None


class Resumed(NamedTuple):
    """The interrupted sweep of a job: its parent run, its trial runs, and how often it was resumed now."""

    parent_run_id: str
    children: list
    count: int

    def seed(self, logger) -> None:
        """Hand the trial logger the runs already made, so each trial goes on in its own run."""
        for run in sorted(self.children, key=lambda r: r.info.start_time):
            trial_id = run.data.tags.get(names.TAG_TRIAL_ID)
            if not trial_id:
                continue
            logger.run_ids[trial_id] = run.info.run_id
            logger.started.add(trial_id)
            logger.numbered[trial_id] = (len(logger.started), {k: _value(v) for k, v in run.data.params.items()})
            logger.retries[trial_id] = int(run.data.tags.get("seedcore.retries", 0))
            outcome = run.data.tags.get("seedcore.outcome")
            if run.info.status != "RUNNING" and outcome:
                logger.outcomes[trial_id] = outcome
                auc = run.data.metrics.get(f"final_{names.AUC}")
                if auc is not None:
                    logger.last_results[trial_id] = {names.AUC: auc}
                    logger.best_auc = auc if logger.best_auc is None else max(logger.best_auc, auc)
            else:  # the dead process may have been writing its curve (in batches) when it died
                logger.half_written.add(trial_id)


def find(registry: Registry, settings: Settings, job_id: str | None) -> Resumed | None:
    """The job's interrupted sweep, reopened and counted, when there is one to resume; else None."""
    if not job_id or why_not(settings, job_id) is not None:
        return None
    parent = _parent(registry, job_id)
    client = registry.client
    count = int(parent.data.tags.get(TAG_RESUMED, 0)) + 1
    if parent.info.status != "RUNNING":  # a runner closed it; the sweep goes on
        client.update_run(parent.info.run_id, status="RUNNING")
    client.set_tag(parent.info.run_id, TAG_RESUMED, str(count))
    children = client.search_runs([parent.info.experiment_id], max_results=10_000,
                                  filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent.info.run_id}'")
    return Resumed(parent.info.run_id, list(children), count)


def restore(settings: Settings, job_id: str, trainable: str, run_config, storage: dict):
    """`Tuner.restore` of the job's experiment with this process's callbacks, stopper and failure policy (the
    ones pickled with the experiment belong to the dead process)."""
    from ray import tune

    path = f"{storage['storage_path'].rstrip('/')}/{experiment_name(job_id)}"
    tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False,
                               restart_errored=True, storage_filesystem=storage.get("storage_filesystem"))
    restored = tuner._local_tuner.get_run_config()  # Tune offers no public way to hand a restore new callbacks
    restored.callbacks, restored.stop = run_config.callbacks, run_config.stop
    restored.failure_config = run_config.failure_config
    return tuner


def settle_runs(logger, results) -> None:
    """A restored experiment's trial runs once its fit is over: the runs of trials it never knew are orphans
    (close_orphans); those of trials it held as ended already, which the dead process left open (it died before
    it wrote their end), end as the results Tune kept say: completed, or pruned, with their curves."""
    close_orphans(logger.client, logger, [r.metrics.get("trial_id") for r in results])
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        if trial_id in logger.started and trial_id not in logger.outcomes and result.error is None:
            logger.complete_ended(trial_id, result)


def close_orphans(client, logger, trial_ids) -> int:
    """End the trial runs the restored experiment does not know (begun after its last save, then begun again
    under a new trial id): KILLED, tagged, and deleted so that each trial is recorded once."""
    known = set(trial_ids)
    orphans = [(t, r) for t, r in logger.run_ids.items() if t not in known]
    for trial_id, run_id in orphans:
        client.set_tag(run_id, TAG_ORPHANED, "true")
        client.set_terminated(run_id, "KILLED")
        client.delete_run(run_id)
        for kept in (logger.outcomes, logger.run_ids, logger.numbered, logger.last_results):
            kept.pop(trial_id, None)
        logger.started.discard(trial_id)
    return len(orphans)


def _value(text: str):
    """A trial's parameter as MLflow keeps it (text) back as the number or list it was, when it reads as JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parent(registry: Registry, job_id: str):
    experiments = [e.experiment_id for e in registry.client.search_experiments()]
    if not experiments:
        return None
    parents = registry.client.search_runs(experiments, max_results=1, order_by=["attributes.start_time DESC"],
                                          filter_string=f"tags.`{names.TAG_JOB_ID}` = '{job_id}' and "
                                                        f"tags.`{names.TAG_SWEEP}` = 'true'")
    return parents[0] if parents else None


def close_job_runs(settings: Settings, job_id: str) -> int:
    """End the MLflow runs a dead process left RUNNING for `job_id` (parent and children): KILLED."""
    registry = Registry(settings)
    client = registry.client
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return 0
    parents = client.search_runs(experiments, filter_string=f"tags.`{names.TAG_JOB_ID}` = '{job_id}'")
    closed = 0
    for parent in parents:
        children = client.search_runs([parent.info.experiment_id],
                                      filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent.info.run_id}'")
        for run in [parent, *children]:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
                closed += 1
    return closed

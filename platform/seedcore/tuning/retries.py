"""Which trial failures Ray Tune retries (up to SEEDCORE_MAX_FAILURES times): a trial whose worker or node
died, never a trial whose own code raised (XGBoost refusing a parameter would only fail again).

Tune retries every failure up to FailureConfig.max_failures and offers no hook to tell the two apart, so the
trial's failure handling is wrapped once per process: the last failure's kind is noted on the trial, and a
trial whose code raised (RayTaskError) is not recovered. A worker or node that died is a RayActorError.
A retried trial goes on from its last checkpoint (seedcore.tuning.checkpoints).
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_LOST = "seedcore_lost_worker"  # on a Trial's temporary state: whether its last failure was a lost worker


def retry_configs(max_failures: int) -> dict:
    """A sweep's RunConfig arguments for retries: up to `max_failures` of a trial, each from its last checkpoint.

    Every checkpoint of a trial is kept while the sweep runs (num_to_keep None). With num_to_keep set, Tune
    deletes a trial's oldest checkpoint as soon as it registers a new one, and only then saves the
    experiment's state, whose copy to storage runs in a thread of its own: a driver killed in between leaves
    a state pointing at a deleted checkpoint, and the resumed sweep loses that trial ("Could not recover from
    checkpoint as it does not exist on storage anymore", seen in a test run). A trial checkpoints at most every
    SEEDCORE_CHECKPOINT_INTERVAL_S seconds of training, plus once at its end, so what is kept is small.
    """
    from ray import tune

    return {"failure_config": tune.FailureConfig(max_failures=max_failures),
            "checkpoint_config": tune.CheckpointConfig(num_to_keep=None)}


def retry_only_lost_workers() -> None:
    """Install the policy on Tune's Trial (idempotent)."""
    from ray.exceptions import RayActorError
    from ray.tune.experiment import Trial

    with _LOCK:
        if getattr(Trial.should_recover, "_seedcore", False):
            return
        handle_error, should_recover = Trial.handle_error, Trial.should_recover

        def noting_handle_error(self, exc=None):
            setattr(self.temporary_state, _LOST, isinstance(exc, RayActorError))
            return handle_error(self, exc)

        def recover_lost_workers_only(self):
            return getattr(self.temporary_state, _LOST, True) and should_recover(self)

        recover_lost_workers_only._seedcore = True
        Trial.handle_error, Trial.should_recover = noting_handle_error, recover_lost_workers_only

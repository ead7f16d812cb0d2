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
KEEP_CHECKPOINTS = 2  # a trial's last two: Tune saves the experiment's state each time a trial wrote this many


def retry_configs(max_failures: int) -> dict:
    """A sweep's RunConfig arguments for retries: up to `max_failures` of a trial, each from its last checkpoint.

    Tune keeps KEEP_CHECKPOINTS of each trial, and saves the experiment's state (waiting for it) whenever a
    trial wrote that many since the last save, so a restored experiment never points at a deleted checkpoint.
    Two, not one: a trial that checkpoints only at its end never makes a sweep wait for such a save.
    """
    from ray import tune

    return {"failure_config": tune.FailureConfig(max_failures=max_failures),
            "checkpoint_config": tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS)}


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

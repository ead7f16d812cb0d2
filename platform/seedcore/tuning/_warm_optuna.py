"""Ray Tune's OptunaSearch, plus re-runs queued after past trials were added with their scores."""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class WarmOptunaSearch(OptunaSearch):
    """After taking past trials with their scores (`evaluated_rewards`), queue `rerun` configs to run first.

    OptunaSearch takes either scored points or points to run, not both; the incumbent is worth one
    trial to check it on today's data while the sampler learns from all the others.
    """

    def __init__(self, *args, rerun: list[dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._rerun = list(rerun or [])

    def _setup_study(self, mode):
        super()._setup_study(mode)
        for point in self._rerun:
            self._ot_study.enqueue_trial(point)

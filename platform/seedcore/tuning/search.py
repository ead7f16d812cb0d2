"""Search algorithms: which configs a sweep tries, in which order, and what it already knows.

`random` is Ray Tune's variant generator; `tpe` and `qmc` are Optuna samplers behind Ray Tune's
`OptunaSearch`. Under ASHA, TPE learns from every trial's last reported score (pruned ones included),
which is the BOHB idea. Past trials reach the searcher through a `WarmStart`: TPE receives them with
their scores (no re-run) and re-runs only the best one first (the incumbent, checked on today's data);
the other algorithms take the best few as points to evaluate first.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

from seedcore.vocabulary import SearchAlgorithm

if TYPE_CHECKING:
    from seedcore.tuning.warmstart import WarmStart

# TPE's own default is 10 random start-up trials; with past trials fed in it starts informed at once.
TPE_STARTUP_TRIALS = 10


def build_searcher(alg: str, *, seed: int | None, metric: str, mode: str, max_concurrent: int,
                   warm: "WarmStart | None" = None):
    """The Ray Tune searcher for `alg`, seeded, limited to `max_concurrent` trials at once."""
    if alg == SearchAlgorithm.RANDOM:
        points = list(warm.points) if warm else []
        return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent,
                                     points_to_evaluate=points or None)
    from seedcore.tuning._warm_optuna import WarmOptunaSearch  # imports Optuna: only when asked for

    scored = bool(warm and warm.rewards and alg == SearchAlgorithm.TPE)
    searcher = WarmOptunaSearch(metric=metric, mode=mode, sampler=_sampler(alg, seed),
                                 points_to_evaluate=list(warm.points) if warm and warm.points else None,
                                 evaluated_rewards=list(warm.rewards) if scored else None,
                                 rerun=list(warm.rerun) if scored else [])
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)


def _sampler(alg: str, seed: int | None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if alg == SearchAlgorithm.TPE:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
    if alg == SearchAlgorithm.QMC:
        with warnings.catch_warnings():  # "QMCSampler is experimental": stable since Optuna 3
            warnings.simplefilter("ignore")
            return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    raise ValueError(f"unknown search algorithm {alg!r}")  # plan_sweep validated it: our fault if reached


def optuna_study(searcher):
    """The Optuna study behind a searcher (None for random search): what it was told and what it sampled."""
    inner = getattr(searcher, "searcher", searcher)
    return getattr(inner, "_ot_study", None)

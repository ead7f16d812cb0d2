"""Tuning: search spaces, the trainable, the MLflow callback, the sweep runner. All Ray imports live here.

Imports are lazy: Ray's trial workers import `seedcore.tuning.trainable` and must not pay for
MLflow and the registry, which only the driver needs.
"""

__all__ = ["SweepPlan", "SweepRequest", "plan_sweep", "run_sweep"]


def __getattr__(name: str):
    if name in ("SweepPlan", "plan_sweep"):
        from seedcore.tuning import plan

        return getattr(plan, name)
    if name in __all__:
        from seedcore.tuning import sweep

        return getattr(sweep, name)
    raise AttributeError(name)

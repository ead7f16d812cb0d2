"""Tuning: search spaces, the trainable, the MLflow callback, the sweep runner. All Ray imports live here."""

from seedcore.tuning.sweep import SweepPlan, SweepRequest, plan_sweep, run_sweep

__all__ = ["SweepPlan", "SweepRequest", "plan_sweep", "run_sweep"]

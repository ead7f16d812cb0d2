"""SeedCore Flywheel: XGBoost sweeps on Ray Tune, tracked in MLflow, promoted through its registry, served over REST."""

from seedcore.config import Settings
from seedcore.errors import SeedcoreError

__version__ = "0.1.0"
__all__ = ["Settings", "SeedcoreError", "__version__", "run_sweep", "create_app"]


def __getattr__(name: str):
    # Heavy parts (Ray, MLflow, Flask) load only when asked for.
    if name == "run_sweep":
        from seedcore.tuning import run_sweep

        return run_sweep
    if name == "create_app":
        from seedcore.api import create_app

        return create_app
    raise AttributeError(name)

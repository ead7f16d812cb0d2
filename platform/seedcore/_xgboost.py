"""XGBoost as the platform imports it: without its scikit-learn estimator classes.

`import xgboost` imports scikit-learn whenever it is installed (MLflow installs it), for XGBoost's scikit-learn
estimators. The platform never uses them: it trains, logs and serves Boosters. With SciPy, that import was 1.1
of the 2.5 CPU-seconds a process took to import XGBoost and MLflow, and every process of ours paid it: each
trial worker (Ray starts one per trial actor, and every sweep starts fresh ones), each server process, each CLI
command. Every module of ours imports XGBoost from here, so XGBoost's first import in a process runs with
scikit-learn hidden. Only that import is affected: scikit-learn itself stays importable afterwards, and a process
that loaded scikit-learn before gets XGBoost as usual.
"""

from __future__ import annotations

import sys

_HIDE = "sklearn" not in sys.modules and "xgboost" not in sys.modules
if _HIDE:
    sys.modules["sklearn"] = None  # `import sklearn` raises ImportError, so XGBoost skips its wrappers
try:
    import xgboost as xgb
finally:
    if _HIDE:
        del sys.modules["sklearn"]  # still the None set above: nothing can import scikit-learn past it

__all__ = ["xgb"]

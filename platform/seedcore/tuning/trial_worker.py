"""What a Ray worker process of ours does before it runs anything: Ray calls `setup` in each worker it starts
for our job (`worker_process_setup_hook`, set where Ray starts or is joined: seedcore.tuning.cluster).

A trial imports XGBoost, and XGBoost imports scikit-learn when it is installed (MLflow installs it) for its
scikit-learn estimator classes, which a trial never uses: with SciPy that import is about half of a trial
worker's start (1.0 of 2.4 CPU-s on the 2-CPU machine). Every sweep starts fresh trial workers, so a worker
hides scikit-learn from XGBoost. Only Ray's worker processes run this: the driver (a server or the CLI) keeps
scikit-learn for MLflow.
"""

from __future__ import annotations

import sys

HOOK = f"{__name__}.setup"  # the value Ray's runtime_env takes


def setup() -> None:
    sys.modules.setdefault("sklearn", None)  # `import sklearn` raises ImportError; XGBoost then skips its wrappers

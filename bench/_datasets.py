"""The quality benchmarks' data: the built-in set and two real datasets that ship inside scikit-learn.

- breast_cancer: Wisconsin diagnostic breast cancer (UCI), 569 rows, 30 features, 63% positive.
- digits_9: UCI optical digits, 1,797 rows of 8x8 pixel counts, label "is a 9": 10% positive (imbalanced).
No download at run time: both load from files inside the installed scikit-learn package.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench._workspace import LABEL, Workspace

BUILTIN_ROWS = 2000
REAL = ("breast_cancer", "digits_9")


def dataset_csv(ws: Workspace, name: str) -> Path:
    """The named dataset as a CSV with label column `target` (written once per workspace)."""
    if name == "builtin":
        return ws.small_csv(BUILTIN_ROWS)
    path = ws.shared / f"{name}.csv"
    if not path.exists():
        _frame(name).to_csv(path, index=False)
    return path


def _frame(name: str) -> pd.DataFrame:
    from sklearn import datasets

    if name == "breast_cancer":
        bunch = datasets.load_breast_cancer(as_frame=True)
        frame = bunch.data.copy()
        frame[LABEL] = bunch.target.astype(int)
    elif name == "digits_9":
        bunch = datasets.load_digits(as_frame=True)
        frame = bunch.data.astype("float32")
        frame[LABEL] = (bunch.target == 9).astype(int)
    else:
        raise ValueError(f"unknown dataset {name!r}")
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame

"""Concept drift on the built-in data, for the flywheel demo: cases from a new region of the input space
(`f6` shifted) where the outcome now follows another rule (low `f0` means the positive class), so the
production model, trained before, is confidently wrong there while a re-trained one can learn it."""

from __future__ import annotations

import numpy as np

from seedcore.datasets import BUILTIN_FEATURES, builtin_frame

SHIFTED_FEATURE = "f6"  # unused by the built-in concept: a model trained before the drift ignores it
SHIFT = 4.0


def drifted_rows(n: int, seed: int = 99) -> tuple[list[list[float]], list[int]]:
    """`n` cases from the drifted region and their outcomes under the new rule."""
    x = builtin_frame(n_rows=n, seed=seed)[BUILTIN_FEATURES].to_numpy(dtype=np.float64, copy=True)
    x[:, BUILTIN_FEATURES.index(SHIFTED_FEATURE)] += SHIFT
    labels = (x[:, BUILTIN_FEATURES.index("f0")] < 0).astype(int)
    return np.round(x, 6).tolist(), labels.tolist()

"""Concept drift on the built-in data, for the flywheel demo: rows from a new region of the input space
(`f6` shifted) where the outcome has flipped, so the production model is now confidently wrong there."""

from __future__ import annotations

import numpy as np

from seedcore.data import BUILTIN_FEATURES, BUILTIN_LABEL, builtin_frame

SHIFTED_FEATURE = "f6"  # unused by the built-in concept: a model trained before the drift ignores it
SHIFT = 4.0


def drifted_rows(n: int, seed: int = 99) -> tuple[list[list[float]], list[int]]:
    """`n` rows whose labels the built-in concept gets wrong (flipped), marked by a shift of `f6`."""
    frame = builtin_frame(n_rows=n, seed=seed)
    x = frame[BUILTIN_FEATURES].to_numpy(dtype=np.float64, copy=True)
    x[:, BUILTIN_FEATURES.index(SHIFTED_FEATURE)] += SHIFT
    labels = (1 - frame[BUILTIN_LABEL].to_numpy()).astype(int)
    return np.round(x, 6).tolist(), labels.tolist()

"""The fixed split of a table into train / validation / holdout: the fractions by table size, the stratified
split with the fixed seed, and the refusal of a part left with one class."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from seedcore.errors import DataError

SPLIT_SEED = 20240804
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / validation / holdout
# Under SMALL_DATA_ROWS rows a fifth is too few validation rows to rank trials (ASHA and the winner
# choice become lotteries): small data gives validation 30%. The refit folds it back into training.
SMALL_DATA_ROWS = 10_000
SMALL_SPLIT_FRACTIONS = (0.5, 0.3, 0.2)


def split_parts(y: np.ndarray) -> list[np.ndarray]:
    """Row indices of train / validation / holdout (the fixed seed); a part with one class is a DataError."""
    parts = stratified_split(y, split_fractions(len(y)), SPLIT_SEED)
    for name, idx in zip(("train", "validation", "holdout"), parts):
        if len(np.unique(y[idx])) < 2:
            raise DataError(f"the {name} split has one class only; more rows of each class are needed",
                            field="label_column")
    return parts


def split_fractions(n_rows: int) -> tuple[float, float, float]:
    """Train / validation / holdout fractions for a table of `n_rows` rows."""
    return SMALL_SPLIT_FRACTIONS if n_rows < SMALL_DATA_ROWS else SPLIT_FRACTIONS


def stratified_split(y: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Row indices of train / validation / holdout, each holding the classes in the table's proportions.

    Rows are shuffled within their class, then ordered by their relative rank in it, so every prefix
    of the order (hence every part) takes each class at the same rate; the part sizes are exact.
    """
    rng = np.random.default_rng(seed)
    key = np.empty(len(y))
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        key[rows] = (rng.permutation(len(rows)) + rng.random(len(rows))) / len(rows)
    order = np.argsort(key, kind="stable")
    n_train, n_valid = int(len(y) * fractions[0]), int(len(y) * fractions[1])
    return [np.sort(part) for part in np.split(order, [n_train, n_train + n_valid])]

"""seedcore.scoring: the AUC every model is compared by, against its definition counted pair by pair."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seedcore.scoring import roc_auc

pytestmark = pytest.mark.unit


def pairwise_auc(y, score) -> float:
    """The definition: over every (positive, negative) pair, 1 when the positive scores higher, 1/2 when tied."""
    pos, neg = score[y > 0.5], score[y <= 0.5]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


@pytest.mark.parametrize("decimals", [None, 1, 2])  # continuous scores, and scores with many ties
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auc_is_the_pairwise_definition(decimals, dtype):
    rng = np.random.default_rng(7)
    y = (rng.random(600) < 0.3).astype(np.float32)
    score = rng.random(600) + 0.4 * y
    if decimals is not None:
        score = np.round(score, decimals)
    score = score.astype(dtype)
    assert roc_auc(y, score) == pytest.approx(pairwise_auc(y, score), abs=1e-12)


def test_auc_of_lists_extremes_and_one_class():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3])) and math.isnan(roc_auc([0, 0], [0.2, 0.3]))

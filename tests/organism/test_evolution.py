"""Evolution's axes from trial AUCs: the best-so-far curve, the random-order baseline, trials saved."""

from __future__ import annotations

import pytest

from seedcore.organism.evolution import adaptability, curve_stats, random_order_baseline

pytestmark = pytest.mark.unit


def test_a_search_that_finds_its_best_first_scores_a_full_curve():
    stats = curve_stats([0.9, 0.5, 0.6, 0.7])
    assert stats == {"trials": 4, "curve_area": 1.0, "trials_to_99": 1, "best": 0.9}


def test_a_late_best_is_slower_than_the_same_trials_in_random_order():
    late = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9]  # worst first: as bad an order as there is
    stats, baseline = curve_stats(late), random_order_baseline(late)
    assert stats["trials_to_99"] == 8 and baseline["trials_to_99"] < 8
    assert stats["curve_area"] < baseline["curve_area"] < 1.0  # smartness < 0
    early = list(reversed(late))
    assert curve_stats(early)["curve_area"] - random_order_baseline(early)["curve_area"] > 0


def test_nan_trials_are_left_out_and_nothing_gives_none():
    assert curve_stats([float("nan"), 0.8])["trials"] == 1
    assert curve_stats([])["curve_area"] is None and random_order_baseline([])["curve_area"] is None


def test_trials_saved_compares_a_warm_sweep_with_the_cold_ones_on_the_same_data():
    axes = [{"warm_start": "none", "fingerprint": "d1", "trials_to_99": 6},
            {"warm_start": "none", "fingerprint": "d1", "trials_to_99": 8},
            {"warm_start": "none", "fingerprint": "d2", "trials_to_99": 1},
            {"warm_start": "history", "fingerprint": "d1", "trials_to_99": 2},
            {"warm_start": "production", "fingerprint": "d3", "trials_to_99": 2}]
    adaptability(axes)
    assert [a["trials_saved"] for a in axes] == [None, None, None, 5.0, None]  # d3 has no cold sweep

"""Search pieces without a sweep: the Pareto front and selection rules, warm-start filtering, the TPE
searcher fed with past trials, the stratified split, request checks naming the field."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from ray import tune

from seedcore.data_split import SMALL_SPLIT_FRACTIONS, SPLIT_FRACTIONS, split_fractions, stratified_split
from seedcore.errors import ValidationError
from seedcore.request_models import TuneRequest
from seedcore.tuning.objectives import (Objective, Selection, dominates, knee, pareto_front, resolve_objectives,
                                        resolve_selection, select_point)
from seedcore.tuning.search import build_searcher, optuna_study
from seedcore.tuning.spaces import resolve_space
from seedcore.tuning.plan import plan_sweep
from seedcore.tuning.warmstart import WarmStart, fit_to_space

pytestmark = pytest.mark.unit

AUC_MAX, BYTES_MIN = Objective("auc", "max"), Objective("model_bytes", "min")


def _points(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"trial_id": f"t{i}", "auc": round(rng.random(), 2), "model_bytes": rng.randint(1, 20)} for i in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_is_exactly_the_non_dominated_points(seed):
    points = _points(40, seed)
    front = pareto_front(points, (AUC_MAX, BYTES_MIN))
    ids = {p["trial_id"] for p in front}
    for p in points:  # brute force: on the front iff no other point dominates it
        beaten = any(q["auc"] >= p["auc"] and q["model_bytes"] <= p["model_bytes"] and
                     (q["auc"] > p["auc"] or q["model_bytes"] < p["model_bytes"]) for q in points)
        assert (p["trial_id"] in ids) == (not beaten)
    for a, b in itertools.permutations(front, 2):
        assert not dominates(a, b, (AUC_MAX, BYTES_MIN))
    assert [p["auc"] for p in front] == sorted((p["auc"] for p in front), reverse=True)


def test_selection_rules_pick_best_under_constraints_or_the_knee():
    points = [{"trial_id": "big", "auc": 0.95, "model_bytes": 900}, {"trial_id": "mid", "auc": 0.93, "model_bytes": 200},
              {"trial_id": "small", "auc": 0.70, "model_bytes": 100}, {"trial_id": "bad", "auc": 0.6, "model_bytes": 950}]
    objectives = (AUC_MAX, BYTES_MIN)
    assert select_point(points, objectives, Selection())["trial_id"] == "big"
    capped = resolve_selection({"model_bytes": {"max": 500}}, objectives)
    assert select_point(points, objectives, capped)["trial_id"] == "mid"
    assert select_point(points, objectives, resolve_selection("knee", objectives))["trial_id"] == "mid"
    assert knee(pareto_front(points, objectives), objectives)["trial_id"] == "mid"
    assert select_point(points, objectives, resolve_selection({"model_bytes": {"max": 50}}, objectives)) is None
    assert select_point(points, (BYTES_MIN,), Selection())["trial_id"] == "small"  # one objective, minimised


@pytest.mark.parametrize("objectives, select, field", [
    ([{"metric": "accuracy", "mode": "max"}], "best", "objectives.0.metric"),
    ([{"metric": "auc", "mode": "up"}], "best", "objectives.0.mode"),
    ([{"metric": "auc", "mode": "max"}, {"metric": "auc", "mode": "min"}], "best", "objectives.1.metric"),
    (None, "pareto", "select"),
    (None, "knee", "select"),  # a knee needs two objectives
    (None, {"bogus": {"max": 1}}, "select.bogus"),
    (None, {"model_bytes": {}}, "select.model_bytes"),
    (None, {"model_bytes": {"min": 5, "max": 1}}, "select.model_bytes"),
])
def test_bad_objectives_and_selections_name_the_field(objectives, select, field):
    with pytest.raises(ValidationError) as err:
        resolve_selection(select, resolve_objectives(objectives))
    assert err.value.field == field


@pytest.mark.parametrize("custom, field", [
    ({"search_alg": "bayes"}, "custom_tune_config.search_alg"),
    ({"search_alg": 3}, "custom_tune_config.search_alg"),
])
def test_unknown_search_alg_is_refused_by_the_plan(settings, custom, field):
    with pytest.raises(ValidationError) as err:
        plan_sweep(settings, TuneRequest(custom_tune_config=custom))
    assert err.value.field == field and "search_alg" in err.value.message


def test_presets_carry_a_search_alg_and_the_plan_keeps_the_requested_one(settings):
    assert plan_sweep(settings, TuneRequest()).tune.search_alg == "tpe"
    assert plan_sweep(settings, TuneRequest(config_type="conservative")).tune.search_alg == "random"
    plan = plan_sweep(settings, TuneRequest(custom_tune_config={"search_alg": "qmc"}))
    assert plan.tune.as_dict()["search_alg"] == "qmc"


def test_fit_to_space_keeps_configs_inside_the_space_only():
    space = resolve_space("conservative", None)
    inside = {"eta": 0.1, "max_depth": 5, "subsample": 0.8, "colsample_bytree": 0.8, "lambda": 2.0, "alpha": 1.0,
              "num_boost_round": 20, "early_stopping_rounds": 5, "objective": "binary:logistic"}
    assert fit_to_space(inside, space) == {k: inside[k] for k in ("eta", "max_depth", "subsample", "colsample_bytree",
                                                                  "lambda", "alpha")}
    assert fit_to_space({**inside, "max_depth": 9}, space) is None  # randint(4, 8) stops at 7
    assert fit_to_space({**inside, "num_boost_round": 200}, space) is None  # another constant: other scores
    assert fit_to_space({"eta": 0.1}, space, partial=True) == {"eta": 0.1}


def test_tpe_searcher_starts_from_past_trials_with_their_scores():
    """The study behind the searcher holds the past trials, completed with their scores, before any trial runs."""
    space = {"eta": tune.loguniform(0.01, 0.3), "max_depth": tune.randint(3, 8)}
    points = [{"eta": 0.05, "max_depth": 4}, {"eta": 0.2, "max_depth": 7}]
    warm = WarmStart("history", points, [0.91, 0.83], [{"run_id": "a"}, {"run_id": "b"}], rerun=points[:1])
    searcher = build_searcher("tpe", seed=1, metric="auc", mode="max", max_concurrent=2, warm=warm)
    searcher.set_search_properties("auc", "max", space)
    study = optuna_study(searcher)
    assert type(study.sampler).__name__ == "TPESampler"
    assert [(t.params, t.value, t.state.name) for t in study.trials[:2]] == [
        (points[0], 0.91, "COMPLETE"), (points[1], 0.83, "COMPLETE")]
    assert searcher.suggest("trial-1") == points[0]  # the incumbent is checked again first
    suggested = searcher.suggest("trial-2")  # then new configs, not re-runs of past ones
    assert suggested not in points and set(suggested) == {"eta", "max_depth"}


def test_random_searcher_evaluates_seeded_points_first():
    space = {"eta": tune.loguniform(0.01, 0.3), "max_depth": tune.randint(3, 8)}
    warm = WarmStart("history", [{"eta": 0.05, "max_depth": 4}], [], [{"run_id": "a"}])
    searcher = build_searcher("random", seed=1, metric="auc", mode="max", max_concurrent=2, warm=warm)
    assert optuna_study(searcher) is None
    assert searcher._points_to_evaluate == [{"eta": 0.05, "max_depth": 4}]


@pytest.mark.parametrize("n, positives", [(569, 0.37), (2000, 0.5), (12_000, 0.08)])
def test_split_is_stratified_exact_and_disjoint(n, positives):
    y = (np.random.default_rng(n).random(n) < positives).astype(np.float32)
    fractions = split_fractions(n)
    assert fractions == (SMALL_SPLIT_FRACTIONS if n < 10_000 else SPLIT_FRACTIONS)
    parts = stratified_split(y, fractions, seed=4)
    assert [len(p) for p in parts] == [int(n * fractions[0]), int(n * fractions[1]),
                                       n - int(n * fractions[0]) - int(n * fractions[1])]
    assert len(np.unique(np.concatenate(parts))) == n
    for part in parts:  # each part within one row of the table's class proportion
        assert abs(y[part].sum() - y.mean() * len(part)) <= 1.0
    assert all(np.array_equal(a, b) for a, b in zip(parts, stratified_split(y, fractions, seed=4)))


def test_asha_never_stops_a_trial_rerunning_a_seeded_config():
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from seedcore.tuning.tuner import _SeededRunsInFull

    seeded = {"eta": 0.02, "max_depth": 6}
    scheduler = _SeededRunsInFull([seeded], time_attr="round", max_t=20, grace_period=2, reduction_factor=2)
    scheduler.set_search_properties("auc", "max")
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"eta": 0.3, "max_depth": 3}) for i in range(4)]
    incumbent = SimpleNamespace(trial_id="seeded", config={**seeded, "num_boost_round": 200})
    late = SimpleNamespace(trial_id="late", config={"eta": 0.01, "max_depth": 6})
    for trial in [*trials, incumbent, late]:
        scheduler.on_trial_add(None, trial)
    for trial in trials:  # fast learners set a high bar at the first rung
        assert scheduler.on_trial_result(None, trial, {"round": 2, "auc": 0.9}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, late, {"round": 2, "auc": 0.6}) == TrialScheduler.STOP
    assert scheduler.on_trial_result(None, incumbent, {"round": 2, "auc": 0.6}) == TrialScheduler.CONTINUE

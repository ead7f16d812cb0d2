"""Benchmark 7, warm start: a second sweep on the same data with `warm_start: history` vs the first sweep.

Per seed: a first sweep (default tune config, its preset search) on the built-in data; then a second,
in the same MLflow store, with `warm_start: history` and 10 trials. Reported: the trial (1-based, in
the order the second sweep started them) at which its best validation AUC so far reaches the first
sweep's best, and the same for trials that ran a new config (not a re-run of a past one).
"""

from __future__ import annotations

import json
from statistics import median

from mlflow import MlflowClient

from bench._datasets import dataset_csv
from bench._ours import ours_sweep
from bench._report import Section, log
from bench._workspace import Workspace, mlflow_state, start_ray
from seedcore.names import TAG_PARENT_RUN, TAG_TRIAL_ID
from seedcore.tuning import SweepRequest
from seedcore.tuning.spaces import DEFAULT_SPACE
from seedcore.tuning.warmstart import TAG_SOURCE

NAME = "warmstart"
TITLE = "7. Warm start from history (second sweep on the same data, built-in data)"
SECOND_TRIALS = 10


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    first_trials, rounds = (3, 10) if small else (50, 200)
    repeats = repeats or (1 if small else 3)
    csv = dataset_csv(ws, "builtin")
    start_ray()
    reached, reached_new, firsts, seconds = [], [], [], []
    for seed in range(repeats):
        settings = ws.ours(f"bench_warm_{seed}", (csv,))
        first = _sweep(settings, csv, first_trials, rounds, seed, "none")
        second = _sweep(settings, csv, SECOND_TRIALS, rounds, seed + 100, "history")
        curve = _trial_curve(settings, second)
        target = first["best_auc"]
        reached.append(_first_at(curve, target, new_only=False))
        reached_new.append(_first_at(curve, target, new_only=True))
        firsts.append(target)
        seconds.append(max(c["auc"] for c in curve))
        log(f"{NAME}: seed {seed}: first best {target:.4f}; second reaches it at trial {reached[-1]} "
            f"(new configs: {reached_new[-1]}), best {seconds[-1]:.4f}")
    return _section(reached, reached_new, firsts, seconds, first_trials, repeats)


def _sweep(settings, csv, trials: int, rounds: int, seed: int, warm: str) -> dict:
    space = None if rounds == DEFAULT_SPACE["num_boost_round"] else {**DEFAULT_SPACE, "num_boost_round": rounds}
    request = SweepRequest(space_type="default", config_type="default", custom_search_space=space,
                           custom_tune_config={"num_samples": trials, "seed": seed}, warm_start=warm,
                           experiment_name=f"warm_{warm}_{seed}", data_source=csv.name, label_column="target",
                           promote=False)
    with mlflow_state():
        return ours_sweep(settings, request)


def _trial_curve(settings, outcome: dict) -> list[dict]:
    """Each trial of a sweep in start order: its validation AUC (last reported) and whether it re-ran a past config."""
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    runs = client.search_runs([outcome["experiment_id"]], max_results=1000,
                              filter_string=f"tags.`{TAG_PARENT_RUN}` = '{outcome['parent_run_id']}'")
    curve = []
    for run in sorted(runs, key=lambda r: (r.info.start_time, r.data.tags.get(TAG_TRIAL_ID, ""))):
        history = client.get_metric_history(run.info.run_id, "auc")
        auc = run.data.metrics.get("final_auc", max((m.value for m in history), default=0.0))
        curve.append({"auc": auc, "rerun": TAG_SOURCE in run.data.tags})
    return curve


def _first_at(curve: list[dict], target: float, new_only: bool) -> int | None:
    for i, trial in enumerate(curve, start=1):
        if (not new_only or not trial["rerun"]) and trial["auc"] >= target - 1e-12:
            return i
    return None


def _section(reached, reached_new, firsts, seconds, first_trials: int, repeats: int) -> Section:
    setup = (f"Per seed: a first sweep of {first_trials} trials (default space and tune config) on the built-in data "
             f"at 2,000 rows, then a second sweep of {SECOND_TRIALS} trials in the same MLflow store with "
             "`warm_start: history` (TPE gets every past finished trial with its score and re-runs the best one first). "
             f"{repeats} seed(s). A trial 'reaches' the first sweep's best when its validation AUC is at least that.")
    section = Section(NAME, TITLE, setup)
    worst = max((r if r is not None else SECOND_TRIALS + 1) for r in reached)
    section.add("trial at which the second sweep reaches the first's best (worst seed)", float(worst), target="<= 10",
                note="1-based, in start order")
    section.add("best validation AUC: second sweep (10 trials) vs first sweep", median(seconds), median(firsts),
                f"first sweep ({first_trials} trials)")
    section.notes.append(f"per seed, trial reaching the first's best: {reached}; counting new configs only: "
                         f"{reached_new} (None = not within {SECOND_TRIALS})")
    return section

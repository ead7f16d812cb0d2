"""Benchmark 2, scaling with work: 8 trials × 200 rounds on 200,000 rows × 50 features.

Ours (`run_sweep`, default space, ASHA unable to prune before the last round so every trial does all
its rounds) vs the compute floor: the very configs our trials ran (read back from MLflow) trained one
after another with `xgboost.train` on all cores, data loading and DMatrix construction included.
Also: how our wall time grows from 20 to 100 trials on the small data (it should stay linear).
"""

from __future__ import annotations

import os
import time

from bench._floor import train_sequentially
from bench._ours import ours_sweep, trial_configs
from bench._report import Section, log, median
from bench._workspace import Workspace, load_split, mlflow_state, start_ray
from seedcore.tuning import SweepRequest
from seedcore.tuning.spaces import DEFAULT_SPACE

NAME = "scaling"
TITLE = "2. Scaling with work (big data vs the xgb.train floor; trial count growth)"


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    rows, features, trials, rounds = (2_000, 5, 2, 10) if small else (200_000, 50, 8, 200)
    growth = (2, 6) if small else (20, 100)
    repeats = repeats or (1 if small else 2)
    data = ws.wide_parquet(rows, features)
    start_ray()
    ours, floor = [], []
    for r in range(repeats):
        outcome, configs = _ours_heavy(ws, data, trials, rounds, small, r)
        ours.append(outcome["seconds"])
        floor.append(train_sequentially(configs, load_split(data), nthread=os.cpu_count()))
        log(f"{NAME}: repeat {r + 1}/{repeats}: ours {ours[-1]:.1f} s, floor {floor[-1]:.1f} s")
    grown = {n: _ours_small(ws, n) for n in growth}
    log(f"{NAME}: growth " + ", ".join(f"{n} trials {s:.1f} s" for n, s in grown.items()))
    return _section(ours, floor, grown, rows, features, trials, rounds, repeats)


def _ours_heavy(ws: Workspace, data, trials: int, rounds: int, small: bool, seed: int) -> tuple[dict, list[dict]]:
    name = f"bench_scaling_r{seed}"
    settings = ws.ours(name, (data,))
    space = {**DEFAULT_SPACE, "num_boost_round": rounds} if small else None
    request = SweepRequest(space_type="default", config_type="default", custom_search_space=space,
                           custom_tune_config={"num_samples": trials, "grace_period": rounds, "seed": seed},
                           experiment_name=name, data_source=data.name, label_column="target")
    with mlflow_state():
        outcome = ours_sweep(settings, request)
        configs = trial_configs(settings, outcome)
    if len(configs) != trials:
        raise RuntimeError(f"expected {trials} trial configs in MLflow, found {len(configs)}")
    return outcome, configs


def _ours_small(ws: Workspace, trials: int) -> float:
    csv = ws.small_csv()
    name = f"bench_growth_{trials}"
    settings = ws.ours(name, (csv,))
    request = SweepRequest(space_type="conservative", config_type="conservative",
                           custom_tune_config={"num_samples": trials, "time_budget_s": 3600, "seed": 0},
                           experiment_name=name, data_source=csv.name, label_column="target")
    with mlflow_state():
        started = time.perf_counter()
        ours_sweep(settings, request)
        return time.perf_counter() - started


def _section(ours, floor, grown, rows, features, trials, rounds, repeats) -> Section:
    setup = (f"{rows:,} rows × {features} float32 features (synthetic, Parquet), {trials} trials × {rounds} rounds of "
             f"the default space, ASHA grace period = {rounds} rounds (no trial stops early), 1 CPU a trial "
             f"({os.cpu_count()} at once). **Floor**: the {trials} configs our trials ran, read back from their MLflow "
             "runs, trained one after another with `xgb.train` (nthread = all cores, same validation set and eval "
             "metrics), reading the file and building the DMatrix included. Growth: ours on the 569-row data, "
             "conservative space, at two trial counts.")
    section = Section(NAME, TITLE, setup)
    section.add(f"wall time, {trials} trials × {rounds} rounds", median(ours), median(floor),
                "sequential xgb.train, all cores", "<= 1.15", "s")
    (few, few_s), (many, many_s) = sorted(grown.items())
    section.add(f"wall time, {few} trials", few_s, unit="s")
    section.add(f"wall time, {many} trials", many_s, unit="s")
    section.add(f"time per trial at {many} trials vs at {few}", many_s / many, few_s / few,
                f"ours at {few} trials", "<= 1.1", "s", note="linear growth keeps this near 1 or below")
    section.add(f"marginal time per trial, {few} → {many}", (many_s - few_s) / (many - few), unit="s")
    section.notes.append(f"heavy comparison: medians of {repeats} repeat(s) (trial seed = repeat number); "
                         "growth: one run at each count")
    return section

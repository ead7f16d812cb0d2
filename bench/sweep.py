"""Benchmark 1, sweep overhead: 20 trials of the conservative space on 569 rows, MLflow logging on.

Ours (`run_sweep`) vs plain Ray Tune (MLflowLoggerCallback + Ray's XGBoost report callback) vs Optuna
in one process with nested MLflow runs. Ray is started before any timer; every contender gets its
own fresh MLflow store, created before its timer starts. Contenders take turns within each repeat.
"""

from __future__ import annotations

import time

from bench._floor import sample_configs, train_sequentially
from bench._ours import ours_sweep
from bench._report import Section, log, median
from bench._workspace import Workspace, count_metric_points, count_runs, load_split, mlflow_state, start_ray
from seedcore.tuning import SweepRequest
from seedcore.tuning.spaces import TUNE_CONFIGS, resolve_space

NAME = "sweep"
TITLE = "1. Sweep overhead (569 rows, conservative space, MLflow logging on)"
CONTENDERS = ("ours", "ray", "optuna")
PEER_NAMES = {"ray": "Ray Tune + MLflowLoggerCallback", "optuna": "Optuna + nested MLflow runs"}


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    trials = 2 if small else 20
    repeats = repeats or (1 if small else 3)
    csv = ws.small_csv()
    ray_start = start_ray()
    if not small:  # one discarded round: Ray's workers import xgboost and our code, MLflow warms its caches
        for contender in CONTENDERS:
            _one(ws, contender, csv, 2, "warmup")
    samples: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    for r in range(repeats):
        order = CONTENDERS[r % 3:] + CONTENDERS[:r % 3]  # rotate who goes first
        for contender in order:
            outcome = _one(ws, contender, csv, trials, f"r{r}")
            samples[contender].append(outcome)
            log(f"{NAME}: repeat {r + 1}/{repeats} {contender}: {outcome['seconds']:.2f} s")
    floor = train_sequentially(sample_configs(resolve_space("conservative", None), trials), load_split(csv), nthread=1)
    return _section(samples, trials, repeats, floor, ray_start)


def _one(ws: Workspace, contender: str, csv, trials: int, tag: str) -> dict:
    conf = TUNE_CONFIGS["conservative"]
    space = resolve_space("conservative", None)
    name = f"bench_{contender}_{tag}"
    with mlflow_state():
        if contender == "ours":
            settings = ws.ours(name, (csv,))
            request = SweepRequest(space_type="conservative", config_type="conservative",
                                   custom_tune_config={"num_samples": trials}, experiment_name=name,
                                   data_source=csv.name, label_column="target")
            outcome, uri = ours_sweep(settings, request), settings.tracking_uri
        elif contender == "ray":
            from bench._ray_peer import ray_tune_sweep

            directory, uri = ws.fresh_store(name)
            outcome = ray_tune_sweep(csv, space, trials, conf.grace_period, conf.reduction_factor, uri, name,
                                     directory / "ray_results")
        else:
            from bench._optuna_peer import optuna_sweep

            _, uri = ws.fresh_store(name)
            outcome = optuna_sweep(csv, space, trials, uri, name)
    trials_run = outcome["trials"]
    outcome["n_trials"] = trials_run["total"] if isinstance(trials_run, dict) else trials_run
    outcome["metric_points"] = count_metric_points(uri)
    outcome["runs"] = count_runs(uri)
    return outcome


def _section(samples: dict, trials: int, repeats: int, floor: float, ray_start: float) -> Section:
    section = Section(NAME, TITLE, _setup(trials, repeats))
    wall = {c: median(o["seconds"] for o in samples[c]) for c in CONTENDERS}
    overhead = {c: (wall[c] - floor) / trials * 1000 for c in CONTENDERS}
    points = {c: median(o["metric_points"] for o in samples[c]) for c in CONTENDERS}
    for peer, target in (("ray", "<= 0.2"), ("optuna", "<= 2")):
        section.add(f"wall time, {trials} trials", wall["ours"], wall[peer], PEER_NAMES[peer], target, "s")
    for peer in ("ray", "optuna"):
        section.add("per-trial overhead", overhead["ours"], overhead[peer], PEER_NAMES[peer], unit="ms",
                    note="(wall − sequential xgb.train time) / trials")
    tune_s = median(o["tune_seconds"] for o in samples["ours"])
    after_s = median(o["after_tune_seconds"] for o in samples["ours"])
    section.add("ours: start → last trial logged", tune_s, wall["ray"], PEER_NAMES["ray"], unit="s",
                note="ours without registering and promoting the winner")
    section.add("ours: after the last trial logged", after_s, unit="s",
                note="refit, register + promote the winner (the peers do neither) while Tune stops its trial "
                     "actors in the background; the answer comes back here")
    section.add("ours: follow-ups after the answer", median(o["followup_seconds"] for o in samples["ours"]), unit="s",
                note="pictures, description, drift reference: in the background, not in the wall time above")
    for peer in ("ray", "optuna"):
        section.add("metric values logged to MLflow", points["ours"], points[peer], PEER_NAMES[peer],
                    note="per-round curves, all contenders")
    section.add("best validation AUC", median(o["best_auc"] for o in samples["ours"]),
                median(o["best_auc"] for o in samples["optuna"]), PEER_NAMES["optuna"])
    section.notes += [
        f"medians of {repeats} repeat(s); contenders take turns (first place rotates); "
        f"a discarded 2-trial warm-up of each ran first (full mode)",
        f"compute floor: the same number of conservative configs trained one after another with xgb.train "
        f"(nthread=1, no logging) took {floor:.2f} s in all ({floor / trials * 1000:.0f} ms a trial)",
        f"Ray started once before timing ({ray_start:.1f} s, not counted); each contender's MLflow SQLite store "
        "was created before its timer",
        "trials run / MLflow runs in the store (median): " + "; ".join(
            f"{c} {median(o['n_trials'] for o in samples[c]):.0f} / {median(o['runs'] for o in samples[c]):.0f}"
            for c in CONTENDERS) + f"; ours' trial outcomes (last repeat): {samples['ours'][-1]['trials']}",
    ]
    return section


def _setup(trials: int, repeats: int) -> str:
    return (f"{trials} trials of the guide's conservative space (eta, max_depth, subsample, colsample_bytree, lambda, "
            "alpha; 20 rounds, early stopping 5) on the built-in data at 569 rows (CSV, same fixed-seed split for "
            "all), ASHA grace 5 / reduction 2 for both Ray contenders, 1 CPU a trial (2 at once on 2 cores). "
            "**Ours**: `run_sweep` end to end (load, tune, one parent + a child run per trial with per-round "
            "curves, register + promote the winner; timed to its answer, its follow-ups apart). **Ray Tune**: "
            "`Tuner` with `TuneReportCheckpointCallback` (reports every round, checkpoint at the end) and "
            "`MLflowLoggerCallback` (a run per trial), every "
            "other setting Ray's default (auto CSV/JSON/TensorBoard loggers on, default output). **Optuna**: TPE, "
            "one process, a parent run with a nested run per trial, `mlflow.log_metrics` once a round, XGBoost "
            "nthread=1 like our trials, no pruning.")

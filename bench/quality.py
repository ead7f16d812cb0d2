"""Benchmark 5, tuning quality: best holdout AUC of our sweep vs Optuna TPE with the same trial budget.

Both tune the guide's default space (200 rounds, no early stopping) for 50 trials on the same data and
split; each winner is scored on the same holdout rows with the same AUC function. Ours searches at
random with ASHA pruning (the guide's default tune config); Optuna samples with TPE and trains every
trial in full (see the Optuna peer's docstring for how it logs to MLflow).
"""

from __future__ import annotations

from bench._ours import ours_sweep
from bench._report import Section, log, median
from bench._workspace import Workspace, mlflow_state, start_ray
from seedcore.metrics import evaluate
from seedcore.names import AUC
from seedcore.tuning import SweepRequest
from seedcore.tuning.spaces import DEFAULT_SPACE, TUNE_CONFIGS, resolve_space

NAME = "quality"
TITLE = "5. Tuning quality (default space, same trial budget, built-in data)"
PEER = "Optuna TPE + nested MLflow runs"


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    trials, n_rows = (3, 569) if small else (50, 2000)
    custom_space = {**DEFAULT_SPACE, "num_boost_round": 10} if small else None
    repeats = repeats or (1 if small else 3)
    csv = ws.small_csv(n_rows)
    start_ray()
    ours, peer = [], []
    for seed in range(repeats):
        ours.append(_ours(ws, csv, trials, custom_space, seed))
        peer.append(_optuna(ws, csv, trials, custom_space, seed))
        log(f"{NAME}: seed {seed}: ours holdout AUC {ours[-1]['holdout_auc']:.4f} in {ours[-1]['seconds']:.1f} s, "
            f"Optuna {peer[-1]['holdout_auc']:.4f} in {peer[-1]['seconds']:.1f} s")
    return _section(ours, peer, trials, n_rows, repeats)


def _ours(ws: Workspace, csv, trials: int, custom_space, seed: int) -> dict:
    name = f"bench_quality_ours_{seed}"
    settings = ws.ours(name, (csv,))
    request = SweepRequest(space_type="default", config_type="default", custom_search_space=custom_space,
                           custom_tune_config={"num_samples": trials, "seed": seed}, experiment_name=name,
                           data_source=csv.name, label_column="target")
    with mlflow_state():
        return ours_sweep(settings, request)


def _optuna(ws: Workspace, csv, trials: int, custom_space, seed: int) -> dict:
    from bench._optuna_peer import optuna_sweep

    name = f"bench_quality_optuna_{seed}"
    _, uri = ws.fresh_store(name)
    space = resolve_space("default", custom_space)
    with mlflow_state():
        outcome = optuna_sweep(csv, space, trials, uri, name, seed=seed)
    data = outcome["dataset"]
    outcome["holdout_auc"] = evaluate(outcome["booster"], data.x_holdout, data.y_holdout)[AUC]
    return outcome


def _section(ours: list[dict], peer: list[dict], trials: int, n_rows: int, repeats: int) -> Section:
    conf = TUNE_CONFIGS["default"]
    setup = (f"{trials} trials of the guide's default space on the built-in data at {n_rows:,} rows (CSV; "
             f"fixed-seed split 60/20/20, so {n_rows - int(n_rows * 0.6) - int(n_rows * 0.2)} holdout rows). "
             f"**Ours**: `run_sweep` with the default tune config (random search, ASHA grace {conf.grace_period} / "
             f"reduction {conf.reduction_factor:g}, trials pruned on validation AUC), winner scored on the holdout. "
             "**Optuna**: TPE sampler, every trial trained in full, the best trial's booster scored on the same "
             "holdout. Both seeded with the repeat number.")
    section = Section(NAME, TITLE, setup)
    section.add("best holdout AUC", median(o["holdout_auc"] for o in ours), median(o["holdout_auc"] for o in peer),
                PEER)
    section.add("best validation AUC", median(o["best_auc"] for o in ours), median(o["best_auc"] for o in peer), PEER)
    section.add(f"wall time, {trials} trials", median(o["seconds"] for o in ours),
                median(o["seconds"] for o in peer), PEER, unit="s")
    section.notes.append(f"medians of {repeats} seeds; per seed (ours / Optuna holdout AUC): " + "; ".join(
        f"{o['holdout_auc']:.4f} / {p['holdout_auc']:.4f}" for o, p in zip(ours, peer)))
    counts = ours[-1]["trials"]
    section.notes.append(f"ours' trial outcomes (last seed): {counts['completed']} completed, "
                         f"{counts['pruned']} pruned by ASHA of {counts['total']}")
    return section

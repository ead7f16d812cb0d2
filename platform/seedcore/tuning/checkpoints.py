"""A trial's checkpoint: its booster, and what a retried trial needs to go on from it.

A trial checkpoints at a report, at most every SEEDCORE_CHECKPOINT_INTERVAL_S seconds of its training, and at
its end (the winner's booster). Besides the booster (CHECKPOINT_FILE) a checkpoint keeps XGBoost's evaluation
log of the rounds trained so far and the seconds they took (PROGRESS_FILE): a trial Tune retries (its worker
or node died) loads the last one, trains only the remaining rounds, judges early stopping over every round
(the earlier ones replayed to XGBoost's own EarlyStopping) and reports the earlier rounds' curve once, so its
MLflow run has each round once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from seedcore._xgboost import xgb
from seedcore.names import AUC, LOGLOSS

CHECKPOINT_FILE = "model.ubj"
VALIDATION = "validation"  # the evaluation set's name in XGBoost's log
PROGRESS_FILE = "progress.json"  # {"history": XGBoost's evaluation log, "training_s": seconds of training}


class Earlier(NamedTuple):
    """The rounds a trial trained before this attempt, from its last checkpoint."""

    booster: xgb.Booster
    history: dict  # XGBoost's evaluation log of those rounds: {"validation": {"logloss": [...], "auc": [...]}}
    training_s: float

    @property
    def rounds(self) -> int:
        return self.booster.num_boosted_rounds()

    def curve(self) -> list[list[float]]:
        """The rounds as a report's curve: [[round, auc, logloss], ...]."""
        return _curve(self.history)


def save(directory: str, booster: xgb.Booster, history: dict, training_s: float) -> None:
    booster.save_model(str(Path(directory) / CHECKPOINT_FILE))
    (Path(directory) / PROGRESS_FILE).write_text(json.dumps({"history": history, "training_s": training_s}))


def checkpoint_bytes(checkpoint) -> bytes:
    """The booster of a checkpoint (a trial's last: the winner's, for registration) as the UBJ bytes it holds:
    registered and blessed as they are, never serialised again."""
    with checkpoint.as_directory() as path:
        return (Path(path) / CHECKPOINT_FILE).read_bytes()


def load(checkpoint) -> Earlier | None:
    """A checkpoint as the rounds a retried trial goes on from (None: a checkpoint without a log, written before
    checkpoints kept one; the trial starts over). A trial's final checkpoint holds the booster cut at its best
    round (early stopping): the log is cut there too, so the two always agree."""
    with checkpoint.as_directory() as path:
        if not (Path(path) / PROGRESS_FILE).exists():
            return None
        booster = _booster(Path(path))
        progress = json.loads((Path(path) / PROGRESS_FILE).read_text())
    rounds = booster.num_boosted_rounds()
    history = {data: {metric: values[:rounds] for metric, values in log.items()}
               for data, log in progress["history"].items()}
    return Earlier(booster, history, float(progress["training_s"]))


def recorded_curve(checkpoint) -> list[list[float]]:
    """Every round a checkpoint's log holds as a report's curve (a final checkpoint's: past its best round too);
    none for a checkpoint without a log."""
    with checkpoint.as_directory() as path:
        progress = Path(path) / PROGRESS_FILE
        return _curve(json.loads(progress.read_text())["history"]) if progress.exists() else []


def joined(earlier: dict, later: dict) -> dict:
    """Two evaluation logs, one after the other."""
    shape = later or earlier
    return {data: {metric: [*earlier.get(data, {}).get(metric, ()), *later.get(data, {}).get(metric, ())]
                   for metric in log} for data, log in shape.items()}


def replay_early_stopping(stopping: xgb.callback.EarlyStopping, earlier: Earlier) -> bool:
    """Show XGBoost's EarlyStopping the earlier rounds, as if it had watched them: it goes on counting rounds
    without improvement from there, and keeps the best round among all. True when they already say stop."""
    log = {data: {metric: [] for metric in metrics} for data, metrics in earlier.history.items()}
    stop = False
    for i in range(earlier.rounds):
        for data, metrics in earlier.history.items():
            for metric, values in metrics.items():
                log[data][metric].append(values[i])
        stop = stopping.after_iteration(earlier.booster, i, log)
    return stop


def _curve(history: dict) -> list[list[float]]:
    log = history.get(VALIDATION, {})
    return [[i + 1, float(a), float(l)] for i, (a, l) in enumerate(zip(log.get(AUC, ()), log.get(LOGLOSS, ())))]


def _booster(path: Path) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(str(path / CHECKPOINT_FILE))
    return booster

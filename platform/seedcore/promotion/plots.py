"""Pictures MLflow shows beside a model and a sweep: ROC, precision-recall, calibration, feature importance;
a sweep's optimisation history and parameter importances, and a multi-objective sweep's Pareto front (with its
table). Drawn with matplotlib's Agg canvas (no pyplot:
no global state, safe in threads), logged as PNG artifacts after a sweep's or a training's answer (a
follow-up: seedcore.promotion.followups). A picture that cannot be drawn never fails the registration or the
sweep it belongs to; it is logged as a warning and left out, and its follow-up is marked failed.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from seedcore.scoring import roc_auc

log = logging.getLogger(__name__)

PLOTS_DIR = "plots"  # the artifact directory the pictures go in
ROC, PR, CALIBRATION, IMPORTANCE = "roc_curve.png", "precision_recall_curve.png", "calibration.png", \
    "feature_importance_gain.png"
HISTORY, PARAM_IMPORTANCE = "optimization_history.png", "param_importances.png"
MODEL_PLOTS, SWEEP_PLOTS = (ROC, PR, CALIBRATION, IMPORTANCE), (HISTORY, PARAM_IMPORTANCE)
FRONT_TABLE, FRONT_PLOT = "pareto_front.json", "pareto_front.png"  # at the top of a sweep's parent run
_SIZE, _DPI = (5.0, 3.6), 80  # small and quick: what the artifact preview shows


def warm() -> None:
    """Import matplotlib's drawing parts ahead of the first picture (most of that picture's cost)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


@functools.cache
def warm_in_background() -> None:
    """`warm` in a thread of its own, once per process."""
    threading.Thread(target=warm, name="seedcore-plots-warmup", daemon=True).start()


def _figure(title: str, xlabel: str, ylabel: str, left: float = 0.14):
    from matplotlib.figure import Figure

    # Fixed margins: a layout engine would double the drawing time.
    fig = Figure(figsize=_SIZE, dpi=_DPI)
    fig.subplots_adjust(left=left, right=0.96, top=0.9, bottom=0.14)
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _counts(y: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold, highest first."""
    order = np.argsort(-prob, kind="mergesort")
    y, prob = np.asarray(y, dtype=np.float64)[order], prob[order]
    last = np.r_[np.flatnonzero(np.diff(prob)), len(prob) - 1]
    tps = np.cumsum(y)[last]
    return tps, (last + 1) - tps


def roc_figure(y: np.ndarray, prob: np.ndarray):
    tps, fps = _counts(y, prob)
    fig, ax = _figure("ROC curve (holdout)", "false positive rate", "true positive rate")
    ax.plot(np.r_[0, fps / fps[-1]], np.r_[0, tps / tps[-1]], label=f"AUC {roc_auc(y, prob):.4f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.legend(loc="lower right")
    return fig


def pr_figure(y: np.ndarray, prob: np.ndarray):
    tps, fps = _counts(y, prob)
    precision, recall = tps / (tps + fps), tps / tps[-1]
    average_precision = float(np.sum(np.diff(np.r_[0, recall]) * precision))
    fig, ax = _figure("Precision-recall curve (holdout)", "recall", "precision")
    ax.plot(np.r_[0, recall], np.r_[1, precision], label=f"average precision {average_precision:.4f}")
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", linewidth=0.8)
    ax.legend(loc="lower left")
    return fig


def calibration_figure(y: np.ndarray, prob: np.ndarray, bins: int = 10):
    """Observed positive rate against mean predicted probability, in bins of equal size."""
    edges = np.quantile(prob, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges[1:-1], prob, side="right"), 0, bins - 1)
    used = [b for b in range(bins) if np.any(which == b)]
    predicted = [float(prob[which == b].mean()) for b in used]
    observed = [float(np.asarray(y)[which == b].mean()) for b in used]
    fig, ax = _figure("Calibration (holdout)", "mean predicted probability", "fraction of positives")
    ax.plot(predicted, observed, marker="o")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    return fig


def importance_figure(booster, top: int = 20):
    gains = booster.get_score(importance_type="gain")  # only features some split used
    ranked = sorted(gains.items(), key=lambda kv: kv[1])[-top:]
    fig, ax = _figure("Feature importance (gain)", "average gain per split", "", left=0.22)
    ax.barh([name for name, _ in ranked], [value for _, value in ranked])
    return fig


def log_model_plots(client, model_id: str, booster, x: np.ndarray, y: np.ndarray) -> list[str]:
    """ROC, PR, calibration and gain importance of `booster` on (x, y), logged into the model's artifacts."""
    prob = booster.inplace_predict(x)
    drawings = {ROC: lambda: roc_figure(y, prob), PR: lambda: pr_figure(y, prob),
                CALIBRATION: lambda: calibration_figure(y, prob), IMPORTANCE: lambda: importance_figure(booster)}
    return _log(drawings, lambda folder: client.log_model_artifacts(model_id, folder, PLOTS_DIR))


def history_figure(trials: list[dict]):
    scored = [t for t in trials if t.get("auc") is not None]
    fig, ax = _figure("Optimization history", "trial", "validation AUC")
    ax.scatter([t["number"] for t in scored], [t["auc"] for t in scored], s=18, label="trial")
    numbers, aucs = zip(*sorted((t["number"], t["auc"]) for t in scored)) if scored else ((), ())
    ax.step(numbers, np.maximum.accumulate(aucs) if aucs else [], where="post", color="C1", label="best so far")
    ax.legend(loc="lower right")
    return fig


def param_importance_figure(trials: list[dict]):
    """How strongly each varied parameter ranks with the AUC: |Spearman correlation| over scored trials."""
    scored = pd.DataFrame([{**{k: _number(v) for k, v in t["params"].items()}, "_auc": t["auc"]}
                           for t in trials if t.get("auc") is not None])
    varied = [c for c in scored.columns if c != "_auc" and scored[c].nunique() > 1] if len(scored) > 2 else []
    strength = scored[varied].corrwith(scored["_auc"], method="spearman").abs().fillna(0.0).sort_values() \
        if varied else pd.Series(dtype=float)
    fig, ax = _figure("Parameter importances", "|Spearman correlation| with validation AUC", "", left=0.3)
    if len(strength):
        ax.barh(list(strength.index), strength.to_numpy())
    else:
        ax.text(0.5, 0.5, "needs three scored trials and a varied parameter", ha="center", va="center")
    return fig


def log_sweep_plots(client, run_id: str, trials: Iterable[dict]) -> list[str]:
    """A sweep's optimisation history and parameter importances, logged on its parent run.

    `trials`: one dict per trial, `{"number": int, "params": dict, "auc": float | None, "outcome": str}`.
    """
    trials = list(trials)
    drawings = {HISTORY: lambda: history_figure(trials), PARAM_IMPORTANCE: lambda: param_importance_figure(trials)}
    return _log(drawings, lambda folder: client.log_artifacts(run_id, folder, PLOTS_DIR))


def front_figure(front: list[dict], objectives: list[dict]):
    """The front on the first two objectives, in order of the first."""
    (x, x_mode), (y, y_mode) = ((o["metric"], o["mode"]) for o in objectives[:2])
    points = sorted(front, key=lambda p: p[x])
    fig, ax = _figure(f"Pareto front: {len(front)} trials", f"{x} ({x_mode})", f"{y} ({y_mode})", left=0.18)
    ax.plot([p[x] for p in points], [p[y] for p in points], "o-")
    return fig


def log_front(client, run_id: str, front: list[dict], objectives: list[dict]) -> list[str]:
    """A multi-objective sweep's Pareto front on its parent run: a table (trial id and every objective) and a
    picture of the first two objectives; the names logged.

    `front`: the answer's `pareto_front`; `objectives`: its `objectives` (`{"metric", "mode"}` each).
    """
    columns = ["trial_id", *(o["metric"] for o in objectives)]
    client.log_table(run_id, {c: [p[c] for p in front] for c in columns}, FRONT_TABLE)
    drawn = _log({FRONT_PLOT: lambda: front_figure(front, objectives)},
                 lambda folder: client.log_artifacts(run_id, folder))
    return [FRONT_TABLE, *drawn]


def _log(drawings: dict[str, Callable], upload: Callable[[str], None]) -> list[str]:
    """Draw each picture into a temporary folder, upload the folder once; the names that made it."""
    with tempfile.TemporaryDirectory(prefix="seedcore-plots-") as folder:
        done = []
        for name, draw in drawings.items():
            try:
                draw().savefig(Path(folder, name))
                done.append(name)
            except Exception:  # a picture is a nicety: never fail the model or the sweep for it
                log.warning("could not draw %s", name, exc_info=True)
        try:
            if done:
                upload(folder)
        except Exception:
            log.warning("could not upload the plots %s", done, exc_info=True)
            return []
        return done


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

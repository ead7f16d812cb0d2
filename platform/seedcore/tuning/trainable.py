"""The trainable: one XGBoost trial that reports every boosting round to Ray Tune."""

from __future__ import annotations

import math
import tempfile
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import ray
from ray import tune

from seedcore._xgboost import xgb
from seedcore.names import AUC, LOGLOSS, ROUND
from seedcore.scoring import roc_auc
from seedcore.tuning.checkpoints import VALIDATION, Earlier, joined, load, replay_early_stopping, save
from seedcore.tuning.spaces import EARLY_STOPPING_ROUNDS, NUM_BOOST_ROUND

# Result keys beyond the metrics.
DONE_TRAINING = "done_training"  # present only in a trial's last report: it ran to the end
BEST_ITERATION = "best_iteration"
TRAINING_TIME = "training_time"
CURVE = "curve"  # per-round metrics trained since the previous report: [[round, auc, logloss], ...]
EARLIER_CURVE = "earlier_curve"  # in an attempt's first report, when it went on from a checkpoint: its rounds
NODE_ID = "node_id"  # the Ray node the trial runs on (in every report: pruned trials too)
CONFIG_ATTR = "xgboost_config"  # booster attribute: XGBoost's own save_config() from training
MODEL_BYTES, PREDICT_US = "model_bytes", "predict_us"  # costs a sweep's objectives may ask for
REPORT_INTERVAL_S = 1.0  # a trial reports at least this often (progress, cancel), besides ASHA's rungs
PREDICT_BATCH = 1000  # rows in the fixed batch predict_us is measured on

_DMATRIX_CACHE: dict[str, tuple[xgb.DMatrix, xgb.DMatrix]] = {}

if TYPE_CHECKING:
    from seedcore.datasets import Dataset


class TrialData(NamedTuple):
    """What a trial needs of a Dataset: plain arrays, so trial workers never import pandas."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    feature_names: tuple[str, ...]
    fingerprint: str

    @classmethod
    def of(cls, dataset: "Dataset") -> "TrialData":
        return cls(dataset.x_train, dataset.y_train, dataset.x_valid, dataset.y_valid,
                   tuple(dataset.feature_names), dataset.fingerprint)


def make_dmatrices(data: "TrialData | Dataset") -> tuple[xgb.DMatrix, xgb.DMatrix]:
    """Train and validation DMatrix, built once per process (actors are reused across trials)."""
    cached = _DMATRIX_CACHE.get(data.fingerprint)
    if cached is None:
        names = list(data.feature_names)
        cached = (xgb.DMatrix(data.x_train, data.y_train, feature_names=names),
                  xgb.DMatrix(data.x_valid, data.y_valid, feature_names=names))
        _DMATRIX_CACHE.clear()
        _DMATRIX_CACHE[data.fingerprint] = cached
    return cached


def split_config(config: dict[str, Any], nthread: int) -> tuple[dict, int, int | None]:
    """XGBoost params (with nthread), the number of rounds, and early stopping rounds."""
    params = {k: v for k, v in config.items() if k not in (NUM_BOOST_ROUND, EARLY_STOPPING_ROUNDS)}
    params["nthread"] = nthread
    rounds = int(config.get(NUM_BOOST_ROUND, 100))
    early = config.get(EARLY_STOPPING_ROUNDS)
    return params, rounds, int(early) if early else None


def train_booster(config: dict[str, Any], data: "TrialData | Dataset", nthread: int, callbacks=(),
                  earlier: Earlier | None = None) -> tuple[xgb.Booster, dict]:
    """Train one model; with early stopping keep only the rounds up to the best one.

    Returns the booster and its final metrics (at the best round), with the validation curve
    under CURVE as [[round, auc, logloss], ...]. With `earlier` (a retried trial's checkpoint) only the
    remaining rounds are trained, on its booster; early stopping and the curve count every round.
    """
    params, rounds, early = split_config(config, nthread)
    dtrain, dvalid = make_dmatrices(data)
    history: dict = {}
    remaining, stopping = rounds - (earlier.rounds if earlier else 0), []
    if early:  # XGBoost's own, as early_stopping_rounds would add it; shown the earlier rounds first
        stopping = [xgb.callback.EarlyStopping(rounds=early)]
        if earlier is not None and replay_early_stopping(stopping[0], earlier):
            remaining = 0
    params, scoring = _our_auc(params, dvalid, data.y_valid)
    booster = xgb.train(params, dtrain, num_boost_round=max(remaining, 0), evals=[(dvalid, VALIDATION)],
                        evals_result=history, verbose_eval=False, callbacks=[*scoring, *callbacks, *stopping],
                        xgb_model=earlier.booster if earlier else None)
    curve = joined(earlier.history if earlier else {}, history)[VALIDATION]
    best = booster.best_iteration if early else len(curve[AUC]) - 1
    if early:
        booster = booster[: best + 1]
    if scoring:  # the config as asked for: scored by AUC too
        booster.set_param({"eval_metric": AUC})
    # Model files keep no training parameters (a loaded booster reports eta 0.3, nthread 0):
    # record what XGBoost actually trained with, so the registered model can show it.
    booster.set_attr(**{CONFIG_ATTR: booster.save_config()})
    final = {AUC: float(curve[AUC][best]), LOGLOSS: float(curve[LOGLOSS][best]), BEST_ITERATION: best,
             "rounds_trained": len(curve[AUC]),
             CURVE: [[i + 1, float(a), float(l)] for i, (a, l) in enumerate(zip(curve[AUC], curve[LOGLOSS]))]}
    return booster, final


def _our_auc(params: dict, dvalid: xgb.DMatrix, labels: np.ndarray) -> tuple[dict, list]:
    """XGBoost's params without its own "auc", and a callback that scores it each round with
    seedcore.scoring.roc_auc into XGBoost's evaluation log: the same number in a third of the time (on 65k
    validation rows XGBoost's AUC took 18-23% of a round). The callback goes first, so the report and early
    stopping read the round's AUC as if XGBoost had scored it (early stopping follows the last metric, the AUC,
    and maximises it: XGBoost reads that from its name)."""
    metrics = params.get("eval_metric")
    names = [metrics] if isinstance(metrics, str) else list(metrics or ())
    if AUC not in names:
        return params, []
    others = [m for m in names if m != AUC]
    return {**params, "eval_metric": others or "logloss"}, [_ScoreAuc(dvalid, labels)]


class _ScoreAuc(xgb.callback.TrainingCallback):
    def __init__(self, dvalid: xgb.DMatrix, labels: np.ndarray):
        self.dvalid, self.labels = dvalid, labels

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        # the validation rows' predictions come from XGBoost's cache, which its evaluation just brought up to date
        evals_log[VALIDATION].setdefault(AUC, []).append(roc_auc(self.labels, model.predict(self.dvalid)))
        return False


class _ReportRounds(xgb.callback.TrainingCallback):
    """Send every round's validation AUC and logloss to Tune, batched, with a checkpoint now and then.

    A report goes out at each ASHA rung (`report_at`), so the scheduler decides exactly as with one
    report per round, and at least every `max_interval_s` so progress and cancellation stay live.
    Each report carries the rounds since the previous one under CURVE. A due report is sent when
    the next round begins: the last round only ever travels in the final report, so ASHA can never
    stop a trial between its last round and its checkpoint. A report carries a checkpoint of the booster
    so far when `checkpoint_interval_s` seconds of training passed since the last (or the start).
    An attempt that goes on from `earlier` rounds (a checkpoint) numbers its rounds after them and sends
    their curve once, under EARLIER_CURVE in its first report.
    """

    def __init__(self, report_at: frozenset[int] | None, max_interval_s: float,
                 checkpoint_interval_s: float = math.inf, earlier: Earlier | None = None):
        self.report_at = report_at
        self.max_interval_s = max_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.earlier = earlier
        self.offset = earlier.rounds if earlier else 0  # XGBoost counts an attempt's rounds from 0
        self.earlier_sent = False
        self.pending: list[list[float]] = []
        self.log: dict = {}  # this attempt's evaluation log (XGBoost's own, growing as it trains)
        self.due = False
        self.started = self.last_sent = self.last_checkpoint = time.perf_counter()

    def training_s(self) -> float:
        """Seconds of training: this attempt's and those before its checkpoint."""
        return (self.earlier.training_s if self.earlier else 0.0) + time.perf_counter() - self.started

    def before_iteration(self, model, epoch: int, evals_log) -> bool:
        if self.due:
            checkpoint = time.perf_counter() - self.last_checkpoint >= self.checkpoint_interval_s
            self.flush(booster=model if checkpoint else None)
        return False

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        self.log = evals_log
        log = evals_log[VALIDATION]
        done = self.offset + epoch + 1
        self.pending.append([done, float(log[AUC][-1]), float(log[LOGLOSS][-1])])
        on_rung = self.report_at is None or done in self.report_at
        self.due = on_rung or time.perf_counter() - self.last_sent >= self.max_interval_s
        return False

    def flush(self, extra: dict | None = None, booster: xgb.Booster | None = None) -> None:
        """Report the pending rounds (and `extra`), with a checkpoint of `booster` when one is given."""
        last = self.pending[-1] if self.pending else None
        metrics = {ROUND: last[0], AUC: last[1], LOGLOSS: last[2]} if last else {}
        metrics[CURVE] = self.pending
        if self.earlier is not None and not self.earlier_sent:  # once: in the attempt's first report
            metrics[EARLIER_CURVE], self.earlier_sent = self.earlier.curve(), True
        metrics.update(extra or {})
        metrics[NODE_ID] = ray.get_runtime_context().get_node_id()
        self.pending, self.due = [], False
        self.last_sent = time.perf_counter()
        if booster is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save(tmp, booster, joined(self.earlier.history if self.earlier else {}, self.log), self.training_s())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        self.last_checkpoint = time.perf_counter()


def train_xgb(config: dict[str, Any], data: TrialData, nthread: int = 1, report_at: frozenset[int] | None = None,
              max_interval_s: float = REPORT_INTERVAL_S, measure: tuple[str, ...] = (),
              checkpoint_interval_s: float = math.inf) -> None:
    """Ray Tune trainable: train, report the rounds, end with the final metrics and a checkpoint.

    `report_at=None` reports after every round. `measure` names costs to report at the end
    (MODEL_BYTES, PREDICT_US), taken only when a sweep's objectives ask for them. A report also
    checkpoints the booster every `checkpoint_interval_s` seconds of training; a trial Tune retries goes on
    from its last checkpoint, training only the remaining rounds.
    """
    checkpoint = tune.get_checkpoint()
    earlier = load(checkpoint) if checkpoint else None
    reporter = _ReportRounds(report_at, max_interval_s, checkpoint_interval_s, earlier)
    booster, final = train_booster(config, data, nthread, callbacks=[reporter], earlier=earlier)
    extra = {ROUND: final["rounds_trained"], AUC: final[AUC], LOGLOSS: final[LOGLOSS],
             BEST_ITERATION: final[BEST_ITERATION], TRAINING_TIME: reporter.training_s(), DONE_TRAINING: True}
    extra.update(measure_costs(booster, data.x_valid, measure))
    reporter.flush(extra, booster=booster)


def measure_costs(booster: xgb.Booster, x: np.ndarray, measure: tuple[str, ...]) -> dict[str, float]:
    """Model size in bytes (UBJ, as registered) and predict time per row in microseconds.

    Predict time: one thread, the same fixed batch (the first PREDICT_BATCH rows) for every trial,
    best of three so a busy neighbour counts less.
    """
    out: dict[str, float] = {}
    if MODEL_BYTES in measure:
        out[MODEL_BYTES] = float(len(booster.save_raw("ubj")))
    if PREDICT_US in measure:
        batch = np.ascontiguousarray(x[:PREDICT_BATCH])
        booster.set_param({"nthread": 1})
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            booster.inplace_predict(batch)
            timings.append(time.perf_counter() - started)
        out[PREDICT_US] = min(timings) / len(batch) * 1e6
    return out


def refit_booster(config: dict[str, Any], data: "Dataset", rounds: int, nthread: int) -> xgb.Booster:
    """Retrain a config on training + validation rows for `rounds` rounds (the count its trial earned)."""
    params, _, _ = split_config(config, nthread)
    x = np.concatenate([data.x_train, data.x_valid])
    y = np.concatenate([data.y_train, data.y_valid])
    dtrain = xgb.DMatrix(x, y, feature_names=list(data.feature_names))
    booster = xgb.train(params, dtrain, num_boost_round=max(1, rounds), verbose_eval=False)
    booster.set_attr(**{CONFIG_ATTR: booster.save_config()})
    return booster


def asha_rungs(grace_period: int, reduction_factor: float, max_t: int) -> frozenset[int]:
    """The rounds at which ASHA (one bracket) compares trials: grace_period * rf**k below max_t."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return frozenset(int(grace_period * reduction_factor ** k) for k in range(max(count, 1)))

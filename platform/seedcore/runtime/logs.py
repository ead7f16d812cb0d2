"""Our log lines: one greppable line per event a user looks for, and how logging is set up.

Events (`grep -i tune`, `grep -i "model promoted"`, ...): a sweep starting and ending, a version registered,
a trigger firing. Promotion ("model promoted ...") and the served model's refresh ("serving ... version")
are logged where they happen (seedcore.promotion.service, seedcore.serving.model). `configure` writes to stderr as text,
or one JSON object a line for log collectors (SEEDCORE_LOG_FORMAT=json), and quiets lines we cause that
say nothing to a user (Ray's "SIGTERM handler is not set", MLflow's table creation chatter).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("seedcore.events")

LOG_FILE_BYTES = 10 * 1024 * 1024  # the server's log file rotates at this size ...
LOG_FILE_BACKUPS = 5  # ... keeping this many earlier files (seedcore.log.1 ... .5)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers whose INFO lines are noise to a user of ours (they stay visible at WARNING and above).
QUIET = ("mlflow.store.db.utils", "alembic.runtime.migration", "ray.tune.tune", "ray.tune.impl.tuner_internal",
         "ray.tune.analysis.experiment_analysis")
# Where known-noisy warnings come from (a filter on the logger itself works whoever handles its lines).
NOISY = ("ray._private.worker",)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the event's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _DropNoise(logging.Filter):
    """Lines we cause that tell a user nothing (Ray: we run trials in threads on purpose)."""

    NOISE = ("SIGTERM handler is not set because current thread is not the main thread",)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


def configure(fmt: str = "text", level: str = "INFO", log_file: Path | None = None) -> None:
    """Our lines at `level` on stderr, as `text` or `json`, and also in `log_file` when given (rotated at
    LOG_FILE_BYTES, LOG_FILE_BACKUPS kept); idempotent (a second call replaces the first)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_seedcore", False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS,
                                            encoding="utf-8"))
    for handler in handlers:
        handler._seedcore = True
        handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet_noise()


def exit_now(code: int) -> NoReturn:
    """Flush our logs and the standard streams, then end the process without the interpreter's teardown
    (MLflow, Ray and XGBoost unloading module by module, thread pools winding down): the work is done."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def quiet_noise() -> None:
    """Drop the known-noisy lines at their source loggers (safe to call any number of times)."""
    for name in NOISY:
        source = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in source.filters):
            source.addFilter(_DropNoise())


def sweep_started(experiment: str, trials: int, job_id: str | None = None) -> None:
    log.info("tune sweep started: experiment=%s trials=%d job=%s", experiment, trials, job_id or "-",
             extra={"event": "sweep_started", "experiment": experiment, "trials": trials, "job_id": job_id})


def sweep_ended(experiment: str, status: str, counts: dict[str, int], best_auc: float | None, duration_s: float,
                job_id: str | None = None) -> None:
    """The sweep's one closing line (`status`: MLflow's FINISHED, FAILED or KILLED), and its metrics."""
    from seedcore.runtime.counters import record_sweep  # prometheus-client: loaded when a sweep ends

    outcome = {"FINISHED": "succeeded", "KILLED": "cancelled"}.get(status, "failed")
    best = "-" if best_auc is None else f"{best_auc:.4f}"
    log.info("tune sweep %s: experiment=%s trials=%d completed=%d pruned=%d errored=%d killed=%d best_auc=%s "
             "time=%.1fs job=%s", outcome, experiment, sum(counts.values()), counts.get("completed", 0),
             counts.get("pruned", 0), counts.get("errored", 0), counts.get("killed", 0), best, duration_s,
             job_id or "-", extra={"event": "sweep_ended", "outcome": outcome, "experiment": experiment,
                                   "trial_counts": counts, "best_auc": best_auc, "duration_s": round(duration_s, 3),
                                   "job_id": job_id})
    record_sweep(outcome, duration_s, counts)


def model_registered(name: str, version, run_id: str, holdout_auc: float) -> None:
    log.info("model registered: %s version %s holdout_auc=%.4f run=%s", name, version, holdout_auc, run_id,
             extra={"event": "model_registered", "model_name": name, "model_version": int(version),
                    "holdout_auc": holdout_auc, "run_id": run_id})


def trigger_fired(trigger: str, experiment: str | None) -> None:
    log.info("trigger fired: %s starts a tune job (experiment=%s)", trigger, experiment or "-",
             extra={"event": "trigger_fired", "trigger": trigger, "experiment": experiment})

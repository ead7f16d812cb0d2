"""Evolution tracking: three axes measured per sweep that produced a version, and over time.

- accuracy: the version's holdout AUC (at promotion) and its live AUC (first labelled day, and now);
- smartness: how fast the sweep found its best. `curve_area` is the mean over trials of the best-so-far AUC
  divided by the best (1.0: the first trial was the best); `trials_to_99` the first trial reaching 99% of the
  best. `smartness` = curve_area - its baseline's (`smartness_baseline`): the random search run on the same
  space and data when one was asked for (`random_search`, seedcore.organism.baselines), else the same trials
  in random order (`random_order`, the expectation over RANDOM_ORDERS shuffles), which measures order only
  and understates the gain over random search (a searcher's trials, reshuffled, beat random draws; README);
- adaptability: trials saved by warm start (`adaptability_baseline`): the `trials_to_99` of the same sweep run
  cold when one was asked for (`cold_start`, "paired_cold"), else the mean of the cold sweeps on the same data
  fingerprint ("same_data_cold"), minus this warm-started sweep's (None for a cold sweep, or with neither).
A baseline's job is never a sweep of its own here.

    evolution = Evolution(settings, db, registry)     # one per process (seedcore.services)
    evolution.answer(limit=10)                        # held TTL_S; dropped on a promotion or a job's end
    JobRunner(..., watchers=[evolution.watch])        # a finished sweep's axes logged to its version's run,
                                                      # in a thread of its own (`stop()` waits for it)
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from seedcore.config import Settings
from seedcore.db.database import Database
from seedcore.db.tables_jobs import JOB_SUCCEEDED
from seedcore.jobs.kinds import JobContext
from seedcore.memory.history import daily_live
from seedcore.memory.working import WorkingMemory
from seedcore.monitoring.feedback import live_metrics
from seedcore.names import AUC
from seedcore.organism.baselines import baseline_of, finished_sweeps, paired
from seedcore.promotion.registry import Registry

log = logging.getLogger(__name__)

RANDOM_ORDERS = 200
MAX_SWEEPS = 200  # sweeps read at most (the latest) for the axes over time
SWEEPS_KEPT = 2_000  # finished sweeps whose axes a process keeps (their trials never change: read once)
TTL_S = 60.0  # the evolution answer reads every sweep's runs from MLflow: held this long at most
AXES_LOGGED = ("curve_area", "trials_to_99", "smartness", "trials_saved", "holdout_auc")  # as evolution_<key>
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def best_so_far(aucs) -> np.ndarray:
    return np.maximum.accumulate(np.asarray(aucs, dtype=np.float64))


def curve_stats(aucs) -> dict:
    """`curve_area` and `trials_to_99` of trial AUCs in the order they ran."""
    aucs = np.asarray(aucs, dtype=np.float64)
    aucs = aucs[np.isfinite(aucs)]
    if aucs.size == 0 or aucs.max() <= 0:
        return {"trials": int(aucs.size), "curve_area": None, "trials_to_99": None, "best": None}
    curve, best = best_so_far(aucs), float(aucs.max())
    return {"trials": int(aucs.size), "curve_area": float(np.mean(curve / best)),
            "trials_to_99": int(np.argmax(curve >= 0.99 * best)) + 1, "best": best}


def random_order_baseline(aucs, orders: int = RANDOM_ORDERS, seed: int = 0) -> dict:
    """The expected curve_area and trials_to_99 of the same trials in random order."""
    aucs = np.asarray(aucs, dtype=np.float64)
    aucs = aucs[np.isfinite(aucs)]
    if aucs.size == 0:
        return {"curve_area": None, "trials_to_99": None}
    rng = np.random.default_rng(seed)
    stats = [curve_stats(rng.permutation(aucs)) for _ in range(orders)]
    return {"curve_area": float(np.mean([s["curve_area"] for s in stats])),
            "trials_to_99": float(np.mean([s["trials_to_99"] for s in stats]))}


def sweep_trials(client, parent_run_id: str) -> list[float]:
    """The sweep's trial AUCs in start order, from its MLflow child runs."""
    if not _RUN_ID.match(parent_run_id or ""):
        return []
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=10_000, order_by=["attributes.start_time ASC"])
    aucs = []
    for run in runs:
        metrics = run.data.metrics
        value = metrics.get(f"final_{AUC}", metrics.get(AUC))
        if value is not None:
            aucs.append(float(value))
    return aucs


def sweep_axes(client, job: dict) -> dict:
    """Smartness of one finished sweep (a job row as a dict with `result`)."""
    result = job.get("result") or {}
    aucs = sweep_trials(client, _parent_run(job))
    stats, baseline = curve_stats(aucs), random_order_baseline(aucs)
    smart = None if stats["curve_area"] is None else stats["curve_area"] - baseline["curve_area"]
    warm = result.get("warm_start") or {}
    return {"job_id": job["id"], "version": result.get("model_version"), "trigger": job.get("trigger"),
            "finished_at": job.get("finished_at"), "fingerprint": (result.get("dataset") or {}).get("fingerprint"),
            "warm_start": warm.get("mode", "none"), "seeded_trials": warm.get("seeded_trials", 0),
            "promotion": (result.get("promotion") or {}).get("status"), "holdout_auc": (result.get("holdout") or {}).get(AUC),
            **stats, "random_order": baseline, "smartness": smart}


def adaptability(axes: list[dict]) -> None:
    """Fill `trials_saved` in place: cold sweeps' mean trials_to_99 on the same data minus a warm one's."""
    cold: dict[str, list[int]] = {}
    for a in axes:
        if a["warm_start"] == "none" and a["trials_to_99"] is not None:
            cold.setdefault(a["fingerprint"], []).append(a["trials_to_99"])
    for a in axes:
        peers = cold.get(a["fingerprint"])
        a["trials_saved"] = (float(np.mean(peers)) - a["trials_to_99"]) if (
            a["warm_start"] != "none" and peers and a["trials_to_99"] is not None) else None


class Evolution:
    """The evolution answer of one process: each finished sweep's axes read from MLflow once, the whole answer
    held in a working memory of its own for TTL_S, dropped by `invalidate` (a promotion, a job's end)."""

    def __init__(self, settings: Settings, db: Database, registry: Registry | None = None, ttl_s: float = TTL_S):
        self.settings, self.db = settings, db
        self.registry = registry or Registry(settings)  # MLflow's client opens on first use
        self.memory = WorkingMemory(ttl_s=ttl_s)
        self._sweeps: "OrderedDict[tuple[str, str], dict]" = OrderedDict()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []  # logging finished sweeps' axes

    def answer(self, limit: int = MAX_SWEEPS) -> dict:
        """`measure(limit=limit)`, from working memory."""
        return self.memory.get(("evolution", limit), lambda: self.measure(limit=limit)).value

    def invalidate(self, reason: str | None = None) -> None:
        self.memory.invalidate(reason)

    def measure(self, job_ids: list[str] | None = None, limit: int = MAX_SWEEPS) -> dict:
        """Every sweep's axes, oldest first, measured against its baselines if it has any, with accuracy now for
        its version and the trend of each axis; with `job_ids`, only those sweeps and the cold ones their
        trials_saved compares with; the latest `limit`."""
        axes, baselines = [], {}
        for job in _compared(finished_sweeps(self.db, limit), job_ids):
            try:
                axes.append(self._remembered_axes(job))
            except Exception as exc:  # noqa: BLE001 - a sweep whose runs are gone is left out, said so in the log
                log.warning("evolution: sweep %s left out: %s", job["id"], exc)
                continue
            baselines[job["id"]] = {kind: stats for kind, found in job["baselines"].items()
                                    if (stats := self._remembered_stats(found)) is not None}
        adaptability(axes)
        for a in axes:
            paired(a, baselines.get(a["job_id"], {}))
        name = self.settings.model_name
        for a in axes:
            if a["version"] is None:
                continue
            live = live_metrics(self.db, name, int(a["version"]), rows=self.settings.live_window_rows)
            days = daily_live(self.db, name, int(a["version"]))
            a["accuracy"] = {"holdout_auc": a["holdout_auc"], "live_auc_first_day": days[0][AUC] if days else None,
                             "live_auc_now": live[AUC], "live_n": live["n"]}
        if job_ids is not None:
            axes = [a for a in axes if a["job_id"] in job_ids]
        return {"sweeps": axes, "trend": _trend(axes)}

    def watch(self, context: JobContext) -> Callable[[str, Any], None]:
        """A JobWatcher: once a job's end is recorded, the held answer dropped and, for a finished sweep, its axes
        logged as metrics on its version's run in a thread of its own (reading the sweep's trials from MLflow
        must not hold the runner's next job); a baseline's end logs again the axes of the sweep it measures.
        Nothing is written but that log: a crash loses only it, and the axes are recomputed from MLflow whenever
        asked. `stop()` waits for it."""
        def end(state: str, outcome: Any) -> None:
            self.invalidate("job ended")
            if state != JOB_SUCCEEDED or not isinstance(outcome, dict) or not outcome.get("model_version"):
                return
            sweep_id = (baseline_of(context.trigger) or (None, context.job_id))[1]
            thread = threading.Thread(target=self._log_job, args=(sweep_id,), daemon=True,
                                      name=f"seedcore-evolution-{context.job_id[:8]}")
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        return end

    def _log_job(self, job_id: str) -> None:
        try:
            for axes in self.measure(job_ids=[job_id])["sweeps"]:
                self.log_axes(axes)
            log.info("evolution of job %s logged to MLflow", job_id, extra={"event": "evolution", "job_id": job_id})
        except Exception as exc:  # noqa: BLE001
            log.warning("evolution of job %s not logged to MLflow: %s", job_id, exc)

    def log_axes(self, axes: dict) -> None:
        """A sweep's axes as metrics on its version's source run, so the MLflow UI charts them: one batch, so a
        reader sees all of them or none."""
        if axes.get("version") is None:
            return
        self.registry.log_metrics(self.registry.get_version(axes["version"]).run_id, {
            f"evolution_{key}": axes[key] for key in AXES_LOGGED if isinstance(axes.get(key), (int, float))})

    def _remembered_axes(self, job: dict) -> dict:
        """sweep_axes, read from MLflow once per sweep (a copy: the caller adds to it)."""
        found = self._remembered(("sweep", job["id"]), lambda: sweep_axes(self.registry.client, job))
        return {**found, "random_order": dict(found["random_order"])}

    def _remembered_stats(self, job: dict) -> dict | None:
        """A baseline's job_id, curve_area, trials_to_99 and best, read from MLflow once (a copy); None when its
        runs cannot be read (the sweep is then measured as without it)."""
        def read() -> dict:
            stats = curve_stats(sweep_trials(self.registry.client, _parent_run(job)))
            return {"job_id": job["id"], **{k: stats[k] for k in ("curve_area", "trials_to_99", "best")}}
        try:
            return dict(self._remembered(("baseline", job["id"]), read))
        except Exception as exc:  # noqa: BLE001 - said so in the log
            log.warning("evolution: baseline %s left out: %s", job["id"], exc)
            return None

    def _remembered(self, key: tuple[str, str], read: Callable[[], dict]) -> dict:
        """What `read` gives for a finished job (`key`: what is read, the job's id), kept (its trials never
        change) for the latest SWEEPS_KEPT."""
        with self._lock:
            found = self._sweeps.get(key)
        if found is None:
            found = read()
            with self._lock:
                self._sweeps[key] = found
                while len(self._sweeps) > SWEEPS_KEPT:
                    self._sweeps.popitem(last=False)
        return found

    def stop(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` (default: the stop_timeout_s setting) for the sweeps' axes being logged; drop
        what is held. A log still running then is lost (a daemon thread): it is recomputable."""
        deadline = time.monotonic() + (self.settings.stop_timeout_s if timeout is None else timeout)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.invalidate("stopped")
        with self._lock:
            self._sweeps.clear()


def _compared(jobs: list[dict], job_ids: list[str] | None) -> list[dict]:
    """`jobs`, or with `job_ids` those jobs and (when one of them was warm-started) the cold sweeps on the same
    data that its trials_saved compares with."""
    if job_ids is None:
        return jobs
    wanted = [j for j in jobs if j["id"] in job_ids]
    data = {(j["result"].get("dataset") or {}).get("fingerprint") for j in wanted}
    warm = any(_warm_mode(j) != "none" for j in wanted)
    cold = [j for j in jobs if j["id"] not in job_ids and _warm_mode(j) == "none"
            and (j["result"].get("dataset") or {}).get("fingerprint") in data]
    return [j for j in jobs if j in wanted or (warm and j in cold)]


def _parent_run(job: dict) -> str | None:
    return ((job.get("result") or {}).get("mlflow") or {}).get("parent_run_id")


def _warm_mode(job: dict) -> str:
    return (job["result"].get("warm_start") or {}).get("mode", "none")


def _trend(axes: list[dict]) -> dict:
    def series(key):
        return [a[key] for a in axes if a.get(key) is not None]
    out = {}
    for key in ("holdout_auc", "smartness", "trials_saved"):
        values = series(key)
        out[key] = {"first": values[0] if values else None, "last": values[-1] if values else None,
                    "n": len(values)}
    return out

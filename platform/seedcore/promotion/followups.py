"""What a sweep or a training run does after its answer: the version's pictures (seedcore.promotion.plots), its
description (seedcore.promotion.model_card) and its drift reference (seedcore.monitoring.drift); for a
multi-objective sweep, its Pareto front's table and picture too (the answer carries the front itself).

The answer needs none of them - the version is registered and, when asked, promoted before it - so they run
afterwards in a thread of their own. Each is `pending`, then `done` or `failed`: in the answer (`followups`),
in the job's row (its result's `followups`, rewritten as each one ends) and in this process (`wait`). A
restart finishes what a process that died left pending in its jobs (`resume`).

    result = run_sweep(settings, request)                # result["followups"]: {"plots": "pending", ...}
    followups.wait(result["mlflow"]["parent_run_id"])    # {"model_card": "done", ..., "plots": "done"}
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections import OrderedDict
from typing import Callable

from sqlalchemy import Text, cast, select, update

from seedcore import names

from seedcore.promotion import model_card

from seedcore.promotion import plots
from seedcore.config import Settings
from seedcore.db.database import Database
from seedcore.db.tables_jobs import JOB_SUCCEEDED, KIND_TUNE, TuningJob
from seedcore.promotion.drift_reference import remember_reference
from seedcore.process_identity import owner_alive

log = logging.getLogger(__name__)

MODEL_CARD, DRIFT_REFERENCE, PLOTS = "model_card", "drift_reference", "plots"
STEPS = (MODEL_CARD, DRIFT_REFERENCE, PLOTS)  # every version's
PARETO_FRONT = "pareto_front"  # a multi-objective sweep's, besides
ORDER = (MODEL_CARD, DRIFT_REFERENCE, PARETO_FRONT, PLOTS)  # the order they run in: the quickest first
PENDING, DONE, FAILED = "pending", "done", "failed"
RESULT_KEY = "followups"  # where an answer and a job's result keep their states
_STEP_CAP_S = 120.0  # at exit, how long the one step under way may still take (a hung store is given up on)
_KEPT = 64  # ended follow-ups of this process that `wait` still finds
_RECENT: "OrderedDict[str, FollowUps]" = OrderedDict()
_RECENT_LOCK = threading.Lock()

Record = Callable[[dict], None]


class FollowUps:
    """The follow-ups of one registered version, known by the MLflow run they belong to (`key`: a sweep's
    parent run, a training's run). What is not handed in (the booster, the dataset, a sweep's trials) is
    read back from MLflow and the data dir. A sweep's Pareto `front` (with its `objectives`, both as in its
    answer) adds the PARETO_FRONT step."""

    def __init__(self, settings: Settings, version: int | str, key: str, *, registry=None, booster=None,
                 dataset=None, parent_run_id: str | None = None, trials: list[dict] | None = None,
                 front: list[dict] | None = None, objectives: list[dict] | None = None,
                 states: dict | None = None, db: Database | None = None):
        self.settings, self.version, self.key = settings, int(version), key
        self.parent_run_id = parent_run_id  # a sweep's: its pictures go there too
        self.front, self.objectives = front, objectives
        self.states = dict(states or dict.fromkeys((*STEPS, PARETO_FRONT) if front else STEPS, PENDING))
        self._registry, self._booster, self._dataset, self._trials, self._db = registry, booster, dataset, trials, db
        self._mv = None
        self._ended = threading.Event()
        self._stopping = threading.Event()  # set by stop()

    def describe(self) -> dict:
        return dict(self.states)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def start(self, record: Record | None = None) -> "FollowUps":
        """Run them in a thread of their own; `record(states)` after each one ends."""
        with _RECENT_LOCK:
            _RECENT[self.key] = self
            while len(_RECENT) > _KEPT:
                _RECENT.popitem(last=False)
        threading.Thread(target=self.run, args=(record,), name=f"seedcore-followups-{self.key[:8]}",
                         daemon=True).start()
        return self

    def run(self, record: Record | None = None) -> dict:
        """Run each pending one in turn (a failure is logged and recorded, never raised); their states."""
        try:
            for step in ORDER:
                if self.states.get(step) != PENDING:
                    continue
                if self._stopping.is_set():
                    break
                try:
                    ok = getattr(self, f"_{step}")()
                except Exception:  # noqa: BLE001 - the answer stands; the state tells what is missing
                    log.warning("follow-up %s of %s version %s failed", step, self.settings.model_name,
                                self.version, exc_info=True)
                    ok = False
                self.states[step] = DONE if ok else FAILED
                if record is not None:
                    record(self.describe())
        finally:
            self._ended.set()
        return self.describe()

    def stop(self) -> None:
        """Begin no further step: the one under way ends, the rest stay pending."""
        self._stopping.set()

    def wait(self, timeout: float | None = None) -> dict:
        """Their states once all ended, or as they are at `timeout`."""
        self._ended.wait(timeout)
        return self.describe()

    # -- the steps ------------------------------------------------------------------------------
    def _model_card(self) -> bool:
        """The version's description, unless its promotion wrote one (with the champion gate's decision)."""
        mv = self._version(fresh=True)
        if not mv.description:
            model_card.describe(self.registry.client, self.registry.name, mv.version, mv.tags or {})
        return True

    def _drift_reference(self) -> bool:
        remember_reference(self.settings, self.version, self._data(), self._db)
        return True

    def _plots(self) -> bool:
        """ROC, precision-recall, calibration and importance on the logged model; a sweep's history and
        parameter importances on its parent run. Done when every picture is there."""
        client, data = self.registry.client, self._data()
        model_id = self._version().source.removeprefix("models:/")
        drawn = plots.log_model_plots(client, model_id, self._model(), data.x_holdout, data.y_holdout)
        ok = set(drawn) == set(plots.MODEL_PLOTS)
        if self.parent_run_id:
            drawn = plots.log_sweep_plots(client, self.parent_run_id, self._trial_summaries())
            ok = ok and set(drawn) == set(plots.SWEEP_PLOTS)
        return ok

    def _pareto_front(self) -> bool:
        """The front's table and picture on the sweep's parent run. Done when both are there."""
        logged = plots.log_front(self.registry.client, self.parent_run_id, self.front, self.objectives)
        return set(logged) == {plots.FRONT_TABLE, plots.FRONT_PLOT}

    # -- what the steps read, loaded once ---------------------------------------------------------
    @property
    def registry(self):
        if self._registry is None:
            from seedcore.promotion.registry import Registry

            self._registry = Registry(self.settings)
        return self._registry

    def _version(self, fresh: bool = False):
        if self._mv is None or fresh:
            self._mv = self.registry.get_version(self.version)
        return self._mv

    def _model(self):
        if self._booster is None:
            self._booster = self.registry.load_booster(self._version())
        return self._booster

    def _data(self):
        if self._dataset is None:
            self._dataset = self.registry.dataset_of(self._version())
        return self._dataset

    def _trial_summaries(self) -> list[dict]:
        if self._trials is None:
            self._trials = trial_summaries(self.registry.client, self.parent_run_id)
        return self._trials


def wait(key: str, timeout: float | None = None) -> dict | None:
    """The states of this process's follow-ups for the run `key` once they ended (or at `timeout`); None when
    this process started none for it lately."""
    with _RECENT_LOCK:
        found = _RECENT.get(key)
    return None if found is None else found.wait(timeout)


def trial_summaries(client, parent_run_id: str) -> list[dict]:
    """A sweep's trials as its MLflow child runs tell them, in the order they started (the shape
    plots.log_sweep_plots takes)."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment_id], f"tags.`{names.TAG_PARENT_RUN}` = '{parent_run_id}'",
                              max_results=10_000)
    summaries = []
    for number, run in enumerate(sorted(runs, key=lambda r: r.info.start_time), start=1):
        outcome = run.data.tags.get("seedcore.outcome")
        auc = run.data.metrics.get(f"final_{names.AUC}") if outcome == "completed" else None
        summaries.append({"number": number, "params": {k: _value(v) for k, v in run.data.params.items()},
                          "auc": auc, "outcome": outcome})
    return summaries


# -- in a job's row ------------------------------------------------------------------------------------
def record_in_job(db: Database, job_id: str, states: dict) -> None:
    """Write `states` as the job's `result.followups` (a succeeded job's; nothing else in its row changes)."""
    succeeded = (TuningJob.id == job_id, TuningJob.state == JOB_SUCCEEDED)
    with db.session() as session:
        result = session.scalar(select(TuningJob.result).where(*succeeded))
        if isinstance(result, dict) and RESULT_KEY in result:
            session.execute(update(TuningJob).where(*succeeded).values(result={**result, RESULT_KEY: dict(states)}))


def pending_jobs(db: Database) -> list[dict]:
    """Succeeded jobs with a follow-up still pending whose process is gone (by pid, host and start time)."""
    with db.session() as session:
        rows = session.scalars(select(TuningJob).where(TuningJob.state == JOB_SUCCEEDED,
                                                       cast(TuningJob.result, Text).like(f'%"{PENDING}"%')))
        jobs = [row.to_dict() for row in rows]
    return [job for job in jobs if PENDING in ((job["result"] or {}).get(RESULT_KEY) or {}).values()
            and not owner_alive(job["owner_pid"], job["owner_host"], job["owner_start"])]


def resume(settings: Settings, db: Database) -> list[str]:
    """Finish the follow-ups that processes now gone left pending in their jobs; the ids of those jobs. Each
    step may be done again (pictures overwrite, a description is rewritten, a stored reference is kept)."""
    resumed = []
    for job in pending_jobs(db):
        result, job_id = job["result"], job["id"]
        states = {k: v for k, v in result[RESULT_KEY].items() if k in ORDER}
        tune = job["kind"] == KIND_TUNE
        key = (result.get("mlflow") or {}).get("parent_run_id" if tune else "run_id")
        version = result.get("model_version")
        if key is None or version is None:  # not a result we wrote: nothing to finish them from
            record_in_job(db, job_id, {k: FAILED if v == PENDING else v for k, v in states.items()})
            continue
        log.info("finishing the pending follow-ups of job %s: %s", job_id, states)
        FollowUps(settings, version, key, parent_run_id=key if tune else None, front=result.get("pareto_front"),
                  objectives=result.get("objectives"), states=states, db=db).run(
            lambda now, job_id=job_id: record_in_job(db, job_id, now))
        resumed.append(job_id)
    return resumed


@atexit.register
def _finish_at_exit() -> None:
    """A script that ends right after its sweep still gets the pictures: wait (each at most stop_timeout_s)."""
    with _RECENT_LOCK:
        running = [f for f in _RECENT.values() if not f.ended]
    for followups in running:
        followups.wait(followups.settings.stop_timeout_s)
    # Past that, the steps not begun stay pending (a job's: the next `seedcore up` over its store finishes them), but
    # the step under way must end before the interpreter does: a thread still drawing or writing while
    # Python finalizes can crash the process (SIGSEGV) after the sweep's answer was given.
    for followups in running:
        followups.stop()
    for followups in running:
        if not followups.ended:
            log.info("waiting for the follow-up under way of version %s; the rest stay pending for the next "
                     "server start", followups.version)
            followups.wait(_STEP_CAP_S)


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text

"""Monitors: a rule over a production metric that starts a sweep when breached, once; and the outcomes
(feedback) the live metrics are computed from, taken in here so that whoever holds a view of them hears of it.

A breach fires only if no job this monitor started is queued or running and the cooldown has passed;
the firing itself is a compare-and-set UPDATE of `last_fired_at` in SQL, so of several processes
checking the same breach exactly one starts the job. The sweep starts only within the triggered-sweep
budgets (all triggers', and the monitor's own `max_sweeps_per_day`); a refused one is recorded.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Literal

from pydantic import Field
from sqlalchemy import func, select, update

from seedcore.config import Settings
from seedcore.db.base import as_utc, utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import HIGHER_IS_BETTER, Monitor
from seedcore.db.tables_jobs import ACTIVE_STATES, TRIGGER_MONITOR_PREFIX, TuningJob
from seedcore.errors import SeedcoreError, SweepBudgetError, ValidationError
from seedcore.memory.store import IncidentStore
from seedcore.monitoring.estimate import estimated_auc
from seedcore.monitoring.evaluate import latest_evaluation
from seedcore.memory.events import record_detection
from seedcore.monitoring.feedback import live_metrics, record_feedback, record_scored
from seedcore.monitoring.live import version_drift
from seedcore.monitoring.rules import StoredRules
from seedcore.monitoring.triggers import Submit, check_tune, record_refused, start_job, validate_body
from seedcore.names import AUC, LOGLOSS
from seedcore.request_models import StrictBody, patch_model
from seedcore.vocabulary import MonitorMetric, values

log = logging.getLogger(__name__)

OK, BREACHED, INSUFFICIENT, NO_MODEL, DISABLED = "ok", "breached", "insufficient_data", "no_model", "disabled"
STARTING_GRACE = timedelta(minutes=5)  # fired, job not yet recorded: another process is starting it
MetricName = Literal[values(MonitorMetric)]


class Window(StrictBody):
    """The last `rows` labelled (or, for psi_max and estimated_auc, logged) rows, within the last `hours` if given."""

    rows: int | None = Field(default=None, ge=1, le=10_000_000)
    hours: float | None = Field(default=None, gt=0, le=24 * 3650)


class MonitorBody(StrictBody):
    """A monitor as created: `threshold` (absolute) or `max_drop` (from the version's holdout figure)."""

    name: str = Field(min_length=1, max_length=200)
    metric: MetricName
    threshold: float | None = Field(default=None, ge=0, le=1e6)
    max_drop: float | None = Field(default=None, ge=0, le=1e6)
    min_samples: int = Field(default=100, ge=1, le=10_000_000)
    window: Window = Field(default_factory=Window)
    cooldown_s: float = Field(default=3600.0, ge=0, le=365 * 86400)
    tune: dict[str, Any] = Field(description="the /xgboost/tune request to run when the monitor fires")
    enabled: bool = True
    max_sweeps_per_day: int | None = Field(default=None, ge=1, le=100_000,
                                           description="sweeps this monitor may start in any 24 hours (besides "
                                                       "SEEDCORE_MAX_TRIGGERED_SWEEPS_PER_DAY for all triggers)")


MonitorPatch = patch_model(MonitorBody, "MonitorPatch", "Any monitor field; the result is validated as a whole.")


def check_rule(body: MonitorBody) -> None:
    """Exactly one of threshold and max_drop; psi_max has no holdout figure to drop from."""
    if (body.threshold is None) == (body.max_drop is None):
        raise ValidationError("give either threshold (absolute) or max_drop (relative to holdout)", field="threshold")
    if body.max_drop is not None and body.metric == "psi_max":
        raise ValidationError("psi_max has no holdout figure: use threshold (e.g. 0.25)", field="max_drop")


class MonitorService(StoredRules):
    """Monitor CRUD and checks for one deployment; `submit(request, trigger)` queues a job."""

    table, noun = Monitor, "monitor"

    def __init__(self, settings: Settings, db: Database, submit: Submit | None = None,
                 clock: Callable[[], datetime] = utcnow, registry=None):
        super().__init__(db)
        self.settings, self.submit, self.clock = settings, submit, clock
        self.incidents = IncidentStore(db)
        self._registry = registry
        self._on_outcomes: list[Callable[[int | None], None]] = []

    @property
    def registry(self):
        if self._registry is None:
            from seedcore.promotion.registry import Registry

            self._registry = Registry(self.settings)
        return self._registry

    # -- CRUD (list, get, delete: StoredRules) ---------------------------------------------------
    def create(self, body: MonitorBody) -> dict:
        """Validate the rule and the sweep (400, nothing stored), then store the monitor."""
        return self._insert(created_at=as_utc(self.clock()), **self._values(body))

    def update(self, monitor_id: str, patch: MonitorPatch) -> dict:
        """Change fields; the merged monitor is validated like a new one."""
        current = self.get(monitor_id)
        merged = {k: current[k] for k in MonitorBody.model_fields} | patch.model_dump(exclude_unset=True)
        body = validate_body(MonitorBody, {**merged, "window": dict(merged["window"] or {})})
        return self._replace(monitor_id, self._values(body))

    def _values(self, body: MonitorBody) -> dict:
        check_rule(body)
        return {**body.model_dump(exclude={"tune", "window"}), "window": body.window.model_dump(exclude_none=True),
                "tune": check_tune(self.settings, body.tune)}

    # -- outcomes -------------------------------------------------------------------------------
    def subscribe_outcomes(self, listener: Callable[[int | None], None]) -> None:
        """Call `listener(version)` after outcomes were stored (None: for ids of any version), e.g. to drop a
        view of the live metrics; a failing listener is logged, never the caller's error."""
        self._on_outcomes.append(listener)

    def take_feedback(self, ids: list[str], labels: list[int]) -> dict:
        """Labels for logged predictions (seedcore.monitoring.feedback.record_feedback), then the listeners."""
        result = record_feedback(self.db, self.settings, ids, labels)
        if result["accepted"]:
            self._outcomes_arrived(None)
        return result

    def take_scored(self, version: int, x, predictions: list[float], labels: list[int]) -> list[str]:
        """Rows scored here with their labels (record_scored), then the listeners."""
        ids = record_scored(self.db, self.settings.model_name, version, x, predictions, labels)
        self._outcomes_arrived(version)
        return ids

    def _outcomes_arrived(self, version: int | None) -> None:
        for listener in list(self._on_outcomes):
            try:
                listener(version)
            except Exception:  # noqa: BLE001 - the outcomes are stored; a stale view ages out on its own
                log.exception("an outcomes listener failed")

    # -- checking ------------------------------------------------------------------------------
    def check_all(self) -> list[dict]:
        """Check every enabled monitor; one monitor's failure never stops the others."""
        outcomes = []
        for monitor in self.list():
            if not monitor["enabled"]:
                continue
            try:
                outcomes.append(self.check(monitor["id"]))
            except SeedcoreError as exc:
                log.error("monitor %s could not be checked: %s", monitor["name"], exc.message)
                outcomes.append({"id": monitor["id"], "state": "error", "error": exc.message, "fired": False})
        return outcomes

    def check(self, monitor_id: str) -> dict:
        """Measure the metric on the production version; fire the sweep on a breach if allowed."""
        row, now = self._row(monitor_id), as_utc(self.clock())
        monitor = row.to_dict()
        mv = self.registry.production_version()
        if mv is None:
            return self._record(monitor, {"state": NO_MODEL, "value": None, "n": 0}, now)
        measured = self.measure(monitor, mv)
        job = None
        if measured["state"] == BREACHED:
            job = self._fire(row, monitor, measured, now)
        return {**self._record(monitor, measured, now), "fired": job is not None, "job_id": job and job["id"]}

    def measure(self, monitor: dict, mv) -> dict:
        """`{"value", "n", "baseline", "excess", "rule", "state"}`; excess > 0 means worse than the baseline."""
        version, metric, window = int(mv.version), monitor["metric"], monitor["window"] or {}
        value, n, drift = self._value(metric, version, window.get("rows") or self.settings.live_window_rows,
                                      window.get("hours"))
        holdout = self.registry.describe(mv)["holdout"]
        higher = metric in HIGHER_IS_BETTER
        if monitor["threshold"] is not None:
            baseline, rule = monitor["threshold"], "below threshold" if higher else "above threshold"
        else:
            baseline, rule = holdout.get(AUC if higher else LOGLOSS), f"drop of more than {monitor['max_drop']} from holdout"
        measured = {"value": value, "n": n, "baseline": baseline, "rule": rule, "version": version, "drift": drift,
                    "excess": None, "state": INSUFFICIENT}
        if value is None or baseline is None or n < monitor["min_samples"]:
            return measured
        excess = (baseline - value) if higher else (value - baseline)
        breached = excess > (monitor["max_drop"] if monitor["max_drop"] is not None else 0.0)
        return {**measured, "excess": excess, "state": BREACHED if breached else OK}

    def _value(self, metric: str, version: int, rows: int, hours: float | None):
        name = self.settings.model_name
        if metric in ("live_auc", "live_logloss"):
            live = live_metrics(self.db, name, version, rows=rows, hours=hours)
            return live[AUC if metric == "live_auc" else LOGLOSS], live["n"], None
        if metric == MonitorMetric.ESTIMATED_AUC:
            return estimated_auc(self.db, self.registry, version, rows, hours)
        if metric == "psi_max":
            features = self.registry.describe(self.registry.get_version(version))["feature_names"]
            report = version_drift(self.db, self.settings, version, features, rows, hours)
            return (None, 0, None) if report is None else (report["psi_max"], report["n"], report)
        evaluation = latest_evaluation(self.db, name, version)
        return (None, 0, None) if evaluation is None else (evaluation["metrics"][AUC], evaluation["metrics"]["rows"], None)

    def _record(self, monitor: dict, measured: dict, now: datetime) -> dict:
        with self.db.session() as session:
            session.execute(update(Monitor).where(Monitor.id == monitor["id"]).values(
                last_value=measured["value"], last_n=measured["n"], last_state=measured["state"], last_checked_at=now))
        return {**self.get(monitor["id"]), "state": measured["state"], "value": measured["value"], "n": measured["n"]}

    # -- firing --------------------------------------------------------------------------------
    def blocked(self, row: Monitor, now: datetime) -> str | None:
        """Why a breach may not fire now: a job it started is active, the cooldown, or a start in progress."""
        fired = row.last_fired_at
        if fired is not None and now - fired < timedelta(seconds=row.cooldown_s):
            return "cooldown"
        if fired is not None and row.last_job_id is None and now - fired < STARTING_GRACE:
            return "starting"
        with self.db.session() as session:
            active = session.scalar(select(func.count()).select_from(TuningJob).where(
                TuningJob.trigger == f"{TRIGGER_MONITOR_PREFIX}{row.id}", TuningJob.state.in_(ACTIVE_STATES)))
        return "job_active" if active else None

    def _fire(self, row: Monitor, monitor: dict, measured: dict, now: datetime) -> dict | None:
        if self.submit is None or self.blocked(row, now) is not None:
            return None
        seen = Monitor.last_fired_at.is_(None) if row.last_fired_at is None else Monitor.last_fired_at == row.last_fired_at
        with self.db.session() as session:  # compare-and-set: of racing processes, one wins
            won = session.execute(update(Monitor).where(Monitor.id == row.id, seen).values(
                last_fired_at=now, last_job_id=None, last_error=None)).rowcount == 1
        if not won:
            return None
        trigger = f"{TRIGGER_MONITOR_PREFIX}{row.id}"
        try:
            job = start_job(self.settings, self.db, self.submit, monitor["tune"], trigger, row.max_sweeps_per_day)
        except SeedcoreError as exc:  # nothing started: the breach fires again at a later check
            if isinstance(exc, SweepBudgetError):
                record_refused(self.incidents, monitor, trigger, exc)
            else:
                log.error("monitor %s fired but its sweep could not start: %s", monitor["name"], exc.message)
            self._set(row.id, last_error=exc.message, last_fired_at=row.last_fired_at, last_job_id=row.last_job_id)
            return None
        self._set(row.id, last_job_id=job["id"])
        record_detection(self.incidents, monitor, measured, job["id"], trigger)
        return job

"""Sweeps started by the platform itself: the stored `/tune` request, checked when a monitor or schedule is
created, and turned into a job (with the feedback data source resolved) when it fires.

Triggered sweeps have a budget: at most SEEDCORE_MAX_TRIGGERED_SWEEPS_PER_DAY jobs started by schedules and
monitors together in any 24 hours, and a monitor's own `max_sweeps_per_day`, counted from the jobs table. The
check and the queueing hold one lease in SQL, so triggers racing in several processes never overspend it.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Callable

import pandas as pd
import pydantic
from sqlalchemy import func, select

from seedcore.runtime import logs
from seedcore._json import check_json
from seedcore.config import Settings
from seedcore.data_files import read_table, resolve_data_path
from seedcore.datasets import BUILTIN_LABEL, BUILTIN_SOURCE, builtin_frame
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.locks import LeaseLock
from seedcore.db.tables_jobs import TRIGGER_API, TRIGGER_MANUAL, TuningJob
from seedcore.errors import SeedcoreError, SweepBudgetError, ValidationError, invalid
from seedcore.memory.store import MAX_LIMIT, IncidentStore
from seedcore.monitoring.feedback import FEEDBACK_DIR, export_feedback
from seedcore.request_models import TuneRequest

log = logging.getLogger(__name__)

# `"data_source": "feedback"` in a stored request: the production version's training data plus every
# labelled outcome collected so far, exported to one Parquet file when the sweep starts.
FEEDBACK_SOURCE = "feedback"
_BUILTIN_DATA = {"data_source": None, "label_column": None, "feature_columns": None}
Submit = Callable[[TuneRequest, str], dict]  # (request, trigger) -> the queued job

BUDGET_WINDOW = timedelta(hours=24)
TRIGGER_LOCK = "triggered_sweeps"  # held while a trigger checks its budget and queues its job
TRIGGER_LOCK_TIMEOUT_S = 30.0
TRIGGERED_SWEEP_REFUSED = "triggered_sweep_refused"
REFUSED_SALIENCE = 0.5  # moderate: nothing broke, but a model may stay degraded until the budget allows


def validate_body(model: type[pydantic.BaseModel], data: dict, field: str | None = None):
    """`data` validated into `model`; the first problem is a 400 naming its field (under `field`)."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise invalid(exc, under=field) from None


def check_tune(settings: Settings, tune, field: str = "tune") -> dict:
    """The `/tune` request as stored: validated like `/xgboost/tune` (400 naming `tune.<field>`)."""
    if not isinstance(tune, dict):
        raise ValidationError("must be a /xgboost/tune request object", field=field)
    check_json(tune, field, max_depth=settings.max_json_depth, max_bytes=settings.max_request_bytes)
    request = validate_body(TuneRequest, tune, field)
    from seedcore.tuning.plan import plan_sweep

    feedback = request.data_source == FEEDBACK_SOURCE
    try:  # feedback data exists only when the sweep starts: check the rest against the built-in data now
        plan_sweep(settings, request.model_copy(update=_BUILTIN_DATA) if feedback else request)
        if request.data_source and not feedback:
            resolve_data_path(settings.data_dir, request.data_source)
    except ValidationError as exc:
        raise type(exc)(exc.message, field=f"{field}.{exc.field}" if exc.field else field) from None
    return request.model_dump(exclude_unset=True)


def start_job(settings: Settings, db: Database, submit: Submit, tune: dict, trigger: str,
              max_per_day: int | None = None, admit: Callable[[], None] | None = None) -> dict:
    """Queue the stored request as a job started by `trigger`; "feedback" data is exported first.

    SweepBudgetError (nothing queued) when the budget of all triggers, or this trigger's `max_per_day`, is spent.
    `admit()` runs first, under the same lease, and may raise to start nothing (a schedule's concurrency policy).
    """
    request = TuneRequest.model_validate(tune)
    busy = "another trigger is starting its sweep; this one tries again at its next check"
    with LeaseLock(db, TRIGGER_LOCK).hold(TRIGGER_LOCK_TIMEOUT_S, busy):
        if admit is not None:
            admit()
        check_budget(settings, db, trigger, max_per_day)
        logs.trigger_fired(trigger, request.experiment_name)
        if request.data_source == FEEDBACK_SOURCE:
            request = request.model_copy(update=feedback_data(settings, db, trigger))
        return submit(request, trigger)


def triggered_sweeps(db: Database, trigger: str | None = None) -> int:
    """Jobs created in the last 24 hours by any schedule or monitor (every trigger but api and manual), or by
    `trigger` alone. The window is the jobs' own clock: the time they were created at."""
    started_by = (TuningJob.trigger == trigger if trigger is not None
                  else TuningJob.trigger.not_in((TRIGGER_API, TRIGGER_MANUAL)))
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(TuningJob).where(
            started_by, TuningJob.created_at >= utcnow() - BUDGET_WINDOW))


def check_budget(settings: Settings, db: Database, trigger: str, max_per_day: int | None = None) -> None:
    """SweepBudgetError unless `trigger` may start one more sweep now."""
    budgets = [("all", settings.max_triggered_sweeps_per_day, None, "SEEDCORE_MAX_TRIGGERED_SWEEPS_PER_DAY")]
    if max_per_day is not None:
        budgets.append(("monitor", max_per_day, trigger, "its max_sweeps_per_day"))
    for scope, limit, counted, name in budgets:
        used = triggered_sweeps(db, counted)
        if used >= limit:
            whose = "schedules and monitors together" if counted is None else trigger
            raise SweepBudgetError(f"{trigger} may not start a sweep: {whose} started {used} in the last 24 hours, "
                                   f"the budget is {limit} ({name})",
                                   {"scope": scope, "used": used, "limit": limit,
                                    "window_hours": BUDGET_WINDOW.total_seconds() / 3600})


def record_refused(store: IncidentStore, source: dict, trigger: str, error: SweepBudgetError) -> dict | None:
    """Log a trigger the budget stopped; the first refusal since its last sweep is also a flashbulb incident
    (`triggered_sweep_refused`), so a trigger that keeps firing is remembered once, not at every check."""
    since = utcnow() - BUDGET_WINDOW
    with store.db.session() as session:
        last_job = session.scalar(select(func.max(TuningJob.created_at)).where(TuningJob.trigger == trigger))
    if last_job is not None and last_job > since:
        since = last_job
    earlier = store.query(event_type=TRIGGERED_SWEEP_REFUSED, since=since, limit=MAX_LIMIT)["items"]
    extra = {"event": TRIGGERED_SWEEP_REFUSED, "trigger": trigger, **error.budget}
    if any(incident["payload"].get("trigger") == trigger for incident in earlier):
        log.info("triggered sweep refused again: %s", error.message, extra=extra)
        return None
    log.warning("triggered sweep refused: %s", error.message, extra=extra)
    payload = {"event_type": TRIGGERED_SWEEP_REFUSED, "timestamp": time.time(), "outcome": "refused",
               "trigger": trigger, "source_id": source["id"], "source_name": source["name"], "reason": error.message,
               **error.budget, "salience": REFUSED_SALIENCE}
    return store.record(TRIGGERED_SWEEP_REFUSED, "refused", REFUSED_SALIENCE, payload,
                        experiment_name=source["tune"].get("experiment_name"))


def feedback_data(settings: Settings, db: Database, trigger: str) -> dict:
    """Export production's training data plus the feedback; the data fields of a request that uses it."""
    from seedcore.promotion.registry import Registry

    registry = Registry(settings)
    mv = registry.production_version()
    if mv is None:
        raise SeedcoreError("no production version: the feedback data source needs its training data")
    info = registry.describe(mv)
    base, label = _base_frame(settings, info["dataset"]["source"], info["dataset"]["label_column"])
    features = info["feature_names"] or [c for c in base.columns if c != label]
    name = f"{trigger.replace(':', '_')}_{time.strftime('%Y%m%d-%H%M%S')}"
    source, rows = export_feedback(db, settings, base, features, label, name)
    sidecar = settings.data_dir / FEEDBACK_DIR / f"{name}.json"
    sidecar.write_text(json.dumps({"base_source": _base_of(settings, info["dataset"]["source"]),
                                   "label_column": label, "feedback_rows": rows}))
    return {"data_source": source, "label_column": label, "feature_columns": list(features)}


def _base_of(settings: Settings, source: str | None) -> str:
    """The original data behind `source`: an earlier feedback export names its own base."""
    if source and source != BUILTIN_SOURCE:
        sidecar = Path(source).with_suffix(".json")
        if sidecar.parent == (settings.data_dir / FEEDBACK_DIR).resolve() and sidecar.is_file():
            return json.loads(sidecar.read_text())["base_source"]
    return source or BUILTIN_SOURCE


def _base_frame(settings: Settings, source: str | None, label: str | None) -> tuple[pd.DataFrame, str]:
    base = _base_of(settings, source)
    if base == BUILTIN_SOURCE:
        return builtin_frame(), label or BUILTIN_LABEL
    return read_table(resolve_data_path(settings.data_dir, base)), label

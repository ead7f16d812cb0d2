"""Sweeps started by the platform itself: the stored `/tune` request, checked when a monitor or schedule is
created, and turned into a job (with the feedback data source resolved) when it fires."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pydantic

from seedcore import logs
from seedcore._json import check_json
from seedcore.config import Settings
from seedcore.data import BUILTIN_LABEL, BUILTIN_SOURCE, builtin_frame, read_table, resolve_data_path
from seedcore.db.database import Database
from seedcore.errors import SeedcoreError, ValidationError
from seedcore.monitoring.feedback import FEEDBACK_DIR, export_feedback
from seedcore.requests import TuneRequest

# `"data_source": "feedback"` in a stored request: the production version's training data plus every
# labelled outcome collected so far, exported to one Parquet file when the sweep starts.
FEEDBACK_SOURCE = "feedback"
_BUILTIN_DATA = {"data_source": None, "label_column": None, "feature_columns": None}
Submit = Callable[[TuneRequest, str], dict]  # (request, trigger) -> the queued job


def validate_body(model: type[pydantic.BaseModel], data: dict, field: str | None = None):
    """`data` validated into `model`; the first problem is a 400 naming its field (under `field`)."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        name = ".".join(part for part in (field, where) if part) or "body"
        raise ValidationError(f"{name}: {first['msg']}", field=name) from None


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


def start_job(settings: Settings, db: Database, submit: Submit, tune: dict, trigger: str) -> dict:
    """Queue the stored request as a job started by `trigger`; "feedback" data is exported first."""
    request = TuneRequest.model_validate(tune)
    logs.trigger_fired(trigger, request.experiment_name)
    if request.data_source == FEEDBACK_SOURCE:
        request = request.model_copy(update=feedback_data(settings, db, trigger))
    return submit(request, trigger)


def feedback_data(settings: Settings, db: Database, trigger: str) -> dict:
    """Export production's training data plus the feedback; the data fields of a request that uses it."""
    from seedcore.registry import Registry

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

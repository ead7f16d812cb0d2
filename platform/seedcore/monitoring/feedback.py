"""Outcomes for logged predictions (feedback), live metrics over a window, and the feedback export.

Feedback is all-or-nothing for the caller's mistakes (labels not 0/1, lengths that differ, ids of another
model: a 400 naming the field, nothing stored) and per id for what time did (unknown or expired ids are
reported one by one while the rest are stored).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select, update

from seedcore.config import Settings
from seedcore.db.base import as_utc, utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import PredictionRecord
from seedcore.errors import ValidationError
from seedcore.scoring import log_loss, roc_auc
from seedcore.monitoring.predlog import new_prediction_id, prediction_id_time
from seedcore.names import MAX_REQUEST_ROWS

MAX_FEEDBACK_ROWS = MAX_REQUEST_ROWS
MAX_ID_CHARS = 64
ACCEPTED, UNKNOWN, EXPIRED = "accepted", "unknown", "expired"
FEEDBACK_DIR = "feedback"


def check_labels(labels, rows: int, rows_field: str) -> list[int]:
    """0/1 integers, as many as the rows; ValidationError naming `labels` or `labels.<i>` otherwise."""
    if not isinstance(labels, list):
        raise ValidationError("must be a list of 0/1", field="labels")
    if len(labels) != rows:
        raise ValidationError(f"{len(labels)} labels for {rows} {rows_field}: give one label per row", field="labels")
    for i, label in enumerate(labels):
        if type(label) is not int or label not in (0, 1):
            raise ValidationError(f"labels are 0 or 1, got {label!r}", field=f"labels.{i}")
    return labels


def check_ids(ids) -> list[str]:
    """A non-empty list of at most MAX_FEEDBACK_ROWS distinct short strings (an id given twice would keep
    one of its labels silently)."""
    if not isinstance(ids, list) or not ids:
        raise ValidationError("must be a non-empty list of prediction ids", field="prediction_ids")
    if len(ids) > MAX_FEEDBACK_ROWS:
        raise ValidationError(f"at most {MAX_FEEDBACK_ROWS} per request", field="prediction_ids")
    seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
            raise ValidationError(f"a prediction id is a string of 1 to {MAX_ID_CHARS} characters",
                                  field=f"prediction_ids.{i}")
        if value in seen:
            raise ValidationError(f"prediction id {value!r} is given twice (at {seen[value]} and {i}): give one "
                                  "label per prediction", field=f"prediction_ids.{i}")
        seen[value] = i
    return ids


def record_feedback(db: Database, settings: Settings, ids: list[str], labels: list[int],
                    now: datetime | None = None) -> dict:
    """Attach labels to logged predictions of `settings.model_name`; a result per id."""
    check_ids(ids)
    check_labels(labels, len(ids), "prediction_ids")
    now = as_utc(now or utcnow())
    with db.session() as session:  # the rows stay locked until labelled: pruning cannot take them meanwhile
        found = dict(session.execute(select(PredictionRecord.id, PredictionRecord.model_name)
                                     .where(PredictionRecord.id.in_(ids)).with_for_update()).all())
        foreign = [i for i, pid in enumerate(ids) if pid in found and found[pid] != settings.model_name]
        if foreign:
            raise ValidationError(f"prediction {ids[foreign[0]]} belongs to model {found[ids[foreign[0]]]!r}, "
                                  f"not {settings.model_name!r}", field=f"prediction_ids.{foreign[0]}")
        updates = {pid: label for pid, label in zip(ids, labels) if pid in found}
        if updates:
            session.execute(update(PredictionRecord),
                            [{"id": pid, "label": label, "labelled_at": now} for pid, label in updates.items()])
        # pruning takes the oldest unlabelled rows: an id older than every one kept was pruned
        oldest = prediction_id_time(session.scalar(select(func.min(PredictionRecord.id))
                                                   .where(PredictionRecord.labelled_at.is_(None))) or "")
    results = [{"prediction_id": pid, "status": ACCEPTED if pid in found else _missing(pid, settings, now, oldest)}
               for pid in ids]
    return {"accepted": len(updates), "rejected": len(ids) - sum(pid in found for pid in ids), "results": results}


def _missing(prediction_id: str, settings: Settings, now: datetime, oldest: datetime | None) -> str:
    """`expired` when the id is older than the retention age or than every unlabelled row kept; else
    `unknown`."""
    issued = prediction_id_time(prediction_id)
    if issued is None or issued > now + timedelta(minutes=5):
        return UNKNOWN
    if issued < now - timedelta(hours=settings.predlog_max_age_h) or (oldest is not None and issued < oldest):
        return EXPIRED
    return UNKNOWN


def record_scored(db: Database, model_name: str, model_version: int, x: np.ndarray, predictions: Sequence[float],
                  labels: list[int], now: datetime | None = None) -> list[str]:
    """Rows scored here for outcomes that arrived without ids: logged with their labels at once."""
    check_labels(labels, len(predictions), "instances")
    now = as_utc(now or utcnow())
    ids = [new_prediction_id(now.timestamp()) for _ in labels]
    rows = [{"id": pid, "model_name": model_name, "model_version": model_version, "created_at": now,
             "features": [None if v != v else float(v) for v in row], "prediction": float(p), "label": label,
             "labelled_at": now} for pid, row, p, label in zip(ids, x.tolist(), predictions, labels)]
    with db.session() as session:
        session.execute(insert(PredictionRecord), rows)
    return ids


def windowed(query, rows: int | None, hours: float | None, time_column, now: datetime | None):
    if hours is not None:
        query = query.where(time_column >= as_utc(now or utcnow()) - timedelta(hours=hours))
    return query.order_by(time_column.desc()).limit(rows) if rows else query


def live_metrics(db: Database, model_name: str, version: int, rows: int | None = None, hours: float | None = None,
                 now: datetime | None = None) -> dict:
    """AUC, logloss and the count over the version's last `rows` labelled predictions (within `hours`)."""
    query = select(PredictionRecord.prediction, PredictionRecord.label).where(
        PredictionRecord.model_name == model_name, PredictionRecord.model_version == version,
        PredictionRecord.labelled_at.is_not(None))
    with db.session() as session:
        pairs = session.execute(windowed(query, rows, hours, PredictionRecord.labelled_at, now)).all()
    if not pairs:
        return {"auc": None, "logloss": None, "n": 0, "positive_rate": None}
    prob, y = np.array([p for p, _ in pairs]), np.array([label for _, label in pairs], dtype=np.float64)
    auc = roc_auc(y, prob)
    return {"auc": None if auc != auc else auc, "logloss": log_loss(y, prob), "n": len(pairs),
            "positive_rate": float(y.mean())}


def recent_inputs(db: Database, model_name: str, version: int, rows: int | None, hours: float | None = None,
                  now: datetime | None = None) -> np.ndarray:
    """The feature rows of the version's latest logged predictions, as a float matrix (None -> NaN)."""
    query = select(PredictionRecord.features).where(PredictionRecord.model_name == model_name,
                                                    PredictionRecord.model_version == version)
    with db.session() as session:
        found = session.scalars(windowed(query, rows, hours, PredictionRecord.created_at, now)).all()
    return np.array(found, dtype=np.float64) if found else np.empty((0, 0))


def export_feedback(db: Database, settings: Settings, base: pd.DataFrame, features: list[str], label: str,
                    name: str) -> tuple[str, int]:
    """`base` plus every labelled outcome of this model, as one Parquet file under <data>/feedback.

    Returns the path relative to the data dir (a `data_source`) and the number of feedback rows. Logged
    rows whose width differs from `features` (another feature set) are left out.
    """
    with db.session() as session:
        found = session.execute(select(PredictionRecord.features, PredictionRecord.label).where(
            PredictionRecord.model_name == settings.model_name, PredictionRecord.label.is_not(None))).all()
    usable = [(f, y) for f, y in found if len(f) == len(features)]
    extra = pd.DataFrame([f for f, _ in usable], columns=features, dtype=np.float64)
    extra[label] = [y for _, y in usable]
    frame = pd.concat([base[features + [label]].astype({c: np.float64 for c in features}), extra], ignore_index=True)
    frame[label] = frame[label].astype(np.int64)
    folder = Path(settings.data_dir) / FEEDBACK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{name}.parquet"
    partial = folder / f".{name}.parquet.tmp"
    frame.to_parquet(partial, index=False)
    partial.replace(final)  # never a half-written file under the final name
    return str(final.relative_to(settings.data_dir)), len(usable)

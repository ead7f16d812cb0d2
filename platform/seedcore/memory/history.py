"""Long-term memory: every version the registry holds, with what our SQL database knows of it over time.

It answers "how did we get here?": each version's configuration (hyperparameters), data fingerprint,
holdout metrics, live metrics per UTC day (from the outcomes fed back), evaluations, the job and trigger
that made it, and the job's energy. The registry's page of versions (MLflow) comes from the caller's
registry; this module adds the SQL side, one query per table for the whole page.

    history(registry, db, limit=20, offset=0)     # GET /xgboost/history, `seedcore history`
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sqlalchemy import select

from seedcore.db.base import iso_utc
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import ModelEvaluation, PredictionRecord
from seedcore.db.tables_jobs import TuningJob
from seedcore.db.tables_organism import JobEnergy
from seedcore.names import AUC, LOGLOSS
from seedcore.scoring import log_loss, roc_auc

MAX_LIVE_ROWS = 20_000  # labelled outcomes read per version at most (the latest), for its daily figures


def history(registry, db: Database, limit: int, offset: int) -> dict:
    """One page of `limit` versions from `offset`, newest first: `items`, `total`, `limit`, `offset` and
    `next_offset` (None on the last page). `registry` is a seedcore.promotion.registry.Registry."""
    page = registry.list_versions(limit=limit, offset=offset)
    items = history_page(db, registry.name, page["items"])
    end = offset + len(items)
    return {"items": items, "total": page["total"], "limit": limit, "offset": offset,
            "next_offset": end if end < page["total"] else None}


def history_page(db: Database, model_name: str, versions: list[dict]) -> list[dict]:
    """`versions` (registry descriptions) with `live` (per day), `evaluations`, `job`, `trigger`, `energy`."""
    numbers = [int(v["version"]) for v in versions]
    energy = _energy(db, model_name, numbers)
    jobs = _jobs(db, [e["job_id"] for e in energy.values()])
    evaluations = _evaluations(db, model_name, numbers)
    items = []
    for described in versions:
        version = int(described["version"])
        spent = energy.get(version)
        job = jobs.get(spent["job_id"]) if spent else None
        items.append({
            "version": version, "created_at": described.get("created_at"),
            "promoted_at": described.get("promoted_at"), "aliases": described.get("aliases", []),
            "experiment_name": described.get("experiment_name"),
            "hyperparameters": described.get("hyperparameters", {}),
            "dataset": described.get("dataset", {}), "holdout": described.get("holdout", {}),
            "live": daily_live(db, model_name, version), "evaluations": evaluations.get(version, []),
            "job_id": spent and spent["job_id"], "trigger": job and job["trigger"],
            "energy": spent and {k: spent[k] for k in ("cpu_seconds", "wall_seconds", "joules")},
        })
    return items


def daily_live(db: Database, model_name: str, version: int) -> list[dict]:
    """The version's labelled outcomes by UTC day: rows, AUC (None with one class) and logloss."""
    query = (select(PredictionRecord.labelled_at, PredictionRecord.prediction, PredictionRecord.label)
             .where(PredictionRecord.model_name == model_name, PredictionRecord.model_version == version,
                    PredictionRecord.labelled_at.is_not(None))
             .order_by(PredictionRecord.labelled_at.desc()).limit(MAX_LIVE_ROWS))
    with db.session() as session:
        rows = session.execute(query).all()
    days: dict[str, list] = defaultdict(list)
    for at, prediction, label in rows:
        days[at.date().isoformat()].append((prediction, label))
    out = []
    for day in sorted(days):
        p, y = (np.asarray(column, dtype=np.float64) for column in zip(*days[day]))
        auc = roc_auc(y, p) if 0 < y.sum() < y.size else None
        out.append({"day": day, "n": int(y.size), AUC: auc, LOGLOSS: log_loss(y, p)})
    return out


def _energy(db: Database, model_name: str, versions: list[int]) -> dict[int, dict]:
    if not versions:
        return {}
    with db.session() as session:
        rows = session.scalars(select(JobEnergy).where(JobEnergy.model_name == model_name,
                                                       JobEnergy.model_version.in_(versions))
                               .order_by(JobEnergy.ended_at)).all()
        return {row.model_version: row.to_dict() for row in rows}  # the latest job per version wins


def _jobs(db: Database, ids: list[str]) -> dict[str, dict]:
    if not ids:
        return {}
    with db.session() as session:
        rows = session.execute(select(TuningJob.id, TuningJob.trigger, TuningJob.kind, TuningJob.created_at)
                               .where(TuningJob.id.in_(ids))).all()
    return {row.id: {"trigger": row.trigger, "kind": row.kind, "created_at": iso_utc(row.created_at)} for row in rows}


def _evaluations(db: Database, model_name: str, versions: list[int]) -> dict[int, list[dict]]:
    if not versions:
        return {}
    with db.session() as session:
        rows = session.scalars(select(ModelEvaluation).where(ModelEvaluation.model_name == model_name,
                                                             ModelEvaluation.model_version.in_(versions))
                               .order_by(ModelEvaluation.created_at)).all()
        found: dict[int, list[dict]] = defaultdict(list)
        for row in rows:
            found[row.model_version].append({"created_at": iso_utc(row.created_at), "data_source": row.data_source,
                                             "rows": row.rows, AUC: row.metrics.get(AUC),
                                             LOGLOSS: row.metrics.get(LOGLOSS)})
    return found

"""Reading the energy ledger: what a version cost, weighs and serves in error, and whether its promotion paid
back (`model_info.energy`). The rows are written by seedcore.organism.energy.EnergyMeter.

Per version: the cost of the sweep that made it (CPU-seconds, wall seconds, joules = CPU-seconds x
SEEDCORE_WATTS_PER_CPU); `mem_bytes` (the model as XGBoost saves it) and `served_bytes` (the serving process's
resident memory growth on loading it once more); `pair`, the expected error cost of serving: logloss (live
once SEEDCORE_LIVE_MIN_ROWS labels arrived, holdout before) x predictions served per day, in nats a day. A
promotion's `net_delta`: (champion's pair - challenger's pair) x SEEDCORE_JOULES_PER_NAT x days in service -
the sweep's joules; `break_even_at` is when it reaches 0.

    ledger(settings, db, version, holdout)      # model_info's `energy`
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from seedcore.config import Settings
from seedcore.db.base import as_utc, iso_utc, utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import PredictionRecord
from seedcore.db.tables_organism import JobEnergy, VersionEnergy
from seedcore.monitoring.feedback import live_metrics
from seedcore.names import LOGLOSS

DAY = timedelta(days=1)
PROJECTION_DAYS = 30.0  # `net_delta_projected`: the net delta this many days after the promotion
NEVER_DAYS = 36500.0  # a break-even further away than a century is none, for any purpose


def champion_logloss(settings: Settings, db: Database, previous: int | None, champion_scores: dict) -> float | None:
    """The replaced version's logloss at the promotion: live when it had labels enough, else the gate's
    figure on the challenger's holdout."""
    if previous is None:
        return None
    live = live_metrics(db, settings.model_name, int(previous), rows=settings.live_window_rows)
    if live["n"] >= settings.live_min_rows and live[LOGLOSS] is not None:
        return float(live[LOGLOSS])
    return champion_scores.get(LOGLOSS)


def predictions_per_day(db: Database, model_name: str, version: int, now: datetime | None = None) -> float:
    """Predictions the version served in the last day; over its logged lifetime when that is shorter."""
    now = as_utc(now or utcnow())
    with db.session() as session:
        first, count = session.execute(select(func.min(PredictionRecord.created_at), func.count()).where(
            PredictionRecord.model_name == model_name, PredictionRecord.model_version == version,
            PredictionRecord.created_at >= now - DAY)).one()
    if not count:
        return 0.0
    span = max((now - as_utc(first)).total_seconds(), 3600.0) / 86400.0  # an hour at least: no burst extrapolated
    return count / min(span, 1.0)


def ledger(settings: Settings, db: Database, version: int, holdout: dict | None = None,
           now: datetime | None = None) -> dict:
    """model_info's `energy` for a version: cost, mem, pair, net delta so far and projected, break-even."""
    now = as_utc(now or utcnow())
    with db.session() as session:
        row = session.get(VersionEnergy, (settings.model_name, version))
        job = session.scalars(select(JobEnergy).where(JobEnergy.model_name == settings.model_name,
                                                      JobEnergy.model_version == version)
                              .order_by(JobEnergy.ended_at.desc()).limit(1)).first()
        job = job.to_dict() if job else None
        row = _row_dict(row)
    live = live_metrics(db, settings.model_name, version, rows=settings.live_window_rows)
    if live["n"] >= settings.live_min_rows and live[LOGLOSS] is not None:
        logloss, source = float(live[LOGLOSS]), "live"
    else:
        logloss, source = (holdout or {}).get(LOGLOSS, row.get("challenger_logloss")), "holdout"
    per_day = predictions_per_day(db, settings.model_name, version, now) or (row.get("predictions_per_day") or 0.0)
    pair = None if logloss is None else logloss * per_day
    answer = {"job_id": job and job["job_id"], "cpu_seconds": job and job["cpu_seconds"],
              "wall_seconds": job and job["wall_seconds"], "joules": job and job["joules"],
              "watts_per_cpu": settings.watts_per_cpu, "mem_bytes": row.get("mem_bytes"),
              "served_bytes": row.get("served_bytes"), "pair": pair, "pair_logloss": logloss, "pair_source": source,
              "predictions_per_day": per_day, "joules_per_nat": settings.joules_per_nat,
              "previous_version": row.get("previous_version"), "promoted_at": iso_utc(row.get("promoted_at")),
              "net_delta": None, "net_delta_per_day": None, "net_delta_projected": None,
              "projection_days": PROJECTION_DAYS, "break_even_at": None}
    return {**answer, **net_delta(settings, row, job, pair, per_day, now)}


def net_delta(settings: Settings, row: dict, job: dict | None, pair: float | None, per_day: float,
              now: datetime) -> dict:
    """The net delta so far and projected, and the break-even date, from the promotion's row (`champion_logloss`,
    `promoted_at`), the sweep's `joules` and the challenger's pair; {} when one of them is unknown."""
    champion, promoted_at = row.get("champion_logloss"), row.get("promoted_at")
    if champion is None or pair is None or promoted_at is None:
        return {}
    cost = (job or {}).get("joules") or 0.0
    saving = (champion * per_day - pair) * settings.joules_per_nat  # joules a day
    days = max(0.0, (now - promoted_at).total_seconds() / 86400.0)
    break_even = promoted_at + timedelta(days=cost / saving) if 0 < saving and cost / saving <= NEVER_DAYS else None
    return {"net_delta": saving * days - cost, "net_delta_per_day": saving,
            "net_delta_projected": saving * PROJECTION_DAYS - cost, "break_even_at": iso_utc(break_even),
            "paid_back": saving * days - cost >= 0}


def _row_dict(row: VersionEnergy | None) -> dict:
    if row is None:
        return {}
    return {column: getattr(row, column) for column in ("mem_bytes", "served_bytes", "promoted_at",
                                                        "previous_version", "champion_logloss", "challenger_logloss",
                                                        "predictions_per_day", "break_even_at",
                                                        "break_even_incident_id")}

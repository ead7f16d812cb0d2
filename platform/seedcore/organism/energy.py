"""Writing the energy ledger: each job's cost as it ends, each promoted version's row as it is promoted and its
size once it is served (reading it: seedcore.organism.ledger).

Per job: CPU-seconds of this process and every process under it (Ray's GCS, raylet and workers when Ray runs
locally), read every SAMPLE_S while the job runs (seedcore.organism.meter.TreeMeter), its wall seconds, and
joules = CPU-seconds x SEEDCORE_WATTS_PER_CPU. Per promotion: the version it replaced and how well each
predicted then. Per served version: its size as saved and the serving process's memory growth on loading it.

    meter = EnergyMeter(settings, db, registry, on_change=working.invalidate)   # seedcore.services builds it
    JobRunner(settings, db, promotion, watchers=[meter.watch])                 # per job (a JobWatcher)
    promotion.add_to_payload(meter.at_promotion)   # the ledger as of the promotion, in its incident
    promotion.subscribe(meter.on_promoted)                                      # per promotion
    meter.note_served_later(holder.model)         # mem figures and the holdout calibration, in a thread
    meter.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any, Callable

import psutil
from sqlalchemy import select

from seedcore._xgboost import xgb
from seedcore.config import Settings
from seedcore.db.base import as_utc, iso_utc, utcnow
from seedcore.db.database import Database
from seedcore.db.tables_organism import JobEnergy, VersionEnergy
from seedcore.jobs.kinds import JobContext
from seedcore.memory.events import record_break_even_missed, record_promotion_energy
from seedcore.memory.store import IncidentStore
from seedcore.monitoring.estimate import version_calibration
from seedcore.names import LOGLOSS
from seedcore.organism.ledger import PROJECTION_DAYS, champion_logloss, ledger, net_delta, predictions_per_day
from seedcore.organism.meter import TreeMeter
from seedcore.promotion.model_logging import model_bytes
from seedcore.promotion.registry import Registry

log = logging.getLogger(__name__)

MLFLOW_METRICS = ("cpu_seconds", "wall_seconds", "joules", "mem_bytes", "pair", "net_delta")  # as energy_<key>


class EnergyMeter:
    """Writes the ledger; `on_change()` after each write (the process's working memory drops what it held)."""

    def __init__(self, settings: Settings, db: Database, registry: Registry | None = None,
                 on_change: Callable[[], None] | None = None):
        self.settings, self.db = settings, db
        self.registry = registry or Registry(settings)  # MLflow's client opens on first use
        self.on_change = on_change or (lambda: None)
        self.incidents = IncidentStore(db)
        self._lock = threading.Lock()
        self._metering: dict[str, tuple[TreeMeter, float]] = {}  # job id: its meter, its start (monotonic)
        self._rate: tuple[int, float, str] | None = None  # the served version's predictions a day, and when read
        self._threads: list[threading.Thread] = []

    # -- per job -------------------------------------------------------------------------------
    def watch(self, context: JobContext) -> Callable[[str, Any], None]:
        """A JobWatcher: start measuring the job; the returned function records its cost once its end is
        recorded (state, then its result or error)."""
        job_id, started_at, wall0, meter = context.job_id, utcnow(), time.monotonic(), TreeMeter().start()
        rate = self._serving_rate()
        with self._lock:
            self._metering[job_id] = (meter, wall0)
            self._rate = rate or self._rate

        def end(state: str, outcome: Any) -> None:
            with self._lock:
                self._metering.pop(job_id, None)
            cpu, processes = meter.stop()
            version = outcome.get("model_version") if isinstance(outcome, dict) else None
            self.record_job(job_id, state, max(0.0, cpu), time.monotonic() - wall0, processes, started_at, version)
        return end

    def record_job(self, job_id: str, state: str, cpu_seconds: float, wall_seconds: float, processes: int,
                   started_at: datetime, version: int | None) -> dict:
        watts = self.settings.watts_per_cpu
        row = JobEnergy(job_id=job_id, model_name=self.settings.model_name, model_version=version, state=state,
                        cpu_seconds=cpu_seconds, wall_seconds=wall_seconds, watts_per_cpu=watts,
                        joules=cpu_seconds * watts, processes=processes, started_at=started_at, ended_at=utcnow())
        with self.db.session() as session:
            session.merge(row)
        log.info("job %s used %.2f CPU-s over %.2f s (%.1f J)", job_id, cpu_seconds, wall_seconds, row.joules,
                 extra={"event": "energy", "job_id": job_id, "cpu_seconds": cpu_seconds})
        if version is not None:
            self.log_to_mlflow(int(version))
            self._remember_promotion_energy(int(version))
        self.on_change()
        return row.to_dict()

    def _remember_promotion_energy(self, version: int) -> None:
        """A promoted version's ledger in flashbulb memory, now that its sweep's cost is known."""
        with self.db.session() as session:
            row = session.get(VersionEnergy, (self.settings.model_name, version))
            promoted = row is not None and row.promoted_at is not None
        if promoted:
            record_promotion_energy(self.incidents, version, ledger(self.settings, self.db, version))

    def log_to_mlflow(self, version: int) -> None:
        """The version's ledger as metrics on its source run (the MLflow UI charts them); logged, never raised."""
        try:
            mv = self.registry.get_version(version)
            energy = ledger(self.settings, self.db, version, self.registry.describe(mv)["holdout"])
            self.registry.log_metrics(mv.run_id, {f"energy_{key}": energy[key] for key in MLFLOW_METRICS
                                                  if isinstance(energy.get(key), (int, float))})
        except Exception as exc:  # noqa: BLE001 - the ledger stands without its MLflow copy
            log.warning("energy of version %s not logged to MLflow: %s", version, exc)

    def _serving_rate(self) -> tuple[int, float, str] | None:
        """(version, predictions a day, when) of the latest version promoted, read as a job starts so that its
        promotion need not; None when there is none (or the database does not answer: logged)."""
        try:
            with self.db.session() as session:
                version = session.scalars(select(VersionEnergy.version).where(
                    VersionEnergy.model_name == self.settings.model_name, VersionEnergy.promoted_at.is_not(None))
                    .order_by(VersionEnergy.promoted_at.desc()).limit(1)).first()
            if version is None:
                return None
            return int(version), predictions_per_day(self.db, self.settings.model_name, version), iso_utc(utcnow())
        except Exception as exc:  # noqa: BLE001 - the promotion's incident goes without its pair
            log.warning("predictions a day of the served version not read: %s", exc)
            return None

    # -- per promotion and served version --------------------------------------------------------
    def at_promotion(self, record: dict, job_id: str | None) -> dict:
        """The promotion incident's `energy` (a PromotionService payload part), from memory only: the job's cost
        as its meter last read it, the model's bytes as the promotion wrote them, and the pair and net delta
        projected from the gate's holdout loglosses at the served version's traffic as read when the job
        started. The final figures follow in `model_promotion_energy` once the job ends."""
        with self._lock:
            metering, rate = self._metering.get(job_id or ""), self._rate
        cpu = wall = None
        if metering is not None:
            cpu, wall = metering[0].so_far(), time.monotonic() - metering[1]
        previous = record.get("previous_version")
        per_day = rate[1] if rate and previous is not None and rate[0] == int(previous) else None
        challenger = (record.get("challenger") or {}).get(LOGLOSS)
        pair = None if challenger is None or per_day is None else challenger * per_day
        watts, now = self.settings.watts_per_cpu, utcnow()
        joules = None if cpu is None else cpu * watts
        energy = {"as_of": "promotion", "job_id": job_id if metering else None, "cpu_seconds": cpu,
                  "wall_seconds": wall, "joules": joules, "watts_per_cpu": watts, "mem_bytes": record.get("model_bytes"),
                  "pair": pair, "pair_logloss": challenger, "pair_source": "holdout", "predictions_per_day": per_day,
                  "predictions_per_day_at": rate[2] if per_day is not None else None,
                  "joules_per_nat": self.settings.joules_per_nat, "previous_version": previous,
                  "net_delta_per_day": None, "net_delta_projected": None, "projection_days": PROJECTION_DAYS,
                  "break_even_at": None}
        champion = (record.get("champion") or {}).get(LOGLOSS)
        energy.update(net_delta(self.settings, {"champion_logloss": champion, "promoted_at": now},
                                {"joules": joules}, pair, per_day or 0.0, now))
        energy.pop("net_delta", None), energy.pop("paid_back", None)  # 0 days in service: only the projection
        return {"energy": energy}

    def on_promoted(self, record: dict) -> None:
        """A promotion listener: keep what the promotion replaced and how well each side predicted then. A
        promotion made outside a job (`/xgboost/promote`, `seedcore promote`; no `job_id`) gets its
        `model_promotion_energy` incident here, its pair at the replaced version's traffic read now."""
        version, previous = record.get("version"), record.get("previous_version")
        if version is None:
            return
        champion = champion_logloss(self.settings, self.db, previous, record.get("champion") or {})
        per_day = predictions_per_day(self.db, self.settings.model_name, previous) if previous else None
        with self.db.session() as session:
            row = self._row(session, int(version))
            row.promoted_at = as_utc(datetime.fromisoformat(record["promoted_at"])) if record.get("promoted_at") \
                else utcnow()
            row.previous_version = previous
            row.champion_logloss = champion
            row.challenger_logloss = (record.get("challenger") or {}).get(LOGLOSS)
            row.predictions_per_day = per_day
            row.break_even_at = None
        if not record.get("job_id"):  # no job's end will follow: the final figures are known now
            self._remember_promotion_energy(int(version))
        self.on_change()

    def note_served_later(self, model) -> None:
        """In a thread of its own (it loads one more copy of the model, and the version's data): the served
        model's mem figures and its holdout calibration (for estimated_auc). `stop()` waits for it."""
        if model is None:
            return
        thread = threading.Thread(target=self._note_served, args=(model,), name="seedcore-energy-mem", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _note_served(self, model) -> None:
        try:
            self.note_served(model.version, model.booster)
            version_calibration(self.db, self.registry, model.version)
        except Exception:  # noqa: BLE001 - the ledger goes without its mem figures; the calibration comes when asked
            log.exception("mem figures or calibration of version %s not recorded", model.version)

    def note_served(self, version: int, booster: xgb.Booster) -> None:
        """A version's size as saved, and this process's memory growth on loading it once more."""
        raw = model_bytes(booster)  # as registered and blessed: the same bytes, made once per booster
        before = psutil.Process().memory_info().rss
        copy = xgb.Booster(model_file=bytearray(raw))
        grown = max(0, psutil.Process().memory_info().rss - before)
        del copy
        with self.db.session() as session:
            row = self._row(session, int(version))
            row.mem_bytes, row.served_bytes = len(raw), grown
        self.on_change()

    def check_break_even(self, version: int, energy: dict) -> int | None:
        """An `energy_break_even_missed` incident (once) when the promotion's break-even date, as first
        projected, has passed and the net delta is still negative; returns its id."""
        with self.db.session() as session:
            row = session.get(VersionEnergy, (self.settings.model_name, version))
            if row is None or row.break_even_incident_id is not None:
                return None
            if row.break_even_at is None and energy.get("break_even_at"):
                row.break_even_at = as_utc(datetime.fromisoformat(energy["break_even_at"]))
            due = row.break_even_at
        if due is None or utcnow() < due or (energy.get("net_delta") or 0.0) >= 0:
            return None
        incident = record_break_even_missed(self.incidents, version, iso_utc(due), energy)
        with self.db.session() as session:
            session.get(VersionEnergy, (self.settings.model_name, version)).break_even_incident_id = incident["id"]
        return incident["id"]

    def _row(self, session, version: int) -> VersionEnergy:
        row = session.get(VersionEnergy, (self.settings.model_name, version))
        if row is None:
            row = VersionEnergy(model_name=self.settings.model_name, version=version)
            session.add(row)
        return row

    def stop(self, timeout: float | None = None) -> None:
        """Stop the meters of jobs still running (their ends record what was read) and wait up to `timeout`
        (default: the stop_timeout_s setting) for the mem threads."""
        deadline = time.monotonic() + (self.settings.stop_timeout_s if timeout is None else timeout)
        with self._lock:
            metering, threads = [m for m, _ in self._metering.values()], list(self._threads)
        for meter in metering:
            meter.halt()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

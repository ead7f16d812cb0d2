"""The organism's tables: each job's measured cost, and each registered version's energy and calibration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from seedcore.db.base import Base, UTCDateTime, iso_utc, utcnow


class JobEnergy(Base):
    """What one job cost: CPU-seconds of the process tree that ran it (trials, driver, refit, registration),
    wall seconds, and joules at `watts_per_cpu` (the setting when it was measured)."""

    __tablename__ = "energy_jobs"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16))
    cpu_seconds: Mapped[float] = mapped_column(Float)
    wall_seconds: Mapped[float] = mapped_column(Float)
    watts_per_cpu: Mapped[float] = mapped_column(Float)
    joules: Mapped[float] = mapped_column(Float)
    processes: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_dict(self) -> dict:
        return {"job_id": self.job_id, "model_name": self.model_name, "model_version": self.model_version,
                "state": self.state, "cpu_seconds": self.cpu_seconds, "wall_seconds": self.wall_seconds,
                "watts_per_cpu": self.watts_per_cpu, "joules": self.joules, "processes": self.processes,
                "started_at": iso_utc(self.started_at), "ended_at": iso_utc(self.ended_at)}


class VersionEnergy(Base):
    """One promoted version as the ledger keeps it: its size, what it replaced and how well each predicted
    at the promotion, the projected break-even, and the holdout calibration `estimated_auc` uses."""

    __tablename__ = "energy_versions"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mem_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    served_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    champion_logloss: Mapped[float | None] = mapped_column(Float, nullable=True)
    challenger_logloss: Mapped[float | None] = mapped_column(Float, nullable=True)
    predictions_per_day: Mapped[float | None] = mapped_column(Float, nullable=True)
    break_even_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    break_even_incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

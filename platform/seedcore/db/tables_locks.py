"""The seedcore_locks table: one row per named critical section shared by every process."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from seedcore.db.base import Base, UTCDateTime


class NamedLock(Base):
    """A lease: `owner` holds `name` until it releases it or `expires_at` passes."""

    __tablename__ = "seedcore_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

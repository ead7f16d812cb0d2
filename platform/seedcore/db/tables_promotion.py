"""The promotion_journal table: each promotion's intent, written before its first step, and the steps done."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from seedcore.db.base import Base, UTCDateTime, iso_utc, utcnow

# A promotion's row is open until it completes; one left open by a dead process is settled by the next
# promotion (or start-up): rolled forward once its blessed link was switched, rolled back before.
JOURNAL_OPEN = "open"
JOURNAL_COMPLETED = "completed"
JOURNAL_ROLLED_FORWARD = "rolled_forward"
JOURNAL_ROLLED_BACK = "rolled_back"
JOURNAL_STATES = (JOURNAL_OPEN, JOURNAL_COMPLETED, JOURNAL_ROLLED_FORWARD, JOURNAL_ROLLED_BACK)


def new_id() -> str:
    return uuid.uuid4().hex


class PromotionJournalEntry(Base):
    """One promotion: `version` to alias `alias`, stage `stage` and blessed directory `blessed_dir` (beside the
    link `blessed_link`), replacing `previous_version` and `previous_blessed_dir`; `steps` done so far, in order.
    `detail` holds what settling needs: promoted_at, stage_before, production_before, the gate's record."""

    __tablename__ = "promotion_journal"
    __table_args__ = (
        CheckConstraint(f"state IN ({', '.join(repr(s) for s in JOURNAL_STATES)})", name="ck_promotion_journal_state"),
        Index("ix_promotion_journal_model_state", "model_name", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alias: Mapped[str] = mapped_column(String(256))
    stage: Mapped[str] = mapped_column(String(32))
    blessed_link: Mapped[str] = mapped_column(Text)
    blessed_dir: Mapped[str] = mapped_column(String(255))
    previous_blessed_dir: Mapped[str | None] = mapped_column(String(255), nullable=True)
    steps: Mapped[list[Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=JOURNAL_OPEN)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def to_dict(self) -> dict:
        return {"id": self.id, "model_name": self.model_name, "version": self.version,
                "previous_version": self.previous_version, "alias": self.alias, "stage": self.stage,
                "blessed_link": self.blessed_link, "blessed_dir": self.blessed_dir,
                "previous_blessed_dir": self.previous_blessed_dir, "steps": list(self.steps or []),
                "state": self.state, "detail": dict(self.detail or {}), "owner": self.owner,
                "created_at": iso_utc(self.created_at), "updated_at": iso_utc(self.updated_at),
                "finished_at": iso_utc(self.finished_at)}

"""The promotion journal: one row a promotion, its intent written before the first step and each step after it.

    journal = PromotionJournal(db)
    entry = journal.begin(model_name="utility_risk_model", version=7, previous_version=6, ...)  # the intent
    entry.step(STEP_PREPARED); ...; entry.step(STEP_TAGGED)                                     # after each step
    entry.finish(JOURNAL_COMPLETED, step=STEP_INCIDENT, incident_id=12)
    journal.unfinished("utility_risk_model", blessed_link)  # what a dead process left open

The steps, in the order a promotion takes them (seedcore.promotion.registry): the new blessed directory written
(prepared), the blessed link switched to it (blessed), alias `production` moved (alias), the previous
Production versions archived (archived), this version's stage Production (stage), its promoted_at tag
(tagged), its description (described), the flashbulb incident (incident). Every step can be repeated, so an
interrupted promotion is settled by reading what the stores say, not only the row: a step done just before
a crash may be missing from `steps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_promotion import (JOURNAL_COMPLETED, JOURNAL_OPEN, JOURNAL_ROLLED_BACK,  # noqa: F401
                                          JOURNAL_ROLLED_FORWARD, PromotionJournalEntry)
from seedcore.db.tables_memory import MODEL_PROMOTED, FlashbulbIncident
from seedcore.db.tables_promotion import new_id

STEP_PREPARED = "prepared"
STEP_BLESSED = "blessed"
STEP_ALIAS = "alias"
STEP_ARCHIVED = "archived"
STEP_STAGE = "stage"
STEP_TAGGED = "tagged"
STEP_DESCRIBED = "described"
STEP_INCIDENT = "incident"
STEPS = (STEP_PREPARED, STEP_BLESSED, STEP_ALIAS, STEP_ARCHIVED, STEP_STAGE, STEP_TAGGED, STEP_DESCRIBED,
         STEP_INCIDENT)


@dataclass
class JournalEntry:
    """One promotion's row, held by whoever runs (or settles) it; `step` and `finish` write it back.

    A detached entry (no database) journals nothing: a promotion made without a journal cannot be settled
    after a crash, only undone in-process."""

    id: str
    model_name: str
    version: int
    previous_version: int | None
    alias: str
    stage: str
    blessed_link: str
    blessed_dir: str
    previous_blessed_dir: str | None
    steps: list[str] = field(default_factory=list)
    state: str = JOURNAL_OPEN
    detail: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    created_at: datetime | None = None
    db: Database | None = field(default=None, repr=False, compare=False)

    def done(self, step: str) -> bool:
        return step in self.steps

    def step(self, name: str, **detail) -> None:
        """Record that step `name` is done (and `detail`), in one UPDATE."""
        if name not in self.steps:
            self.steps.append(name)
        self.detail.update(detail)
        self._write(steps=list(self.steps), detail=dict(self.detail))

    def finish(self, state: str, step: str | None = None, **detail) -> None:
        """Close the row as `state` (completed, rolled_forward or rolled_back), with a last step if given."""
        if step is not None and step not in self.steps:
            self.steps.append(step)
        self.detail.update(detail)
        self.state = state
        self._write(steps=list(self.steps), detail=dict(self.detail), state=state, finished_at=utcnow())

    def _write(self, **values) -> None:
        if self.db is None:
            return
        with self.db.session() as session:  # an UPDATE first: SQLite waits for the write lock, never fails at once
            session.execute(update(PromotionJournalEntry).where(PromotionJournalEntry.id == self.id)
                            .values(updated_at=utcnow(), **values))

    @classmethod
    def detached(cls, **intent) -> "JournalEntry":

        return cls(id=new_id(), **intent)


class PromotionJournal:
    """The promotion_journal rows of one database."""

    def __init__(self, db: Database):
        self.db = db

    def begin(self, *, model_name: str, version: int, previous_version: int | None, alias: str, stage: str,
              blessed_link: Path | str, blessed_dir: str, previous_blessed_dir: str | None,
              detail: dict[str, Any], owner: str | None = None, context: dict[str, Any] | None = None
              ) -> JournalEntry:
        """Write the intent (before the promotion's first step) and return its open entry."""
        detail = {**detail, "context": context or {}}
        row = PromotionJournalEntry(model_name=model_name, version=int(version), previous_version=previous_version,
                                    alias=alias, stage=stage, blessed_link=str(blessed_link), blessed_dir=blessed_dir,
                                    previous_blessed_dir=previous_blessed_dir, steps=[], state=JOURNAL_OPEN,
                                    detail=detail, owner=owner, created_at=utcnow(), updated_at=utcnow())
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return self._entry(row)

    def get(self, entry_id: str) -> JournalEntry | None:
        with self.db.session() as session:
            row = session.get(PromotionJournalEntry, entry_id)
            return None if row is None else self._entry(row)

    def unfinished(self, model_name: str, blessed_link: Path | str) -> list[JournalEntry]:
        """Open rows of this model and blessed link, oldest first (none while no promotion was interrupted)."""
        with self.db.session() as session:
            rows = session.scalars(select(PromotionJournalEntry)
                                   .where(PromotionJournalEntry.model_name == model_name,
                                          PromotionJournalEntry.state == JOURNAL_OPEN,
                                          PromotionJournalEntry.blessed_link == str(blessed_link))
                                   .order_by(PromotionJournalEntry.created_at, PromotionJournalEntry.id)).all()
            return [self._entry(row) for row in rows]

    def recent(self, model_name: str, limit: int = 20) -> list[dict]:
        """The newest rows of this model, newest first."""
        with self.db.session() as session:
            rows = session.scalars(select(PromotionJournalEntry).where(PromotionJournalEntry.model_name == model_name)
                                   .order_by(PromotionJournalEntry.created_at.desc()).limit(limit)).all()
            return [row.to_dict() for row in rows]

    def incident_of(self, entry: JournalEntry) -> int | None:
        """The model_promoted incident this promotion already wrote (its payload names the entry), if any."""
        with self.db.session() as session:
            rows = session.scalars(select(FlashbulbIncident)
                                   .where(FlashbulbIncident.event_type == MODEL_PROMOTED,
                                          FlashbulbIncident.model_version == str(entry.version),
                                          FlashbulbIncident.created_at >= entry.created_at)).all()
            for row in rows:
                if isinstance(row.payload, dict) and row.payload.get("promotion_id") == entry.id:
                    return row.id
        return None

    def _entry(self, row: PromotionJournalEntry) -> JournalEntry:
        return JournalEntry(id=row.id, model_name=row.model_name, version=row.version,
                            previous_version=row.previous_version, alias=row.alias, stage=row.stage,
                            blessed_link=row.blessed_link, blessed_dir=row.blessed_dir,
                            previous_blessed_dir=row.previous_blessed_dir, steps=list(row.steps or []),
                            state=row.state, detail=dict(row.detail or {}), owner=row.owner,
                            created_at=row.created_at, db=self.db)

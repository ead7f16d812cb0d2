"""What monitors and schedules share: rules stored in one table each, keyed by a generated id, with the
same create, list, read, change and delete. A service names its table and noun; its own checks come first."""

from __future__ import annotations

from sqlalchemy import select, update

from seedcore.db.database import Database
from seedcore.db.tables_flywheel import ID_LENGTH, new_id
from seedcore.errors import NotFoundError


class StoredRules:
    """CRUD over `table` (a mapped class with `id`, `created_at` and `to_dict()`), errors naming `<noun>_id`."""

    table: type
    noun: str

    def __init__(self, db: Database):
        self.db = db

    def list(self) -> list[dict]:
        with self.db.session() as session:
            return [r.to_dict() for r in session.scalars(select(self.table).order_by(self.table.created_at,
                                                                                      self.table.id))]

    def get(self, rule_id: str) -> dict:
        return self._row(rule_id).to_dict()

    def delete(self, rule_id: str) -> dict:
        with self.db.session() as session:
            session.delete(self._row(rule_id, session))
        return {"id": rule_id, "deleted": True}

    def _insert(self, **values) -> dict:
        with self.db.session() as session:
            row = self.table(id=new_id(), **values)
            session.add(row)
            session.flush()
            return row.to_dict()

    def _replace(self, rule_id: str, values: dict) -> dict:
        self._set(rule_id, **values)
        return self.get(rule_id)

    def _set(self, rule_id: str, **values) -> None:
        with self.db.session() as session:
            session.execute(update(self.table).where(self.table.id == rule_id).values(**values))

    def _row(self, rule_id: str, session=None):
        if session is None:
            with self.db.session() as own:
                return self._row(rule_id, own)
        found = isinstance(rule_id, str) and len(rule_id) <= ID_LENGTH
        row = session.get(self.table, rule_id) if found else None
        if row is None:
            raise NotFoundError(f"no {self.noun} with id {rule_id!r}", field=f"{self.noun}_id")
        return row

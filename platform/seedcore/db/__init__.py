"""The SQL layer: engine and sessions, the declarative Base, the tables, and the Alembic driver."""

from seedcore.db.base import Base, as_utc, utcnow
from seedcore.db.database import Database, current_revision
from seedcore.db.migrations import downgrade, head_revision, upgrade

__all__ = ["Base", "Database", "as_utc", "current_revision", "downgrade", "head_revision", "upgrade", "utcnow"]

"""Flashbulb memory: SQL tables, the incident store, salience, and the database they live in."""

from seedcore.memory.database import Database, current_revision, downgrade, head_revision, upgrade
from seedcore.memory.store import IncidentStore
from seedcore.memory.tables import (
    EVENT_TYPES,
    MODEL_PROMOTED,
    MODEL_PROMOTION_REJECTED,
    MODEL_REFRESHED,
    MODEL_TUNING_COMPLETED,
    MODEL_TUNING_FAILED,
    FlashbulbIncident,
)

__all__ = [
    "Database",
    "EVENT_TYPES",
    "FlashbulbIncident",
    "IncidentStore",
    "MODEL_PROMOTED",
    "MODEL_PROMOTION_REJECTED",
    "MODEL_REFRESHED",
    "MODEL_TUNING_COMPLETED",
    "MODEL_TUNING_FAILED",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

"""Flashbulb memory: the incident table, the incident store and salience (the SQL layer is `seedcore.db`)."""

from seedcore.memory.store import IncidentStore
from seedcore.db.tables_memory import (
    EVENT_TYPES,
    MODEL_PROMOTED,
    MODEL_PROMOTION_REJECTED,
    MODEL_REFRESHED,
    MODEL_TUNING_COMPLETED,
    MODEL_TUNING_FAILED,
    FlashbulbIncident,
)

__all__ = [
    "EVENT_TYPES",
    "FlashbulbIncident",
    "IncidentStore",
    "MODEL_PROMOTED",
    "MODEL_PROMOTION_REJECTED",
    "MODEL_REFRESHED",
    "MODEL_TUNING_COMPLETED",
    "MODEL_TUNING_FAILED",
]

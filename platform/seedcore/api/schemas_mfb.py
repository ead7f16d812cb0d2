"""Request and response bodies of the flashbulb-memory endpoints (`/mfb`); the OpenAPI document uses them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from seedcore.api._http import MAX_INT
from seedcore.errors import ValidationError
from seedcore.memory.store import DEFAULT_LIMIT, MAX_LIMIT, parse_time
from seedcore.db.tables_memory import SALIENCE_RANGE, TEXT_LIMITS
from seedcore.request_models import NOT_BLANK

# Epoch seconds a datetime can hold (years 1 to 9999); beyond them the value is refused.
_EPOCH_RANGE = {"minimum": datetime.min.replace(tzinfo=timezone.utc).timestamp(),
                "maximum": datetime.max.replace(microsecond=0, tzinfo=timezone.utc).timestamp()}
_TIME_SCHEMA = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number", **_EPOCH_RANGE}],
    "description": "ISO 8601 (naive means UTC) or epoch seconds",
}
_VERSION_SCHEMA = {"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": TEXT_LIMITS["model_version"], "pattern": NOT_BLANK},
    {"type": "integer", "minimum": 1, "maximum": MAX_INT},
    {"type": "null"}], "default": None, "description": "registry version (a number is accepted too)"}


def _to_datetime(value: Any) -> Any:
    """A query value as an aware UTC datetime: epoch seconds ("1640995200") or ISO 8601."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            value = text
    try:
        return parse_time(value, "time")
    except (ValidationError, ValueError, OverflowError, OSError):
        raise ValueError("must be ISO 8601 or epoch seconds") from None


def _version_as_text(value: Any) -> Any:
    """Registry versions are numbers; accept 3 as well as "3" (a number must be one: 1 to MAX_INT)."""
    if type(value) is float and value.is_integer():  # JSON has one kind of number: 3.0 is the integer 3
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_INT:
            raise ValueError(f"a version number is from 1 to {MAX_INT}")
        return str(value)
    return value


Salience = Annotated[float, Field(ge=SALIENCE_RANGE[0], le=SALIENCE_RANGE[1], allow_inf_nan=False,
                                  description="0 (routine) .. 1 (unforgettable)")]
TimeBound = Annotated[datetime | None, BeforeValidator(_to_datetime), WithJsonSchema(_TIME_SCHEMA)]


class IncidentCreate(BaseModel):
    """Body of `POST /mfb/incidents`: one event to remember."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event_type: str = Field(min_length=1, max_length=TEXT_LIMITS["event_type"], examples=["model_tuning_completed"],
                            json_schema_extra={"pattern": NOT_BLANK})
    outcome: str = Field(min_length=1, max_length=TEXT_LIMITS["outcome"], examples=["success"],
                         json_schema_extra={"pattern": NOT_BLANK})
    salience: Salience
    experiment_name: str | None = Field(default=None, min_length=1, max_length=TEXT_LIMITS["experiment_name"],
                                        json_schema_extra={"pattern": NOT_BLANK})
    model_version: Annotated[str | None, BeforeValidator(_version_as_text), WithJsonSchema(_VERSION_SCHEMA)] = Field(
        default=None, min_length=1, max_length=TEXT_LIMITS["model_version"])
    payload: dict[str, Any] = Field(default_factory=dict, description="free-form details: metrics, params, paths "
                                    "(capped by SEEDCORE_MAX_JSON_DEPTH and SEEDCORE_MAX_INCIDENT_PAYLOAD_BYTES)")


class IncidentQuery(BaseModel):
    """Query string of `GET /mfb/incidents`."""

    model_config = ConfigDict(extra="forbid")

    min_salience: Salience | None = None
    event_type: str | None = Field(default=None, min_length=1, max_length=TEXT_LIMITS["event_type"],
                                   json_schema_extra={"pattern": NOT_BLANK})
    since: TimeBound = None
    until: TimeBound = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_INT)


class IncidentPath(BaseModel):
    """Path of `GET /mfb/incidents/<incident_id>`."""

    incident_id: int = Field(ge=0, le=MAX_INT)


class Incident(BaseModel):
    """One stored flashbulb incident."""

    id: int
    event_type: str
    outcome: str
    salience: float
    experiment_name: str | None
    model_version: str | None
    payload: dict[str, Any]
    timestamp: float = Field(description="epoch seconds")
    created_at: str = Field(description="ISO 8601, UTC")


class IncidentResponse(BaseModel):
    """One incident, as `GET /mfb/incidents/<id>` and `POST /mfb/incidents` return it."""

    status: Literal["success"] = "success"
    incident: Incident


class IncidentPage(BaseModel):
    """A page of incidents, newest first; `total` counts every match."""

    status: Literal["success"] = "success"
    items: list[Incident]
    total: int
    limit: int
    offset: int


class IncidentStats(BaseModel):
    """Totals over the whole memory."""

    status: Literal["success"] = "success"
    total: int
    by_event_type: dict[str, int]
    last_24h: int = Field(description="incidents recorded in the last 24 hours")
    average_salience: float | None = Field(description="null while the memory is empty")

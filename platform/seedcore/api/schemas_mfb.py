"""Request and response bodies of the flashbulb-memory endpoints (`/mfb`); the OpenAPI document uses them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from seedcore.api._http import MAX_INT
from seedcore.errors import ValidationError
from seedcore.memory.store import DEFAULT_LIMIT, MAX_LIMIT, parse_time

_TIME_SCHEMA = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
    "description": "ISO 8601 (naive means UTC) or epoch seconds",
}


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
    """Registry versions are numbers; accept 3 as well as "3"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Salience = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, description="0 (routine) .. 1 (unforgettable)")]
TimeBound = Annotated[datetime | None, BeforeValidator(_to_datetime), WithJsonSchema(_TIME_SCHEMA)]


class IncidentCreate(BaseModel):
    """Body of `POST /mfb/incidents`: one event to remember."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event_type: str = Field(min_length=1, max_length=64, examples=["model_tuning_completed"])
    outcome: str = Field(min_length=1, max_length=32, examples=["success"])
    salience: Salience
    experiment_name: str | None = Field(default=None, min_length=1, max_length=256)
    model_version: Annotated[str | None, BeforeValidator(_version_as_text)] = Field(
        default=None, min_length=1, max_length=32, description="registry version (a number is accepted too)"
    )
    payload: dict[str, Any] = Field(default_factory=dict, description="free-form details: metrics, params, paths")


class IncidentQuery(BaseModel):
    """Query string of `GET /mfb/incidents`."""

    model_config = ConfigDict(extra="forbid")

    min_salience: Salience | None = None
    event_type: str | None = Field(default=None, min_length=1, max_length=64)
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

"""IncidentStore: record and read flashbulb incidents. Append-only: there is no update or delete."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import func, select

from seedcore.config import Settings
from seedcore.errors import NotFoundError, ValidationError
from seedcore.db.database import Database
from seedcore.db.base import as_utc, utcnow
from seedcore.db.stored_json import SERVABLE_DEPTH, check_stored, storable_depth
from seedcore.db.tables_memory import SALIENCE_RANGE, TEXT_LIMITS, FlashbulbIncident

MAX_LIMIT = 500
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class PayloadLimits:
    """Caps on an incident's payload: nesting depth and encoded bytes (the settings' defaults unless given)."""

    max_depth: int = Settings.model_fields["max_json_depth"].default
    max_bytes: int = Settings.model_fields["max_incident_payload_bytes"].default

    @classmethod
    def of(cls, settings) -> "PayloadLimits":
        """The caps the settings ask for (SEEDCORE_MAX_JSON_DEPTH, SEEDCORE_MAX_INCIDENT_PAYLOAD_BYTES)."""
        return cls(storable_depth(settings), settings.max_incident_payload_bytes)


def check_page(limit: int, offset: int) -> None:
    """Raise ValidationError unless 1 <= limit <= MAX_LIMIT and offset >= 0."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}", field="limit")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"offset must be a non-negative integer, got {offset!r}", field="offset")


def parse_time(value: datetime | str | int | float | None, field: str) -> datetime | None:
    """An aware UTC datetime from a datetime, an ISO 8601 string or epoch seconds (naive means UTC)."""
    if value is None or isinstance(value, datetime):
        return None if value is None else as_utc(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        try:
            return as_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            pass
    raise ValidationError(f"{field} must be ISO 8601 or epoch seconds, got {value!r}", field=field)


def check_salience(value: Any, field: str = "salience") -> float:
    """`value` as a float, or ValidationError unless it is a number in SALIENCE_RANGE ([0, 1])."""
    low, high = SALIENCE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValidationError(f"{field} must be a number from {low:g} to {high:g}, got {value!r}", field=field)
    return float(value)


def _check_text(value: Any, field: str, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    if len(value) > TEXT_LIMITS[field]:
        raise ValidationError(f"{field} must be at most {TEXT_LIMITS[field]} characters", field=field)


def _check_payload(payload: Any, limits: PayloadLimits) -> dict:
    """The payload, refused unless it can be stored and served back: an object, JSON, within the caps."""
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ValidationError("payload must be a JSON object", field="payload")
    check_stored(payload, "payload", max_depth=limits.max_depth)  # before json.dumps, which recurses
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"payload is not JSON-serializable: {exc}", field="payload") from exc
    check_stored(payload, "payload", max_depth=SERVABLE_DEPTH, max_bytes=limits.max_bytes)
    return payload


class IncidentStore:
    """Flashbulb memory over a Database: record, get, query, stats."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow, limits: PayloadLimits | None = None):
        self.db = db
        self.clock = clock
        self.limits = limits or PayloadLimits()

    def record(
        self,
        event_type: str,
        outcome: str,
        salience: float,
        payload: dict | None,
        experiment_name: str | None = None,
        model_version: str | int | None = None,
    ) -> dict:
        """Append one incident and return it as a dict."""
        _check_text(event_type, "event_type", required=True)
        _check_text(outcome, "outcome", required=True)
        model_version = None if model_version is None else str(model_version)
        _check_text(experiment_name, "experiment_name", required=False)
        _check_text(model_version, "model_version", required=False)
        incident = FlashbulbIncident(
            event_type=event_type,
            outcome=outcome,
            salience=check_salience(salience),
            payload=_check_payload(payload, self.limits),
            experiment_name=experiment_name,
            model_version=model_version,
            created_at=as_utc(self.clock()),
        )
        with self.db.session() as session:
            session.add(incident)
            session.flush()
            return incident.to_dict()

    def get(self, incident_id: int) -> dict:
        """One incident by id; NotFoundError when there is none."""
        with self.db.session() as session:
            incident = session.get(FlashbulbIncident, incident_id)
            if incident is None:
                raise NotFoundError(f"no flashbulb incident with id {incident_id!r}", field="incident_id")
            return incident.to_dict()

    def query(
        self,
        min_salience: float | None = None,
        event_type: str | None = None,
        since: datetime | str | float | None = None,
        until: datetime | str | float | None = None,
        limit: int = DEFAULT_LIMIT,
        offset: int = 0,
    ) -> dict:
        """Incidents newest first, filtered; `total` counts every match, not just this page."""
        check_page(limit, offset)
        conditions = self._conditions(min_salience, event_type, since, until)
        newest_first = (FlashbulbIncident.created_at.desc(), FlashbulbIncident.id.desc())
        with self.db.session() as session:
            total = session.scalar(select(func.count()).select_from(FlashbulbIncident).where(*conditions))
            rows = session.scalars(
                select(FlashbulbIncident).where(*conditions).order_by(*newest_first).limit(limit).offset(offset)
            )
            items = [row.to_dict() for row in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    def stats(self, now: datetime | None = None) -> dict:
        """Totals: all incidents, per event type, in the last 24 hours, and the mean salience."""
        day_ago = as_utc(now or self.clock()) - timedelta(hours=24)
        with self.db.session() as session:
            total, average = session.execute(
                select(func.count(FlashbulbIncident.id), func.avg(FlashbulbIncident.salience))
            ).one()
            by_type = session.execute(
                select(FlashbulbIncident.event_type, func.count()).group_by(FlashbulbIncident.event_type)
            ).all()
            recent = session.scalar(
                select(func.count()).select_from(FlashbulbIncident).where(FlashbulbIncident.created_at >= day_ago)
            )
        return {
            "total": total,
            "by_event_type": {event_type: count for event_type, count in sorted(by_type)},
            "last_24h": recent,
            "average_salience": None if average is None else float(average),
        }

    @staticmethod
    def _conditions(min_salience, event_type, since, until) -> list:
        conditions = []
        if min_salience is not None:
            conditions.append(FlashbulbIncident.salience >= check_salience(min_salience, "min_salience"))
        if event_type is not None:
            _check_text(event_type, "event_type", required=True)
            conditions.append(FlashbulbIncident.event_type == event_type)
        start, end = parse_time(since, "since"), parse_time(until, "until")
        if start is not None and end is not None and start > end:
            raise ValidationError("since must not be after until", field="since")
        if start is not None:
            conditions.append(FlashbulbIncident.created_at >= start)
        if end is not None:
            conditions.append(FlashbulbIncident.created_at <= end)
        return conditions

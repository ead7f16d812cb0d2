"""`/mfb`: flashbulb memory over REST. Append-only: incidents are listed, read and recorded, never deleted."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify
from pydantic import BaseModel

from seedcore.api._http import documented, parse_body, parse_query, require_token
from seedcore.api.schemas_mfb import IncidentCreate, IncidentPage, IncidentQuery, IncidentResponse, IncidentStats
from seedcore.errors import NotFoundError
from seedcore.db.database import Database
from seedcore.memory.store import IncidentStore

bp = Blueprint("mfb", __name__, url_prefix="/mfb")

DB_EXTENSION = "seedcore_db"
STORE_EXTENSION = "seedcore_incidents"
STOP_EXTENSION = "seedcore_stop"
# Incident ids are SQL INTEGER (32-bit on PostgreSQL); larger ones cannot exist, so they are a 404.
MAX_INCIDENT_ID = 2**31 - 1


def init_app(app: Flask) -> None:
    """Open the SQL database (refusing an old schema) and put it and the incident store in `app.extensions`."""
    db = app.extensions.get(DB_EXTENSION)
    if db is None:
        db = open_database(app.config["SEEDCORE_SETTINGS"].database_url)
        app.extensions[DB_EXTENSION] = db
        app.extensions.setdefault(STOP_EXTENSION, []).append(db.dispose)
    app.extensions[STORE_EXTENSION] = IncidentStore(db)


def open_database(url: str) -> Database:
    """A Database at the code's schema revision; SchemaOutdatedError (naming `seedcore db upgrade`) if not."""
    db = Database(url)
    try:
        db.check_schema()
    except BaseException:
        db.dispose()
        raise
    return db


def _store() -> IncidentStore:
    return current_app.extensions[STORE_EXTENSION]


def _respond(model: type[BaseModel], data: dict, status: int = 200):
    """`data` checked against its documented response model, as JSON."""
    return jsonify(model.model_validate(data).model_dump(mode="json")), status


@bp.get("/incidents")
@documented("/mfb/incidents", "GET", "List flashbulb incidents, newest first, filtered and paginated",
            query_model=IncidentQuery, response_model=IncidentPage)
def list_incidents():
    """Incidents matching the query string; `total` counts all matches, `items` is one page."""
    query = parse_query(IncidentQuery)
    return _respond(IncidentPage, _store().query(**query.model_dump()))


@bp.get("/incidents/<int:incident_id>")
@documented("/mfb/incidents/<int:incident_id>", "GET", "One flashbulb incident by id",
            response_model=IncidentResponse)
def get_incident(incident_id: int):
    """The incident with this id; 404 when there is none."""
    if incident_id > MAX_INCIDENT_ID:
        raise NotFoundError(f"no flashbulb incident with id {incident_id}", field="incident_id")
    return _respond(IncidentResponse, {"incident": _store().get(incident_id)})


@bp.post("/incidents")
@documented("/mfb/incidents", "POST", "Record a flashbulb incident (append-only)",
            request_model=IncidentCreate, response_model=IncidentResponse, status=201)
@require_token
def record_incident():
    """Append one incident; 201 with the stored row (id and timestamp filled in)."""
    body = parse_body(IncidentCreate)
    incident = _store().record(**body.model_dump())
    return _respond(IncidentResponse, {"incident": incident}, 201)


@bp.get("/stats")
@documented("/mfb/stats", "GET", "Flashbulb memory totals: by event type, last 24 hours, average salience",
            response_model=IncidentStats)
def stats():
    """Counts by event type, the last 24 hours, and the mean salience (null when empty)."""
    return _respond(IncidentStats, _store().stats())

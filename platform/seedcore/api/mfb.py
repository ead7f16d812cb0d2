"""`/mfb`: flashbulb memory over REST. Append-only: incidents are listed, read and recorded, never deleted."""

from __future__ import annotations

from seedcore.api._http import BEARER, NOT_FOUND, WRITE_ERRORS, api_blueprint, respond
from seedcore.api.schemas_mfb import (IncidentCreate, IncidentPage, IncidentPath, IncidentQuery, IncidentResponse,
                                      IncidentStats)
from seedcore.memory.store import IncidentStore
from seedcore.services import current_services

bp = api_blueprint("mfb", __name__, url_prefix="/mfb")

def _store() -> IncidentStore:
    return current_services().incidents


@bp.get("/incidents", summary="List flashbulb incidents, newest first, filtered and paginated",
        responses={200: IncidentPage})
def list_incidents(query: IncidentQuery):
    """Incidents matching the query string; `total` counts all matches, `items` is one page."""
    return respond(IncidentPage, _store().query(**query.model_dump()))


@bp.get("/incidents/<int:incident_id>", summary="One flashbulb incident by id",
        responses={200: IncidentResponse, **NOT_FOUND})
def get_incident(path: IncidentPath):
    """The incident with this id; 404 when there is none."""
    return respond(IncidentResponse, {"incident": _store().get(path.incident_id)})


@bp.post("/incidents", summary="Record a flashbulb incident (append-only)",
         responses={201: IncidentResponse, **WRITE_ERRORS}, security=BEARER)
def record_incident(body: IncidentCreate):
    """Append one incident; 201 with the stored row (id and timestamp filled in)."""
    return respond(IncidentResponse, {"incident": _store().record(**body.model_dump())}, 201)


@bp.get("/stats", summary="Flashbulb memory totals: by event type, last 24 hours, average salience",
        responses={200: IncidentStats})
def stats():
    """Counts by event type, the last 24 hours, and the mean salience (null when empty)."""
    return respond(IncidentStats, _store().stats())

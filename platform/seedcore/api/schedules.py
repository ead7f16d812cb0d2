"""`/xgboost/schedules`: cron schedules that start sweeps (trigger `schedule:<id>`)."""

from __future__ import annotations


from seedcore.api._http import BEARER, NOT_FOUND, WRITE_ERRORS, api_blueprint, respond
from seedcore.api.schemas_monitoring import (Deleted, ScheduleBody, ScheduleList, SchedulePatch, SchedulePath,
                                             ScheduleResponse)
from seedcore.monitoring.schedules import ScheduleService
from seedcore.services import current_services

bp = api_blueprint("schedules", __name__, url_prefix="/xgboost")


def _schedules() -> ScheduleService:
    return current_services().schedules


@bp.post("/schedules", summary="Create a cron schedule (cron, time zone and sweep validated now)",
         responses={201: ScheduleResponse, **WRITE_ERRORS}, security=BEARER)
def create_schedule(body: ScheduleBody):
    return respond(ScheduleResponse, _schedules().create(body), 201)


@bp.get("/schedules", summary="Every schedule with its next run time", responses={200: ScheduleList})
def list_schedules():
    items = _schedules().list()
    return respond(ScheduleList, {"items": items, "total": len(items)})


@bp.get("/schedules/<schedule_id>", summary="One schedule", responses={200: ScheduleResponse, **NOT_FOUND})
def get_schedule(path: SchedulePath):
    return respond(ScheduleResponse, _schedules().get(path.schedule_id))


@bp.patch("/schedules/<schedule_id>", summary="Change, pause (enabled=false) or resume a schedule",
          responses={200: ScheduleResponse, **NOT_FOUND, **WRITE_ERRORS}, security=BEARER)
def update_schedule(path: SchedulePath, body: SchedulePatch):
    return respond(ScheduleResponse, _schedules().update(path.schedule_id, body))


@bp.delete("/schedules/<schedule_id>", summary="Delete a schedule",
           responses={200: Deleted, **NOT_FOUND, **WRITE_ERRORS}, security=BEARER)
def delete_schedule(path: SchedulePath):
    return respond(Deleted, _schedules().delete(path.schedule_id))

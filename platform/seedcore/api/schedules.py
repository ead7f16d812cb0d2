"""`/xgboost/schedules`: cron schedules that start sweeps (trigger `schedule:<id>`)."""

from __future__ import annotations

from seedcore.api._crud import add_rule_routes
from seedcore.api._http import api_blueprint
from seedcore.api.schemas_monitoring import (Deleted, ScheduleBody, ScheduleList, SchedulePatch, SchedulePath,
                                             ScheduleResponse)
from seedcore.services import current_services

bp = api_blueprint("schedules", __name__, url_prefix="/xgboost")

add_rule_routes(bp, "schedule", lambda: current_services().schedules, body=ScheduleBody, patch=SchedulePatch,
                path=SchedulePath, response=ScheduleResponse, listing=ScheduleList, deleted=Deleted,
                summaries={"create": "Create a cron schedule (cron, time zone and sweep validated now)",
                           "list": "Every schedule with its next run time", "get": "One schedule",
                           "update": "Change, pause (enabled=false) or resume a schedule",
                           "delete": "Delete a schedule"})

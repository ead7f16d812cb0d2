"""`/xgboost` flywheel endpoints: evaluate, feedback, monitors (CRUD + check now); and the prediction log
every process keeps for `/xgboost/predict`."""

from __future__ import annotations

from seedcore.api._crud import add_rule_routes
from seedcore.api._http import BEARER, NOT_FOUND, WRITE_ERRORS, api_blueprint, respond
from seedcore.api._served import request_matrix
from seedcore.api.schemas_monitoring import (Deleted, EvaluateRequest, EvaluationResponse, FeedbackRequest,
                                             FeedbackResponse, MonitorBody, MonitorCheck, MonitorList,
                                             MonitorPatch, MonitorPath, MonitorResponse)
from seedcore.api.schemas_serving import PredictRequest
from seedcore.db.database import Database
from seedcore.errors import ValidationError
from seedcore.monitoring.evaluate import evaluate_version
from seedcore.monitoring.feedback import MAX_FEEDBACK_ROWS, check_labels
from seedcore.services import current_services

bp = api_blueprint("monitoring", __name__, url_prefix="/xgboost")


def _monitors():
    return current_services().monitors


add_rule_routes(bp, "monitor", _monitors, body=MonitorBody, patch=MonitorPatch, path=MonitorPath,
                response=MonitorResponse, listing=MonitorList, deleted=Deleted,
                summaries={"create": "Create a monitor (its sweep request is validated now)",
                           "list": "Every monitor with its last check", "get": "One monitor",
                           "update": "Change a monitor (validated as a whole)", "delete": "Delete a monitor"})


def _db() -> Database:
    return current_services().database


@bp.post("/evaluate", summary="Score a model version on labelled data (stored, and logged to MLflow)",
         responses={200: EvaluationResponse, **NOT_FOUND, **WRITE_ERRORS}, security=BEARER)
def evaluate(body: EvaluateRequest):

    result = evaluate_version(current_services().settings, _db(), body.data_source, body.label_column,
                              body.feature_columns, body.version)
    return respond(EvaluationResponse, {"status": "success", **result})


@bp.post("/feedback", summary="Outcomes for earlier predictions: prediction_ids + labels, or instances + labels",
         responses={200: FeedbackResponse, **WRITE_ERRORS}, security=BEARER)
def feedback(body: FeedbackRequest):
    """Stored through the monitor service, which tells whoever holds a view of the live metrics."""
    if (body.prediction_ids is None) == (body.instances is None):
        raise ValidationError("give either prediction_ids or instances, with labels", field="prediction_ids")
    if body.instances is not None:
        return respond(FeedbackResponse, {"status": "success", **_scored_feedback(body)})
    current_services().prediction_log.flush(timeout=2.0)  # ids answered a moment ago may still be queued in this process
    return respond(FeedbackResponse, {"status": "success", **_monitors().take_feedback(body.prediction_ids,
                                                                                      body.labels)})


def _scored_feedback(body: FeedbackRequest) -> dict:
    """Rows scored elsewhere: score them with the production model and store them with their labels."""

    if not isinstance(body.instances, list) or not body.instances:  # e.g. `false`, before counting its rows
        raise ValidationError("must be a non-empty list of rows", field="instances")
    if len(body.instances) > MAX_FEEDBACK_ROWS:
        raise ValidationError(f"at most {MAX_FEEDBACK_ROWS} per request", field="instances")
    check_labels(body.labels, len(body.instances), "instances")
    model = current_services().model.require()
    x, _ = request_matrix(PredictRequest(instances=body.instances), model)
    ids = _monitors().take_scored(model.version, x, model.predict(x).tolist(), body.labels)
    return {"accepted": len(ids), "rejected": 0, "model_version": model.version,
            "results": [{"prediction_id": i, "status": "accepted"} for i in ids]}


@bp.post("/monitors/<monitor_id>/check", summary="Check a monitor now (fires its sweep on a breach)",
         responses={200: MonitorCheck, **NOT_FOUND, **WRITE_ERRORS}, security=BEARER)
def check_monitor(path: MonitorPath):
    return respond(MonitorCheck, _monitors().check(path.monitor_id))

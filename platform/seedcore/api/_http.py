"""What every endpoint declares besides its own models: the error body, the bearer scheme, the error
responses, and the answer helpers. Routes use these through `api_blueprint` and `@bp.get/post(...)`."""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from flask import Response, jsonify, make_response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from seedcore.errors import invalid

BEARER_SCHEME = "bearerAuth"
SECURITY_SCHEMES = {BEARER_SCHEME: {
    "type": "http", "scheme": "bearer",
    "description": "`Authorization: Bearer <SEEDCORE_API_TOKEN>` on state-changing endpoints, "
                   "required only when that variable is set. When SEEDCORE_PREDICT_TOKEN is set, "
                   "`/xgboost/predict`, `/xgboost/batch_predict` and `/xgboost/feedback` need a bearer token "
                   "too: that one or SEEDCORE_API_TOKEN",
}}
# `security=BEARER` on a route both documents and enforces the token (the guard reads the document).
BEARER = [{BEARER_SCHEME: []}]
# Largest integer any path id, offset, limit or version may carry (SQL INTEGER on PostgreSQL).
MAX_INT = 2**31 - 1
# The endpoints that take rows to score or label (by Flask endpoint name). The guard caps their body at
# SEEDCORE_MAX_PREDICT_BYTES and their ROW_FIELDS lists at SEEDCORE_MAX_PREDICT_ROWS; one with a body over
# LIGHT_BODY_BYTES (batch_predict, which reads a whole file: always) takes one of SEEDCORE_MAX_HEAVY_REQUESTS
# slots; SEEDCORE_PREDICT_TOKEN, when set, guards them.
PREDICTION_ENDPOINTS = frozenset({"serving.predict", "serving.batch_predict", "monitoring.feedback"})
ALWAYS_HEAVY = frozenset({"serving.batch_predict"})
# What the guard's store check asks of a state-changing endpoint before its view runs (a 503 naming the store
# when it is lost or read-only): our database and MLflow's store, unless listed here. Predicting and
# refreshing write neither (the prediction log writes behind and reports on /health); these write our
# database only, and a cancel must work while MLflow cannot take writes.
STORELESS_WRITES = frozenset({"serving.predict", "serving.batch_predict", "serving.refresh_model"})
DATABASE_ONLY_WRITES = frozenset({
    "mfb.record_incident", "xgboost.cancel", "monitoring.feedback", "monitoring.create_monitor",
    "monitoring.update_monitor", "monitoring.delete_monitor", "schedules.create_schedule",
    "schedules.update_schedule", "schedules.delete_schedule"})
ROW_FIELDS = ("instances", "prediction_ids", "labels")
LIGHT_BODY_BYTES = 64 * 1024  # a few hundred rows


class ErrorBody(BaseModel):
    """Every error: what went wrong and why, and the input field at fault (if any)."""

    status: Literal["error"]
    error: str
    field: str | None


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}}}}


# Every operation can answer these (bad input anywhere, including the query string, is a 400).
COMMON_ERRORS: dict[Any, dict] = {
    400: _error("invalid input; `field` names it"),
    "4XX": _error("any other caller error"),
    "5XX": _error("a fault on our side"),
}
# Added by every state-changing route: `responses={200: Model, **WRITE_ERRORS}, security=BEARER`.
WRITE_ERRORS: dict[Any, dict] = {
    401: _error("missing bearer token (when SEEDCORE_API_TOKEN is set)"),
    403: _error("wrong bearer token, or a cross-origin browser request"),
    413: _error("request body over the size cap"),
    415: _error("body is not JSON (send Content-Type: application/json)"),
    503: _error("a store this write needs (our database, MLflow's store) is lost or read-only; nothing was "
                "changed"),
}
NOT_FOUND = {404: _error("unknown id")}
# Added by the prediction endpoints (PREDICTION_ENDPOINTS).
PREDICT_ERRORS: dict[Any, dict] = {
    401: _error("missing bearer token (when SEEDCORE_PREDICT_TOKEN is set)"),
    403: _error("wrong bearer token, or a cross-origin browser request"),
    413: _error("request body over SEEDCORE_MAX_PREDICT_BYTES, or more rows than SEEDCORE_MAX_PREDICT_ROWS"),
    415: _error("body is not JSON (send Content-Type: application/json)"),
    429: _error("every slot for large requests is taken (SEEDCORE_MAX_HEAVY_REQUESTS); `Retry-After` says when "
                "to try again"),
}


def operation_id(*, bp_name: str = "", name: str = "", path: str = "", method: str = "") -> str:  # noqa: ARG001
    """`<blueprint>.<view>`, the Flask endpoint name, as the operation id."""
    return f"{bp_name}.{name}"


def api_blueprint(name: str, import_name: str, url_prefix: str | None = None) -> APIBlueprint:
    """A blueprint whose routes document our error body, tagged by its name in the docs page."""
    return APIBlueprint(name, import_name, url_prefix=url_prefix, abp_responses=COMMON_ERRORS,
                        abp_tags=[Tag(name=name)], operation_id_callback=operation_id)


def respond(model: type[BaseModel], data: Any, status: int = 200) -> tuple[Response, int]:
    """`data` checked against its documented response model, as JSON."""
    return jsonify(model.model_validate(data).model_dump(mode="json")), status


def validation_error_response(exc: pydantic.ValidationError) -> Response:
    """The library's validation-error callback: a 400 in our error shape naming the first field at fault."""
    error = invalid(exc)
    return make_response(jsonify(error.to_dict()), error.status_code)

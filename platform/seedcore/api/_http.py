"""What every endpoint declares besides its own models: the error body, the bearer scheme, the error
responses, and the answer helpers. Routes use these through `api_blueprint` and `@bp.get/post(...)`."""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from flask import Response, jsonify, make_response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from seedcore.requests import invalid_request

BEARER_SCHEME = "bearerAuth"
SECURITY_SCHEMES = {BEARER_SCHEME: {
    "type": "http", "scheme": "bearer",
    "description": "`Authorization: Bearer <SEEDCORE_API_TOKEN>` on state-changing endpoints, "
                   "required only when that variable is set",
}}
# `security=BEARER` on a route both documents and enforces the token (the guard reads the document).
BEARER = [{BEARER_SCHEME: []}]
# Largest integer any path id, offset, limit or version may carry (SQL INTEGER on PostgreSQL).
MAX_INT = 2**31 - 1


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
}
NOT_FOUND = {404: _error("unknown id")}


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
    error = invalid_request(exc)
    return make_response(jsonify(error.to_dict()), error.status_code)

"""`GET /openapi.json` (OpenAPI 3.1, built from the `@documented` endpoints) and `GET /docs` (a try-it page)."""

from __future__ import annotations

import re
from typing import Iterable, Literal

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from seedcore.api._docs_page import DOCS_HTML
from seedcore.api._http import ENDPOINTS, EndpointDoc, documented
from seedcore.api.health import package_version

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerAuth"
CACHE_EXTENSION = "seedcore_openapi"
_IGNORED_METHODS = {"HEAD", "OPTIONS"}
_RULE_PARAM = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_CONVERTER_SCHEMAS = {
    "int": {"type": "integer"}, "float": {"type": "number"}, "uuid": {"type": "string", "format": "uuid"},
}
_ERROR_REASONS = {
    400: "invalid input; `field` names it",
    401: "missing bearer token (when SEEDCORE_API_TOKEN is set)",
    403: "wrong bearer token",
    404: "unknown id",
    413: "request body over the size cap",
    "4XX": "any other caller error",
    "5XX": "a fault on our side",
}


class ErrorBody(BaseModel):
    """Every error: what went wrong and why, and the input field at fault (if any)."""

    status: Literal["error"]
    error: str
    field: str | None


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: `/x/<int:job_id>` -> `/x/{job_id}`."""
    return _RULE_PARAM.sub(lambda m: "{" + m.group("name") + "}", rule)


def path_parameters(rule: str) -> list[dict]:
    """OpenAPI path parameters of a Flask rule, typed by their converter."""
    return [
        {"name": m.group("name"), "in": "path", "required": True,
         "schema": dict(_CONVERTER_SCHEMAS.get(m.group("converter") or "", {"type": "string"}))}
        for m in _RULE_PARAM.finditer(rule)
    ]


def app_routes(app: Flask) -> dict[tuple[str, str], str]:
    """(rule, method) -> Flask endpoint name, for every route of `app` but static files."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            routes[(rule.rule, method)] = rule.endpoint
    return routes


def app_endpoints(app: Flask) -> list[tuple[EndpointDoc, str]]:
    """The documented endpoints that `app` actually serves (first record wins), with their endpoint names."""
    routes, found = app_routes(app), {}
    for doc in ENDPOINTS:
        key = (doc.rule, doc.method)
        if key in routes and key not in found:
            found[key] = (doc, routes[key])
    return list(found.values())


def _schema_inputs(docs: Iterable[EndpointDoc]) -> list[tuple[type[BaseModel], str]]:
    inputs = [(ErrorBody, "serialization")]
    for doc in docs:
        inputs += [(m, "validation") for m in (doc.request, doc.query) if m is not None]
        inputs += [(doc.response, "serialization")] if doc.response is not None else []
    return list(dict.fromkeys(inputs))


def _component(refs: dict, components: dict, model: type[BaseModel], mode: str) -> dict:
    """The component schema of `model` (pydantic may inline a model with no `$defs` name)."""
    schema = refs[(model, mode)]
    ref = schema.get("$ref")
    return components[ref.rsplit("/", 1)[1]] if ref else schema


def query_parameters(schema: dict) -> list[dict]:
    """One OpenAPI query parameter per property of a query model's schema."""
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _error_responses(doc: EndpointDoc, has_path_params: bool) -> dict:
    codes = []
    if doc.request or doc.query or has_path_params:
        codes.append(400)
    if doc.mutating:
        codes += [401, 403]
    if has_path_params:
        codes.append(404)
    if doc.request:
        codes.append(413)
    error = _json_content({"$ref": REF_TEMPLATE.format(model="ErrorBody")})
    return {str(code): {"description": _ERROR_REASONS[code], "content": error} for code in codes + ["4XX", "5XX"]}


def operation(doc: EndpointDoc, endpoint: str, refs: dict, components: dict) -> dict:
    """The OpenAPI operation object of one endpoint."""
    path_params = path_parameters(doc.rule)
    op: dict = {"operationId": endpoint, "summary": doc.summary,
                "tags": [openapi_path(doc.rule).strip("/").split("/")[0] or "root"]}
    params = path_params + (query_parameters(_component(refs, components, doc.query, "validation"))
                            if doc.query else [])
    if params:
        op["parameters"] = params
    if doc.request is not None:
        op["requestBody"] = {"required": True, "content": _json_content(refs[(doc.request, "validation")])}
    ok: dict = {"description": (doc.response.__doc__ or doc.summary).strip() if doc.response else doc.summary}
    if doc.response is not None:
        ok["content"] = _json_content(refs[(doc.response, "serialization")])
    op["responses"] = {str(doc.status): ok, **_error_responses(doc, bool(path_params))}
    if doc.mutating:
        op["security"] = [{SECURITY_SCHEME: []}]
    return op


def build_document(app: Flask) -> dict:
    """The OpenAPI 3.1 document of every documented route `app` serves."""
    endpoints = app_endpoints(app)
    refs, defs = models_json_schema(_schema_inputs(doc for doc, _ in endpoints), ref_template=REF_TEMPLATE)
    components = defs.get("$defs", {})
    paths: dict = {}
    for doc, endpoint in sorted(endpoints, key=lambda pair: (pair[0].rule, pair[0].method)):
        op = operation(doc, endpoint, refs, components)
        paths.setdefault(openapi_path(doc.rule), {})[doc.method.lower()] = op
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "SeedCore Flywheel", "version": package_version(),
                 "description": "XGBoost sweeps on Ray Tune, MLflow registry promotion, serving and flashbulb "
                                "memory. Every error is `{status: \"error\", error, field}`."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "http", "scheme": "bearer",
                "description": "`Authorization: Bearer <SEEDCORE_API_TOKEN>` on mutating endpoints, "
                               "required only when that variable is set",
            }},
        },
    }


@bp.get("/openapi.json")
@documented("/openapi.json", "GET", "This API as an OpenAPI 3.1 document")
def openapi_json():
    """The document, built once per app (Flask allows no new routes after the first request)."""
    document = current_app.extensions.get(CACHE_EXTENSION)
    if document is None:
        document = current_app.extensions[CACHE_EXTENSION] = build_document(current_app)
    return jsonify(document)


@bp.get("/docs")
@documented("/docs", "GET", "Interactive API page: browse endpoints and try requests")
def docs():
    """A self-contained HTML page (no CDN: the server may have no internet) driven by /openapi.json."""
    return Response(DOCS_HTML, mimetype="text/html")

"""The OpenAPI document covers every route, resolves every reference, and matches what the API returns."""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest
from flask_openapi3.utils import parse_rule

from seedcore.api import create_app
from seedcore.api._http import MAX_INT
from seedcore.services import services_of

pytestmark = [pytest.mark.unit, pytest.mark.requests_only]  # the app runs no background thread

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def doc(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _validate(doc: dict, schema: dict, instance) -> None:
    """Validate `instance` against a schema of the document (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""
    jsonschema.Draft202012Validator({**doc, **schema}).validate(instance)


def test_every_route_of_the_app_is_documented(app, doc):
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("swagger."):  # the docs page's own files
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in doc["paths"].get(parse_rule(rule.rule), {}):
                missing.append(f"{method} {rule.rule}")
    assert not missing, f"routes missing from the document: {missing}"


def test_document_shape(doc):
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    for path in ("/health", "/openapi.json", "/docs", "/mfb/incidents", "/mfb/incidents/{incident_id}",
                 "/mfb/stats"):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/mfb/incidents"]) == {"get", "post"}
    assert "delete" not in doc["paths"]["/mfb/incidents/{incident_id}"]
    operation_ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_reference_resolves_and_no_defs_remain(doc):
    schemas = doc["components"]["schemas"]
    assert "$defs" not in json.dumps(doc)
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_path_parameters_use_braces_and_types(doc):
    assert not any("<" in path for path in doc["paths"])
    [param] = doc["paths"]["/mfb/incidents/{incident_id}"]["get"]["parameters"]
    assert {key: param[key] for key in ("name", "in", "required")} == {"name": "incident_id", "in": "path",
                                                                      "required": True}
    assert param["schema"]["type"] == "integer" and param["schema"]["maximum"] == MAX_INT
    [job] = doc["paths"]["/xgboost/tune/status/{job_id}"]["get"]["parameters"]
    assert job["in"] == "path" and job["schema"]["type"] == "string"


def test_mutating_endpoints_need_the_bearer_token(doc):
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    read_only_posts = {("/xgboost/predict", "post")}  # computes an answer, changes nothing
    for path, method, op in _operations(doc):
        if method == "get" or (path, method) in read_only_posts:
            assert "security" not in op, path
        else:
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_every_endpoint_documents_the_error_body(doc):
    error = doc["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"status", "error", "field"}
    for path, method, op in _operations(doc):
        response = op["responses"]["4XX"]
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
    _validate(doc, {"$ref": "#/components/schemas/ErrorBody"}, {"status": "error", "error": "x", "field": None})
    with pytest.raises(jsonschema.ValidationError):
        _validate(doc, {"$ref": "#/components/schemas/ErrorBody"}, {"status": "success", "error": "x", "field": None})


def test_mfb_operations(doc):
    post = doc["paths"]["/mfb/incidents"]["post"]
    body_schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/IncidentCreate"}
    assert {"201", "400", "401", "403", "413"} <= set(post["responses"])
    get = doc["paths"]["/mfb/incidents"]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert set(params) == {"min_salience", "event_type", "since", "until", "limit", "offset"}
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    create = doc["components"]["schemas"]["IncidentCreate"]
    assert set(create["required"]) == {"event_type", "outcome", "salience"}
    assert create["properties"]["salience"]["maximum"] == 1.0


def test_documented_response_schemas_match_real_responses(client, doc):
    created = client.post("/mfb/incidents", json={"event_type": "model_promoted", "outcome": "success",
                                                   "salience": 0.9, "payload": {"auc": 0.91}})
    incident_id = created.get_json()["incident"]["id"]
    calls = [("post", "/mfb/incidents", created),
             ("get", "/mfb/incidents", client.get("/mfb/incidents")),
             ("get", "/mfb/incidents/{incident_id}", client.get(f"/mfb/incidents/{incident_id}")),
             ("get", "/mfb/stats", client.get("/mfb/stats")),
             ("get", "/health", client.get("/health")),
             ("get", "/mfb/incidents/{incident_id}", client.get("/mfb/incidents/777"))]
    for method, path, response in calls:
        documented = doc["paths"][path][method]["responses"]
        entry = documented.get(str(response.status_code)) or documented["4XX"]
        _validate(doc, entry["content"]["application/json"]["schema"], response.get_json())


def test_docs_page_is_self_contained(client):
    """/docs leads to Swagger UI reading /openapi.json, and everything the page loads is served by us."""
    response = client.get("/docs", follow_redirects=True)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '"/openapi.json"' in page and "SwaggerUIBundle" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not load anything from outside"
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets) and any(a.endswith(".css") for a in assets)
    base = response.request.path.rsplit("/", 1)[0]
    for asset in assets:
        fetched = client.get(f"{base}/{asset}")
        assert fetched.status_code == 200 and len(fetched.data) > 100, asset


def test_serve_only_app_documents_only_its_own_routes(migrated_settings):
    serve_app = create_app(migrated_settings, role="serve")
    try:
        doc = serve_app.test_client().get("/openapi.json").get_json()
        assert "/health" in doc["paths"]
        assert not any(path.startswith("/mfb") for path in doc["paths"])
    finally:
        services_of(serve_app).stop()


def test_documented_security_matches_what_the_server_demands(migrated_settings):
    """With a token configured, every operation documented as secured answers 401 to a request without one."""
    secured_app = create_app(migrated_settings.replace(api_token="t0ken"))
    try:
        client = secured_app.test_client()
        doc = client.get("/openapi.json").get_json()
        open_doors = []
        for path, method, op in _operations(doc):
            if "security" in op:
                url = re.sub(r"{\w+}", "0", path)
                response = client.open(url, method=method.upper(), json={})
                if response.status_code != 401:
                    open_doors.append(f"{method.upper()} {path} -> {response.status_code}")
        assert not open_doors, f"documented as needing the bearer token but served without it: {open_doors}"
    finally:
        services_of(secured_app).stop()


# -- the document's bounds are the server's: schema-valid input is never refused for its range -------------
_RULES = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "enum",
          "minItems", "maxItems", "$ref", "items", "additionalProperties")


def _rules(prop: dict) -> list[dict]:
    """What a property's value must satisfy, null left out (a PATCH field may be omitted, never null-ed
    unless the body takes null)."""
    return [{k: v for k, v in variant.items() if k in _RULES} for variant in prop.get("anyOf", [prop])]


def test_a_patch_documents_the_bounds_of_the_body_it_patches(doc):
    schemas = doc["components"]["schemas"]
    body, patch = schemas["MonitorBody"], schemas["MonitorPatch"]
    assert set(patch["properties"]) == set(body["properties"]) and "required" not in patch
    for name, prop in body["properties"].items():
        assert _rules(patch["properties"][name]) == _rules(prop), name


def test_a_value_the_document_allows_is_not_refused_for_its_range(client, doc):
    """The outside tester's case: PATCH threshold 1.9e118 was valid by the document and a 400 from the server.
    Now the document's maximum is the server's: at it, 200; past it, refused by both."""
    schemas = doc["components"]["schemas"]
    [number] = [v for v in schemas["MonitorPatch"]["properties"]["threshold"]["anyOf"] if v["type"] == "number"]
    top = number["maximum"]
    tune = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 1}}
    created = client.post("/xgboost/monitors", json={"name": "m", "metric": "live_logloss", "threshold": top,
                                                      "tune": tune})
    assert created.status_code == 201, created.get_json()
    url = f"/xgboost/monitors/{created.get_json()['id']}"
    assert client.patch(url, json={"threshold": top}).status_code == 200
    for beyond in (1.9e118, float(np.nextafter(top, np.inf))):
        with pytest.raises(jsonschema.ValidationError):
            _validate(doc, {"$ref": "#/components/schemas/MonitorPatch"}, {"threshold": beyond})
        refused = client.patch(url, json={"threshold": beyond})
        assert refused.status_code == 400 and refused.get_json()["field"] == "threshold", refused.get_json()


def test_feedback_and_predict_values_are_bounded_in_the_document(client, doc):
    schemas = doc["components"]["schemas"]
    feedback = schemas["FeedbackRequest"]["properties"]
    assert feedback["labels"]["items"] == {"type": "integer", "minimum": 0, "maximum": 1}
    assert feedback["prediction_ids"]["uniqueItems"] is True
    predict_row = schemas["PredictRequest"]["properties"]["features"]["anyOf"][0]["items"]["anyOf"][0]
    f32 = float(np.finfo(np.float32).max)  # beyond it a value would be infinite to the model: a 400
    assert (predict_row["minimum"], predict_row["maximum"]) == (-f32, f32)
    refused = client.post("/xgboost/feedback", json={"prediction_ids": ["a"], "labels": [True]})
    assert refused.status_code == 400 and refused.get_json()["field"] == "labels.0"

"""The REST contract's safety rules: bad input is a 4xx naming the field, auth, size cap, no leaks."""

from __future__ import annotations

import re

import pytest

from seedcore.api import create_app
from seedcore.services import services_of

pytestmark = [pytest.mark.unit, pytest.mark.requests_only]  # the app runs no background thread

GOOD = {"event_type": "model_promoted", "outcome": "success", "salience": 0.8, "payload": {"auc": 0.9}}
TOKEN = "s3cret-token"
_TRACE = re.compile(r"Traceback|File \"|line \d+, in ")


def _with(**changes) -> dict:
    return {**GOOD, **changes}


def _without(key: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != key}


def assert_contract(response) -> None:
    """No 200 that says error; every 4xx/5xx is the error body, with no stack trace in it."""
    text = response.get_data(as_text=True)
    body = response.get_json(silent=True)
    if response.status_code < 400:
        assert not (isinstance(body, dict) and body.get("status") == "error"), text
        return
    assert isinstance(body, dict), f"{response.status_code} body is not JSON: {text[:200]}"
    assert body["status"] == "error" and isinstance(body["error"], str) and body["error"], body
    assert "field" in body and (body["field"] is None or isinstance(body["field"], str)), body
    assert not _TRACE.search(text), text


@pytest.fixture
def make_client(migrated_settings):
    """Build the real app with changed settings; stop what it started afterwards."""
    apps = []

    def make(**changes):
        application = create_app(migrated_settings.replace(**changes))
        application.config["TESTING"] = True
        apps.append(application)
        return application.test_client()

    yield make
    for application in apps:
        services_of(application).stop()


BAD_REQUESTS = [
    # (method, path, request kwargs, expected status, expected field)
    ("POST", "/mfb/incidents", {"data": "{not json", "content_type": "application/json"}, 400, "body"),
    ("POST", "/mfb/incidents", {"data": "[1, 2]", "content_type": "application/json"}, 400, "body"),
    ("POST", "/mfb/incidents", {"data": b"\xff\xfe", "content_type": "application/json"}, 400, "body"),
    ("POST", "/mfb/incidents", {"json": {}}, 400, "event_type"),
    ("POST", "/mfb/incidents", {"json": _with(salience="high")}, 400, "salience"),
    ("POST", "/mfb/incidents", {"json": _with(salience="0.5")}, 400, "salience"),
    ("POST", "/mfb/incidents", {"json": _with(salience=True)}, 400, "salience"),
    ("POST", "/mfb/incidents", {"json": _with(salience=1.5)}, 400, "salience"),
    ("POST", "/mfb/incidents", {"json": _with(salience=-0.01)}, 400, "salience"),
    ("POST", "/mfb/incidents", {"data": '{"event_type": "a", "outcome": "b", "salience": NaN}',
                                "content_type": "application/json"}, 400, "salience"),
    ("POST", "/mfb/incidents", {"json": _without("salience")}, 400, "salience"),
    ("POST", "/mfb/incidents", {"json": _without("outcome")}, 400, "outcome"),
    ("POST", "/mfb/incidents", {"json": _with(event_type=5)}, 400, "event_type"),
    ("POST", "/mfb/incidents", {"json": _with(event_type="")}, 400, "event_type"),
    ("POST", "/mfb/incidents", {"json": _with(event_type="x" * 65)}, 400, "event_type"),
    ("POST", "/mfb/incidents", {"json": _with(model_version="v" * 33)}, 400, "model_version"),
    ("POST", "/mfb/incidents", {"json": _with(payload=[1, 2])}, 400, "payload"),
    ("POST", "/mfb/incidents", {"data": '{"event_type": "a", "outcome": "b", "salience": 0.5, '
                                        '"payload": {"auc": NaN}}', "content_type": "application/json"},
     400, "payload"),
    ("POST", "/mfb/incidents", {"json": _with(colour="red")}, 400, "colour"),
    ("GET", "/mfb/incidents?min_salience=2", {}, 400, "min_salience"),
    ("GET", "/mfb/incidents?min_salience=lots", {}, 400, "min_salience"),
    ("GET", "/mfb/incidents?limit=0", {}, 400, "limit"),
    ("GET", "/mfb/incidents?limit=501", {}, 400, "limit"),
    ("GET", "/mfb/incidents?limit=ten", {}, 400, "limit"),
    ("GET", "/mfb/incidents?offset=-1", {}, 400, "offset"),
    ("GET", "/mfb/incidents?event_type=", {}, 400, "event_type"),
    ("GET", "/mfb/incidents?since=yesterday", {}, 400, "since"),
    ("GET", "/mfb/incidents?until=1e300", {}, 400, "until"),
    ("GET", "/mfb/incidents?since=2025-01-02&until=2025-01-01", {}, 400, "since"),
    ("GET", "/mfb/incidents?colour=red", {}, 400, "colour"),
    ("GET", "/mfb/incidents/999", {}, 404, "incident_id"),
    ("GET", "/mfb/incidents/99999999999999999999", {}, 400, "incident_id"),
    ("GET", "/mfb/incidents/2147483648", {}, 400, "incident_id"),
    ("GET", "/mfb/incidents/abc", {}, 404, None),
    ("GET", "/mfb/incidents/-1", {}, 404, None),
    ("GET", "/no/such/route", {}, 404, None),
    ("DELETE", "/mfb/incidents/1", {}, 405, None),
    ("DELETE", "/mfb/incidents", {}, 405, None),
    ("POST", "/mfb/stats", {"json": {}}, 405, None),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), BAD_REQUESTS,
                         ids=[f"{m} {p} {s} {f}" for m, p, _, s, f in BAD_REQUESTS])
def test_bad_request(module_client, method, path, kwargs, status, field):
    """Every row refused by one app (per module): no row writes anything the next row could see."""
    response = module_client.open(path, method=method, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["field"] == field
    assert_contract(response)


def test_body_over_the_cap_is_413(make_client):
    client = make_client(max_request_bytes=1024)
    response = client.post("/mfb/incidents", json=_with(payload={"notes": "x" * 2000}))
    assert response.status_code == 413
    assert response.get_json()["field"] == "body"
    assert_contract(response)
    small = client.post("/mfb/incidents", json={"event_type": "e", "outcome": "o", "salience": 0.1})
    assert small.status_code == 201


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": TOKEN}, 401),
    ({"Authorization": f"Basic {TOKEN}"}, 401),
    ({"Authorization": "Bearer "}, 401),
    ({"Authorization": "Bearer wrong-token"}, 403),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403),
    ({"Authorization": f"Bearer {TOKEN}"}, 201),
    ({"Authorization": f"bearer {TOKEN}"}, 201),
])
def test_bearer_token_on_post(make_client, headers, status):
    client = make_client(api_token=TOKEN)
    response = client.post("/mfb/incidents", json=GOOD, headers=headers)
    assert response.status_code == status
    assert_contract(response)
    if status != 201:
        assert response.get_json()["field"] == "Authorization"
        assert TOKEN not in response.get_data(as_text=True)
    expected_total = 1 if status == 201 else 0
    assert client.get("/mfb/incidents").get_json()["total"] == expected_total


def test_auth_is_checked_before_the_body(make_client):
    client = make_client(api_token=TOKEN)
    response = client.post("/mfb/incidents", data="{not json", content_type="application/json")
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/mfb/incidents", "/mfb/stats", "/health", "/openapi.json", "/docs"])
def test_reads_need_no_token(make_client, path):
    response = make_client(api_token=TOKEN).get(path, follow_redirects=True)
    assert response.status_code == 200
    assert_contract(response)


def test_no_token_configured_means_open(client):
    assert client.post("/mfb/incidents", json=GOOD).status_code == 201


def _sample_path(rule) -> str:
    """A concrete URL for a Flask rule: every path parameter filled with an id that does not exist."""
    values = {arg: 987654 if type(rule._converters[arg]).__name__ in ("IntegerConverter", "NumberConverter")
              else "no-such-id" for arg in rule.arguments}
    return rule.rule if not values else _fill(rule.rule, values)


def _fill(rule: str, values: dict) -> str:
    return re.sub(r"<(?:[^:>]+:)?(\w+)>", lambda m: str(values[m.group(1)]), rule)


def test_every_read_keeps_the_contract(app, client):
    """GET every route of the app (unknown ids in the path): whatever it answers, it answers by the contract.

    Writes are covered by the table above; sending them blindly would start sweeps and promotions.
    """
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or "GET" not in rule.methods:
            continue
        response = client.get(_sample_path(rule))
        assert response.status_code < 500 or response.status_code == 503, (rule.rule, response.status_code)
        assert_contract(response)
        checked += 1
    assert checked >= 6

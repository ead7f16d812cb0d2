"""Bad input over real HTTP: deep JSON, NUL and lone surrogates, huge integers, cross-site writes, non-JSON
bodies, 405s and over-cap chunked bodies are each a 4xx naming the field, and nothing is written.

Every request goes through a real werkzeug server as raw bytes (the test client would re-encode them).
"""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from _reliability import live_server, tiny_settings
from seedcore.services import services_of

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}
CAP = 256 * 1024  # the server's max_request_bytes in this module
BIG_INT = 100000000000000000000
INCIDENT = {"event_type": "e", "outcome": "o", "salience": 0.5}


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def body(obj) -> str:
    """JSON text; lone surrogates and NUL come out as \\ud800 and \\u0000 escapes, as a client would send them."""
    return json.dumps(obj)


BAD_INPUTS = [
    # (case, method, path, body, headers, status, field)
    # deep JSON: refused on the raw text, before decoding (predict needs no token)
    ("predict 1,000 deep", "POST", "/xgboost/predict", '{"features": ' + nested(1000) + "}", JSON, 400, "body"),
    ("predict 100,000 deep", "POST", "/xgboost/predict", '{"features": ' + nested(100_000) + "}", JSON, 400, "body"),
    ("incident payload 900 deep", "POST", "/mfb/incidents",
     body(INCIDENT)[:-1] + ', "payload": {"x": ' + nested(900) + "}}", JSON, 400, "body"),
    ("search space 300 deep", "POST", "/xgboost/tune/submit",
     '{"custom_search_space": {"eta": ' + nested(300) + "}}", JSON, 400, "body"),
    ("33 levels", "POST", "/xgboost/predict", '{"features": ' + nested(32) + "}", JSON, 400, "body"),
    # NUL bytes and lone surrogates, in values and keys, in body, query and path
    ("NUL data_source", "POST", "/xgboost/tune/submit", body({"data_source": "a\x00b.csv"}), JSON, 400, "data_source"),
    ("surrogate experiment_name", "POST", "/xgboost/tune/submit", body({"experiment_name": "exp\ud800"}), JSON, 400,
     "experiment_name"),
    ("NUL experiment_name on train", "POST", "/xgboost/train", body({"experiment_name": "a\x00"}), JSON, 400,
     "experiment_name"),
    ("surrogate deep in a space", "POST", "/xgboost/tune", body({"custom_search_space": {"eta": {"type": "\udfff"}}}),
     JSON, 400, "custom_search_space.eta.type"),
    ("surrogate batch source", "POST", "/xgboost/batch_predict", body({"data_source": "x\ud800.csv"}), JSON, 400,
     "data_source"),
    ("NUL in a payload value", "POST", "/mfb/incidents", body({**INCIDENT, "payload": {"note": "a\x00"}}), JSON, 400,
     "payload.note"),
    ("NUL in a payload key", "POST", "/mfb/incidents", body({**INCIDENT, "payload": {"k\x00": 1}}), JSON, 400,
     "payload.k\\x00"),
    ("surrogate in a top-level key", "POST", "/mfb/incidents", body({**INCIDENT, "\ud800": 1}), JSON, 400, "\\ud800"),
    ("UTF-8-encoded surrogate bytes", "POST", "/mfb/incidents", b'{"event_type": "\xed\xa0\x80"}', JSON, 400,
     "event_type"),
    ("NUL in the query", "GET", "/mfb/incidents?event_type=a%00b", None, {}, 400, "event_type"),
    ("NUL in a query name", "GET", "/xgboost/tune/jobs?st%00ate=queued", None, {}, 400, "st\\x00ate"),
    ("NUL in a path id", "GET", "/xgboost/tune/status/abc%00def", None, {}, 400, "job_id"),
    ("NUL in a cancel id", "POST", "/xgboost/tune/abc%00/cancel", None, {}, 400, "job_id"),
    # integers: bounded everywhere
    ("huge incident offset", "GET", f"/mfb/incidents?offset={BIG_INT}", None, {}, 400, "offset"),
    ("huge jobs offset", "GET", f"/xgboost/tune/jobs?offset={BIG_INT}", None, {}, 400, "offset"),
    ("huge jobs limit", "GET", f"/xgboost/tune/jobs?limit={BIG_INT}", None, {}, 400, "limit"),
    ("huge models offset", "GET", f"/xgboost/list_models?offset={BIG_INT}", None, {}, 400, "offset"),
    ("huge incident id", "GET", f"/mfb/incidents/{BIG_INT}", None, {}, 400, "incident_id"),
    ("incident id past 32 bits", "GET", "/mfb/incidents/2147483648", None, {}, 400, "incident_id"),
    ("huge version", "POST", "/xgboost/promote", body({"version": BIG_INT}), JSON, 400, "version"),
    ("version past 32 bits", "POST", "/xgboost/promote", body({"version": 2**31}), JSON, 400, "version"),
    ("huge seed in params", "POST", "/xgboost/train", body({"params": {"seed": BIG_INT}}), JSON, 400, "params.seed"),
    ("huge trial count", "POST", "/xgboost/tune/submit", body({"custom_tune_config": {"num_samples": -BIG_INT}}), JSON,
     400, "custom_tune_config.num_samples"),
    # cross-site writes and non-JSON bodies
    ("text/plain promote", "POST", "/xgboost/promote", body({"version": 1, "force": True}),
     {"Content-Type": "text/plain"}, 415, "Content-Type"),
    ("form-data incident", "POST", "/mfb/incidents", "--x\r\n\r\n--x--\r\n",
     {"Content-Type": "multipart/form-data; boundary=x"}, 415, "Content-Type"),
    ("untyped body", "POST", "/mfb/incidents", body(INCIDENT), {}, 415, "Content-Type"),
    ("foreign Origin", "POST", "/xgboost/promote", body({"version": 1}), {**JSON, "Origin": "http://evil.example"},
     403, "Origin"),
    ("opaque Origin", "POST", "/mfb/incidents", body(INCIDENT), {**JSON, "Origin": "null"}, 403, "Origin"),
    ("Sec-Fetch-Site cross-site", "POST", "/xgboost/refresh_model", None, {"Sec-Fetch-Site": "cross-site"}, 403,
     "Origin"),
    ("cross-site text/plain tune", "POST", "/xgboost/tune", body({}),
     {"Content-Type": "text/plain", "Origin": "https://evil.example"}, 403, "Origin"),
    # the smaller ones
    ("over the cap", "POST", "/mfb/incidents", body({**INCIDENT, "payload": {"x": "y" * CAP}}), JSON, 413, "body"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, mlflow_template):
    settings = tiny_settings(tmp_path_factory.mktemp("reliability-inputs"), mlflow_template, max_request_bytes=CAP)
    with live_server(settings) as live:
        yield live


def written(server) -> tuple[int, int, int]:
    """How many jobs, incidents and MLflow runs exist."""
    client = MlflowClient(services_of(server.app).settings.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return (server.request("GET", "/xgboost/tune/jobs")[1]["total"],
            server.request("GET", "/mfb/incidents")[1]["total"], len(runs))


@pytest.mark.parametrize(("method", "path", "data", "headers", "status", "field"),
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_a_4xx_naming_the_field(server, method, path, data, headers, status, field):
    before = written(server)
    code, answer, _ = server.request(method, path, data, headers)
    assert (code, answer and answer.get("field")) == (status, field), answer
    assert answer["status"] == "error" and answer["error"]
    assert written(server) == before, "a refused request left a job, an incident or a run behind"


def test_over_cap_chunked_body_is_413(server):
    """No Content-Length: the cap still holds, and says so (not a 400 about truncated JSON)."""
    data = body({**INCIDENT, "payload": {"x": "y" * (3 * CAP)}})
    code, answer, _ = server.request("POST", "/mfb/incidents", data, JSON, chunked=True)
    assert (code, answer["field"]) == (413, "body"), answer
    small = server.request("POST", "/mfb/incidents", body(INCIDENT), JSON, chunked=True)
    assert small[0] == 201, small
    assert server.request("GET", "/mfb/incidents")[1]["items"][0]["event_type"] == INCIDENT["event_type"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/mfb/incidents", {"GET", "POST"}),
    ("PUT", "/mfb/incidents/1", {"GET"}),
    ("GET", "/xgboost/predict", {"POST"}),
    ("DELETE", "/xgboost/tune/abc/cancel", {"POST"}),
])
def test_every_405_names_the_allowed_methods(server, method, path, allowed):
    code, answer, headers = server.request(method, path)
    assert code == 405 and answer["status"] == "error"
    assert allowed <= {m.strip() for m in headers["allow"].split(",")}, headers


def test_same_origin_and_curl_writes_pass(server):
    """The origin check refuses only foreign pages: our own page and curl's default content type work."""
    own = {**JSON, "Origin": server.base_url, "Sec-Fetch-Site": "same-origin"}
    assert server.request("POST", "/mfb/incidents", body(INCIDENT), own)[0] == 201
    curl = {"Content-Type": "application/x-www-form-urlencoded"}
    assert server.request("POST", "/mfb/incidents", body(INCIDENT), curl)[0] == 201
    assert server.request("POST", "/xgboost/predict", '{"features": ' + nested(2) + "}", JSON)[1]["field"] != "body"


def test_depth_follows_the_setting(tmp_path, mlflow_template):
    settings = tiny_settings(tmp_path, mlflow_template, max_json_depth=3)
    with live_server(settings) as live:
        deep = body({**INCIDENT, "payload": {"a": {"b": 1}}})  # 3 levels
        assert live.request("POST", "/mfb/incidents", deep, JSON)[0] == 201
        deeper = body({**INCIDENT, "payload": {"a": {"b": [1]}}})
        assert live.request("POST", "/mfb/incidents", deeper, JSON)[1]["field"] == "body"


def test_cross_site_is_refused_even_with_the_token(tmp_path, mlflow_template):
    settings = tiny_settings(tmp_path, mlflow_template, api_token="t0ken")
    with live_server(settings) as live:
        auth = {**JSON, "Authorization": "Bearer t0ken"}
        code, answer, _ = live.request("POST", "/mfb/incidents", body(INCIDENT), {**auth, "Origin": "http://evil.example"})
        assert (code, answer["field"]) == (403, "Origin")
        assert live.request("POST", "/mfb/incidents", body(INCIDENT), auth)[0] == 201
        assert live.request("POST", "/mfb/incidents", body(INCIDENT), JSON)[0] == 401

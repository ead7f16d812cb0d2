"""The guard's defences for an open network, over real sockets (our app under a threaded WSGI server):
DNS rebinding (the Host check), the predict token, the row and byte caps of the prediction endpoints and
the bound on concurrent heavy requests."""

from __future__ import annotations

import http.client
import itertools
import json
import select
import socket
import time
from contextlib import ExitStack

import pytest

from _reliability import live_server, tiny_settings
from _serving import GUIDE_ROW, add_version, wait_for
from seedcore.api._hosts import host_allowed
from seedcore.config import Settings
from seedcore.promotion.registry import Registry
from seedcore.services import services_of

pytestmark = pytest.mark.integration

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` (and a page's form) sends


@pytest.fixture
def serve(tmp_path, mlflow_template):
    """Start a live server (role "all") with the given setting changes, serving a promoted version;
    everything started is stopped afterwards."""
    numbers = itertools.count()
    with ExitStack() as stack:
        def start(**changes):
            root = tmp_path / f"server-{next(numbers)}"
            root.mkdir()
            settings = tiny_settings(root, mlflow_template, **changes)
            live = stack.enter_context(live_server(settings))
            version, _ = add_version(settings, Registry(settings), promote=True)
            wait_for(lambda: live.request("GET", "/xgboost/model_info")[1].get("version") == version, 30)
            return live, version

        yield start


def _post(live, path: str, body, headers: dict | None = None):
    return live.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json",
                                                                  **(headers or {})})


# -- DNS rebinding --------------------------------------------------------------------------------
def test_a_rebound_name_cannot_promote_or_read(serve):
    """The tester's attack: no token (the default), a page at attacker.example:<port> whose name now
    resolves to us posts a form to /xgboost/promote. The browser sends Host and Origin both naming it."""
    live, version = serve()
    other, _ = add_version(services_of(live.app).settings, Registry(services_of(live.app).settings),
                           seed=3, promote=False)
    attacker = f"attacker.example:{live.port}"
    status, body, _ = live.request("POST", "/xgboost/promote", json.dumps({"version": other, "force": True}),
                                   {**FORM, "Host": attacker, "Origin": f"http://{attacker}"})
    assert status == 403 and body["field"] == "Host", body
    assert "SEEDCORE_ALLOWED_HOSTS" in body["error"]
    assert int(Registry(services_of(live.app).settings).production_version().version) == version  # unmoved
    for path in ("/health", "/xgboost/model_info", "/xgboost/list_models"):  # reads would leak: refused too
        status, body, _ = live.request("GET", path, headers={"Host": attacker})
        assert (status, body["field"]) == (403, "Host"), (path, body)

    # the names this server is reached by (bound 127.0.0.1: also localhost) at its port work as before
    for host in (f"127.0.0.1:{live.port}", f"localhost:{live.port}", f"LOCALHOST:{live.port}"):
        assert live.request("GET", "/health", headers={"Host": host})[0] == 200, host
    assert live.request("GET", "/health", headers={"Host": "127.0.0.1:1"})[0] == 403  # another port: not ours
    status, body, _ = live.request("POST", "/xgboost/promote", json.dumps({"version": other, "force": True}),
                                   {**FORM, "Host": f"localhost:{live.port}"})
    assert status == 200 and body["status"] == "success", body


def test_allowed_hosts_replace_the_default(serve):
    live, _ = serve(allowed_hosts="api.internal, *.svc.example:8443, 127.0.0.1")  # (the fixture uses 127.0.0.1)
    assert live.request("GET", "/health", headers={"Host": "api.internal:1234"})[0] == 200  # no port: any port
    assert live.request("GET", "/health", headers={"Host": "model.svc.example:8443"})[0] == 200
    assert live.request("GET", "/health", headers={"Host": "model.svc.example:8444"})[0] == 403
    assert live.request("GET", "/health", headers={"Host": f"localhost:{live.port}"})[0] == 403  # the list, only
    assert live.request("GET", "/health", headers={"Host": "api.internal.attacker.example"})[0] == 403


def test_a_star_allows_every_host(serve):
    live, _ = serve(allowed_hosts="*")
    assert live.request("GET", "/health", headers={"Host": "anything.example:99"})[0] == 200


@pytest.mark.parametrize("bind, host, allowed", [
    ("0.0.0.0", "10.1.2.3:8000", True),  # a wildcard bind: any address of this machine, by number
    ("0.0.0.0", "[fd00::5]:8000", True),
    ("0.0.0.0", "localhost:8000", True),
    ("0.0.0.0", "attacker.example:8000", False),  # but no name (a name can be rebound; a number cannot)
    ("0.0.0.0", "10.1.2.3:9000", False),
    ("10.1.2.3", "10.1.2.3:8000", True),
    ("10.1.2.3", "localhost:8000", True),
    ("10.1.2.3", "127.0.0.1:8000", False),  # not a loopback bind
    ("10.1.2.3", "10.9.9.9:8000", False),
    ("::1", "[::1]:8000", True),
    ("::1", "127.0.0.1:8000", True),
    ("127.0.0.1", "localhost", False),  # no port: 80, not the bound 8000
    ("127.0.0.1", "localhost:8000:1", False),
    ("127.0.0.1", "", False),
])
def test_the_default_allowed_hosts(bind, host, allowed):
    assert host_allowed(host, Settings(host=bind, port=8000), "8000") is allowed


@pytest.mark.parametrize("listed, host, allowed", [
    ("[::1]:8000", "[::1]:8000", True),
    ("[::1]:8000", "[::2]:8000", False),  # brackets are the address's, not a pattern's character class
    ("[::1]", "[::1]:9", True),
    ("*.example", "a.b.example:1", True),
    ("*.example", "example.org:1", False),
])
def test_listed_hosts(listed, host, allowed):
    assert host_allowed(host, Settings(allowed_hosts=listed), "8000") is allowed


# -- the predict token ----------------------------------------------------------------------------
def test_the_predict_token_guards_predict_batch_and_feedback(serve):
    live, _ = serve(predict_token="p-token", api_token="a-token")
    calls = [("/xgboost/predict", {"features": GUIDE_ROW}),
             ("/xgboost/feedback", {"prediction_ids": ["x"], "labels": [1]}),
             ("/xgboost/batch_predict", {"data_source": "nope.csv"})]
    for path, body in calls:
        status, answer, _ = _post(live, path, body)
        assert (status, answer["field"]) == (401, "Authorization"), (path, answer)
        status, answer, _ = _post(live, path, body, {"Authorization": "Bearer wrong"})
        assert (status, answer["field"]) == (403, "Authorization"), (path, answer)
        for token in ("p-token", "a-token"):  # the predict token, or the API token
            status, answer, _ = _post(live, path, body, {"Authorization": f"Bearer {token}"})
            assert status not in (401, 403), (path, token, answer)
    status, answer, _ = _post(live, "/xgboost/predict", {"features": GUIDE_ROW}, {"Authorization": "Bearer p-token"})
    assert status == 200 and 0 <= answer["prediction"] <= 1
    # the predict token opens only those: promoting still needs the API token
    status, answer, _ = _post(live, "/xgboost/refresh_model", {}, {"Authorization": "Bearer p-token"})
    assert status == 403, answer
    assert live.request("GET", "/xgboost/model_info")[0] == 200  # reads stay open


def test_without_a_predict_token_predict_is_open_and_feedback_follows_the_api_token(serve):
    live, _ = serve(api_token="a-token")
    assert _post(live, "/xgboost/predict", {"features": GUIDE_ROW})[0] == 200
    assert _post(live, "/xgboost/feedback", {"prediction_ids": ["x"], "labels": [1]})[0] == 401


# -- rows and bytes -------------------------------------------------------------------------------
def test_rows_over_the_cap_are_413_naming_the_field(serve):
    live, _ = serve(max_predict_rows=5)
    assert _post(live, "/xgboost/predict", {"instances": [GUIDE_ROW] * 5})[0] == 200
    for path, body, field in [
        ("/xgboost/predict", {"instances": [GUIDE_ROW] * 6}, "instances"),
        ("/xgboost/feedback", {"instances": [GUIDE_ROW] * 6, "labels": [1] * 6}, "instances"),
        ("/xgboost/feedback", {"prediction_ids": ["x"] * 6, "labels": [1] * 6}, "prediction_ids"),
        ("/xgboost/feedback", {"prediction_ids": ["x"], "labels": [1] * 6}, "labels"),
    ]:
        status, answer, _ = _post(live, path, body)
        assert (status, answer["field"]) == (413, field), (path, answer)
        assert "5-row cap (SEEDCORE_MAX_PREDICT_ROWS)" in answer["error"], answer


def test_prediction_bodies_have_their_own_byte_cap(serve):
    live, _ = serve(max_predict_bytes=2048)
    big = json.dumps({"instances": [GUIDE_ROW] * 60}).encode()  # ~3 KB
    assert len(big) > 2048
    for chunked in (False, True):  # refused from the Content-Length; a chunked body is cut at the cap
        status, answer, _ = live.request("POST", "/xgboost/predict", big, {"Content-Type": "application/json"},
                                         chunked=chunked)
        assert (status, answer["field"]) == (413, "body"), answer
        assert "2048-byte cap (SEEDCORE_MAX_PREDICT_BYTES)" in answer["error"], answer
    # other endpoints keep the general cap: the same size is a 400 for its content, not a 413
    status, answer, _ = live.request("POST", "/xgboost/monitors", big, {"Content-Type": "application/json"})
    assert status == 400, answer


# -- concurrent heavy requests --------------------------------------------------------------------
def test_heavy_requests_beyond_the_slots_are_429_with_retry_after(serve):
    live, _ = serve(max_heavy_requests=1)
    heavy = json.dumps({"instances": [GUIDE_ROW] * 1500}).encode()  # over the 64 KiB of a light request
    assert len(heavy) > 64 * 1024

    def hold() -> socket.socket:
        """A heavy predict whose body is still on its way holds the one slot (this server reads in the view)."""
        sock = socket.create_connection((live.host, live.port), timeout=60)
        sock.sendall(b"POST /xgboost/predict HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (live.host.encode(), live.port, len(heavy)) + heavy[:1000])
        return sock

    holder = hold()
    try:
        def refused():
            nonlocal holder
            status, answer, headers = live.request("POST", "/xgboost/predict", heavy,
                                                   {"Content-Type": "application/json"})
            if status == 429:
                return status, answer, headers
            if select.select([holder], [], [], 0)[0]:  # answered already: our probe took the slot before it
                holder.close()
                holder = hold()
            return None

        status, answer, headers = wait_for(refused, 30, interval=0.1)
        assert headers["retry-after"] == "1" and "SEEDCORE_MAX_HEAVY_REQUESTS" in answer["error"], answer
        assert _post(live, "/xgboost/predict", {"features": GUIDE_ROW})[0] == 200  # light requests go on
        assert live.request("GET", "/health")[0] == 200

        holder.sendall(heavy[1000:])
        response = http.client.HTTPResponse(holder)
        response.begin()
        assert response.status == 200 and json.loads(response.read())["rows"] == 1500
    finally:
        holder.close()
    deadline = time.monotonic() + 30  # the slot is free again once that answer is out
    while live.request("POST", "/xgboost/predict", heavy, {"Content-Type": "application/json"})[0] != 200:
        assert time.monotonic() < deadline, "the heavy slot was never released"
        time.sleep(0.1)

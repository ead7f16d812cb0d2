"""A registry outage while serving: a real MLflow tracking server (REST) in front of the test's store
goes away; the process keeps serving what it has, says so, and catches up when the server returns."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from bench._ports import free_port
from _serving import GUIDE_ROW, add_version, serve_app, stop_app, wait_for
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.e2e

# MLflow's own server app (the one `mlflow server` runs), on werkzeug: starts in seconds.
SERVER = r"""
import sys
from werkzeug.serving import make_server
from mlflow.server import app
make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
"""


def _start_server(settings, port: int, log) -> subprocess.Popen:
    env = {**os.environ, "_MLFLOW_SERVER_FILE_STORE": settings.tracking_uri,
           "_MLFLOW_SERVER_REGISTRY_STORE": settings.registry_uri}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/get?name={settings.model_name}"
    wait_for(lambda: proc.poll() is not None or _answers(url), timeout=90, interval=0.2)
    assert proc.poll() is None, "the MLflow server exited"
    return proc


def _stop_server(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _predict(client) -> dict:
    response = client.post("/xgboost/predict", json={"features": GUIDE_ROW})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def fail_fast(monkeypatch):
    """MLflow's REST client retries for minutes by default; the outage should show at once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def test_serving_survives_a_registry_outage_and_catches_up(settings, tmp_path, fail_fast):
    v1, b1 = add_version(settings, Registry(settings), seed=1)
    port = free_port()
    rest = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "mlflow-server.log", "wb")
    server = _start_server(settings, port, log)
    app = serve_app(settings.replace(tracking_uri=rest, registry_uri=rest, poll_interval_s=0.2))
    client = app.test_client()
    try:
        assert client.get("/health").get_json()["model"]["state"] == "ready"
        assert _predict(client)["model_version"] == v1

        _stop_server(server)  # the registry goes away
        wait_for(lambda: client.get("/health").get_json()["model"]["state"] == "registry_unavailable")
        body = _predict(client)
        assert body["model_version"] == v1
        want = float(b1.inplace_predict(np.asarray([GUIDE_ROW], dtype=np.float32))[0])
        assert body["prediction"] == pytest.approx(want, abs=1e-6)
        status = client.get("/xgboost/model_info").get_json()["serving"]
        assert status["serving"] is True and status["version"] == v1 and str(port) in status["last_error"]
        refresh = client.post("/xgboost/refresh_model")
        assert refresh.status_code == 503 and refresh.get_json()["field"] is None
        assert client.get("/xgboost/list_models").status_code == 503

        v2, _ = add_version(settings, Registry(settings), seed=2, depth=3)  # promoted on the store itself
        time.sleep(1.0)
        assert _predict(client)["model_version"] == v1  # cannot see it yet: keeps what it has

        server = _start_server(settings, port, log)  # the registry is back
        wait_for(lambda: _predict(client)["model_version"] == v2)
        status = client.get("/health").get_json()["model"]
        assert status["state"] == "ready" and status["last_error"] is None and status["alias_version"] == v2
    finally:
        stop_app(app)
        _stop_server(server)
        log.close()

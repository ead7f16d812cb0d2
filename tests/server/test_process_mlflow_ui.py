"""The MLflow UI `seedcore up` starts answers only to its own host:port: MLflow's own Host and CORS checks."""

from __future__ import annotations

import time

import pytest
import requests
from bench._ports import free_port

from seedcore.server.mlflow_ui import start_mlflow_ui, stop_process

pytestmark = pytest.mark.e2e


def _wait_up(base: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/health", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"the MLflow UI did not answer within {timeout} s")


def test_mlflow_ui_refuses_foreign_hosts_and_origins(settings):
    port = free_port()
    ui = start_mlflow_ui(settings.replace(mlflow_ui_port=port))
    base = f"http://127.0.0.1:{port}"
    create = f"{base}/ajax-api/2.0/mlflow/experiments/create"
    try:
        _wait_up(base)
        assert requests.get(base, timeout=30).status_code == 200
        # DNS rebinding: a page served under another name reaching the UI through our address
        assert requests.get(base, headers={"Host": "evil.example"}, timeout=30).status_code == 403
        assert requests.get(base, headers={"Host": f"192.168.1.5:{port}"}, timeout=30).status_code == 403
        # cross-site write from a foreign page; the UI's own origin still works
        foreign = requests.post(create, json={"name": "x"}, headers={"Origin": "http://evil.example"}, timeout=30)
        assert foreign.status_code == 403
        own = requests.post(create, json={"name": "y"}, headers={"Origin": base}, timeout=30)
        assert own.status_code == 200 and own.json()["experiment_id"]
    finally:
        stop_process(ui)

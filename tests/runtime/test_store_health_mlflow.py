"""Losing the MLflow store: deleted under a running server, /health says degraded with the cause and writes
answer 503 (nothing created); corrupt at boot, `seedcore serve` and `seedcore up` still start, serve the
verified blessed file and say so. Real MLflow SQLite stores, real processes, real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from _flywheel import GUIDE_ROW, add_version, blessed_as_read
from _lifecycle import settings_env
from bench._ports import free_port
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.e2e

SEEDCORE = Path(sys.executable).parent / "seedcore"
SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "[SQL", "FROM ")


def assert_no_sql(text: str) -> None:
    assert not [word for word in SQL_WORDS if word in text], text


def test_a_deleted_store_is_degraded_and_writes_answer_503(app, client, migrated_settings):
    settings = migrated_settings
    registry = Registry(settings)
    v1, _ = add_version(settings, registry, seed=1)
    v2, _ = add_version(settings, registry, seed=2, promote=False)
    assert client.post("/xgboost/refresh_model").status_code == 200
    healthy = client.get("/health").get_json()
    assert healthy["status"] == "ok" and healthy["mlflow"]["status"] == "ok"

    (settings.mlruns_dir / "mlflow.db").unlink()

    response = client.get("/health")
    assert response.status_code == 200
    health = response.get_json()
    assert health["status"] == "degraded" and health["mlflow"]["status"] == "error"
    assert "mlflow.db is missing" in health["mlflow"]["error"]
    assert_no_sql(response.get_data(as_text=True))

    writes = [("/xgboost/promote", {"version": v2, "force": True}),
              ("/xgboost/tune/submit", {"space_type": "conservative", "custom_tune_config": {"num_samples": 1}}),
              ("/xgboost/train", {"params": {"max_depth": 2, "num_boost_round": 3}})]
    for path, body in writes:
        answer = client.post(path, json=body)
        assert answer.status_code == 503, (path, answer.get_json())
        assert answer.get_json()["status"] == "error" and "model registry unavailable" in answer.get_json()["error"]
        assert_no_sql(answer.get_data(as_text=True))
    assert client.get("/xgboost/tune/jobs").get_json()["total"] == 0  # no job was created
    assert blessed_as_read(settings)[0]["version"] == v1  # nothing promoted
    assert client.post("/xgboost/predict", json={"features": GUIDE_ROW}).status_code == 200  # serving goes on


@pytest.fixture
def corrupt_store(migrated_settings):
    """Version 1 promoted (blessed files written), then MLflow's SQLite file overwritten with garbage."""
    registry = Registry(migrated_settings)
    _, booster = add_version(migrated_settings, registry, seed=1)
    (migrated_settings.mlruns_dir / "mlflow.db").write_bytes(b"definitely not SQLite " * 200)
    expected = float(booster.inplace_predict(np.asarray([GUIDE_ROW], dtype=np.float32))[0])
    return migrated_settings, expected


def _start(command: list[str], settings, port: int, log: Path) -> subprocess.Popen:
    env = settings_env(settings, SEEDCORE_PORT=str(port), SEEDCORE_HOST="127.0.0.1")
    with open(log, "w") as out:
        return subprocess.Popen([str(SEEDCORE), *command], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _health(api: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the server exited with {process.returncode}:\n{log.read_text()[-4000:]}"
        try:
            return requests.get(f"{api}/health", timeout=10).json()
        except requests.RequestException:
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)


def _assert_serving_the_blessed_file(api: str, health: dict, expected: float) -> None:
    assert health["status"] == "degraded"
    assert health["mlflow"]["status"] == "error" and "not a SQLite database" in health["mlflow"]["error"]
    assert health["model"]["source"] == "blessed_file" and health["model"]["version"] == 1
    info = requests.get(f"{api}/xgboost/model_info", timeout=10).json()
    assert info["source"] == "blessed_file" and info["version"] == 1
    predicted = requests.post(f"{api}/xgboost/predict", json={"features": GUIDE_ROW}, timeout=10)
    assert predicted.status_code == 200
    assert predicted.json()["model_version"] == 1 and predicted.json()["probability"] == pytest.approx(expected)


def test_serve_starts_from_the_blessed_file_with_a_corrupt_store(corrupt_store, tmp_path):
    settings, expected = corrupt_store
    port, log = free_port(), tmp_path / "serve.log"
    server = _start(["serve", "--workers", "1"], settings, port, log)
    try:
        api = f"http://127.0.0.1:{port}"
        _assert_serving_the_blessed_file(api, _health(api, server, log), expected)
    finally:
        _stop(server)


def test_up_starts_from_the_blessed_file_with_a_corrupt_store(corrupt_store, tmp_path):
    settings, expected = corrupt_store
    port, log = free_port(), tmp_path / "up.log"
    server = _start(["up", "--no-mlflow-ui"], settings, port, log)
    try:
        api = f"http://127.0.0.1:{port}"
        _assert_serving_the_blessed_file(api, _health(api, server, log), expected)
        submitted = requests.post(f"{api}/xgboost/tune/submit", json={"space_type": "conservative"}, timeout=30)
        assert submitted.status_code == 503 and "not a SQLite database" in submitted.json()["error"]
        assert_no_sql(submitted.text)
    finally:
        _stop(server)
    assert "not a SQLite database" in log.read_text()  # `up` said why, at start

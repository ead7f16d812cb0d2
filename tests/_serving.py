"""Helpers for the serving tests: real registered versions, a serve-role app, a live threaded server.

Import into a test module (`from _serving import ...`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests
import xgboost as xgb

from bench._serving import live_server  # noqa: F401  (the tests' and the benchmarks' one live server)
from bench._ports import free_port
from seedcore.api import create_app
from seedcore.datasets import load_dataset
from seedcore.scoring import evaluate
from seedcore.promotion.model_logging import Candidate
from seedcore.promotion.production import Production
from seedcore.promotion.registry import Registry, ensure_experiment
from seedcore.services import services_of

EXPERIMENT = "serving-tests"
GUIDE_ROW = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def train_booster(settings, seed: int = 0, rounds: int = 5, depth: int = 2) -> tuple[xgb.Booster, dict]:
    """A tiny real booster on the built-in dataset; different seeds/depths give different models."""
    dataset = load_dataset(settings.data_dir)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": seed,
              "subsample": 0.8, "nthread": 1}
    dtrain = xgb.DMatrix(dataset.x_train, label=dataset.y_train, feature_names=list(dataset.feature_names))
    return xgb.train(params, dtrain, num_boost_round=rounds), params


def add_version(settings, registry: Registry, *, seed: int = 0, rounds: int = 5, depth: int = 2,
                promote: bool = True) -> tuple[int, xgb.Booster]:
    """Train, register (a real MLflow run and model version) and optionally force-promote."""
    dataset = load_dataset(settings.data_dir)
    booster, params = train_booster(settings, seed, rounds, depth)
    run = registry.client.create_run(ensure_experiment(registry.client, settings, EXPERIMENT))
    candidate = Candidate(booster, params, dataset, evaluate(booster, dataset.x_valid, dataset.y_valid),
                          run.info.run_id, EXPERIMENT)
    mv = registry.register(candidate)
    registry.client.set_terminated(run.info.run_id)
    if promote:
        Production(registry).promote(mv.version, force=True, dataset=dataset)
    return int(mv.version), booster


def holdout_rows(settings, n: int = 8) -> np.ndarray:
    return load_dataset(settings.data_dir).x_holdout[:n]


def serve_app(settings):
    """The predict-only app, as `seedcore serve` builds it."""
    app = create_app(settings, role="serve")
    app.config["TESTING"] = True
    return app


def stop_app(app) -> None:
    services_of(app).stop()


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


PRODUCTION_URI = "models:/utility_risk_model@production"


@contextmanager
def mlflow_models_serve(settings, log_path: Path, model_uri: str = PRODUCTION_URI):
    """A real `mlflow models serve` (this venv, no new environment) of `model_uri`; yields its port."""
    port, venv_bin = free_port(), str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri, "MLFLOW_REGISTRY_URI": settings.registry_uri,
           "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}  # it execs `uvicorn` from PATH
    cmd = [os.path.join(venv_bin, "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or _pings(port), timeout=120, interval=0.5)
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _pings(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200
    except requests.RequestException:
        return False

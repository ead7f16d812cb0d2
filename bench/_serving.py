"""Servers for the predict and batch benchmarks: one promoted version, ours and `mlflow models serve`."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import xgboost as xgb

from bench._ports import free_port
from bench._workspace import Workspace, mlflow_state
from seedcore.config import Settings
from seedcore.datasets import builtin_frame, split_frame, BUILTIN_FEATURES, BUILTIN_LABEL
from seedcore.scoring import evaluate
from seedcore.names import PRODUCTION_ALIAS

MODEL_PARAMS = {"objective": "binary:logistic", "eval_metric": ["logloss", "auc"], "tree_method": "hist",
                "max_depth": 6, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.8, "seed": 0}
MODEL_ROUNDS = 200
ROW = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # the guide's example row


def promoted_store(ws: Workspace, name: str, data_files: tuple[Path, ...] = ()) -> tuple[Settings, int]:
    """A fresh store holding one registered, promoted version (200 trees, depth 6) of the model."""
    from seedcore.promotion.model_logging import Candidate
    from seedcore.promotion.production import Production
    from seedcore.promotion.registry import Registry, ensure_experiment

    settings = ws.ours(name, data_files)
    dataset = split_frame(builtin_frame(), BUILTIN_LABEL, list(BUILTIN_FEATURES), "builtin")
    dtrain = xgb.DMatrix(dataset.x_train, label=dataset.y_train, feature_names=list(dataset.feature_names))
    booster = xgb.train(MODEL_PARAMS, dtrain, num_boost_round=MODEL_ROUNDS)
    with mlflow_state():
        registry = Registry(settings)
        run = registry.client.create_run(ensure_experiment(registry.client, settings, name))
        candidate = Candidate(booster, {**MODEL_PARAMS, "num_boost_round": MODEL_ROUNDS}, dataset,
                              evaluate(booster, dataset.x_valid, dataset.y_valid), run.info.run_id, name)
        version = registry.register(candidate)
        registry.client.set_terminated(run.info.run_id)
        Production(registry).promote(version.version, force=True, dataset=dataset)
    return settings, int(version.version)


@dataclass
class Server:
    """A server we started in its own process group; `stop()` ends that group only."""

    name: str
    process: subprocess.Popen
    port: int
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def processes(self) -> list[psutil.Process]:
        """The server's own process and all its children (WSGI/ASGI workers)."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def fail(self, why: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        return RuntimeError(f"{self.name}: {why}; its log ends with:\n{tail}")


def _spawn(name: str, command: list[str], env: dict, port: int, log_dir: Path) -> Server:
    log_path = log_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(name, process, port, log_path)


def _base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEEDCORE_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # uvicorn, gunicorn
    return env


def start_ours(settings: Settings, workers: int, log_dir: Path) -> Server:
    """`seedcore serve --workers N` (gunicorn's asyncio worker, our front) over the bench's store and data dir."""
    port = free_port()
    env = {**_base_env(), "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_TRACKING_URI": settings.tracking_uri, "SEEDCORE_HOST": "127.0.0.1", "SEEDCORE_PORT": str(port)}
    return _spawn("ours", [sys.executable, "-m", "seedcore.cli", "serve", "--workers", str(workers)], env, port,
                  log_dir)


def start_mlflow(settings: Settings, workers: int, log_dir: Path) -> Server:
    """`mlflow models serve -m models:/<name>@production --env-manager local -w N` over the same registry."""
    port = free_port()
    env = {**_base_env(), "MLFLOW_TRACKING_URI": settings.tracking_uri, "MLFLOW_REGISTRY_URI": settings.registry_uri}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{settings.model_name}@{PRODUCTION_ALIAS}",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    return _spawn("mlflow", command, env, port, log_dir)


def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 30.0) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, payload, {"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw or b"null")
        except ValueError:
            return response.status, {"raw": raw[:200].decode(errors="replace")}
    finally:
        conn.close()


def wait_until(server: Server, ready, timeout: float = 120.0) -> None:
    """Poll `ready()` until true; fail with the server's log if it exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise server.fail(f"exited with code {server.process.returncode}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise server.fail(f"not ready after {timeout:.0f} s")


def ours_ready(server: Server, version: int) -> bool:
    status, body = request(server.port, "GET", "/xgboost/model_info", timeout=5)
    return status == 200 and body.get("version") == version


def mlflow_ready(server: Server) -> bool:
    status, _ = request(server.port, "GET", "/ping", timeout=5)
    return status == 200


def ours_body(row: list[float]) -> dict:
    return {"features": row}


def mlflow_body(row: list[float]) -> dict:
    return {"dataframe_split": {"columns": list(BUILTIN_FEATURES), "data": [row]}}


class RssSampler:
    """Peak resident memory of a set of processes, sampled every `interval` s in a thread."""

    def __init__(self, processes: list[psutil.Process], interval: float = 0.005):
        self.processes, self.interval = processes, interval
        self.peak: dict[int, int] = {}
        self.baseline = {p.pid: _rss(p) for p in processes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for process in self.processes:
            rss = _rss(process)
            if rss > self.peak.get(process.pid, 0):
                self.peak[process.pid] = rss

    def busiest(self) -> tuple[int, int]:
        """(peak, baseline) in bytes of the process whose memory grew the most."""
        pid = max(self.peak, key=lambda p: self.peak[p] - self.baseline.get(p, 0))
        return self.peak[pid], self.baseline.get(pid, 0)


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


@contextmanager
def live_server(app):
    """Serve `app` over real HTTP from a threaded werkzeug server; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)

"""`seedcore serve` shape: gunicorn runs `create_app(role="serve")` in several workers; each worker
polls the registry on its own and converges on the production version (with and without --preload)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict

import pytest
import requests

from bench._ports import free_port
from _serving import GUIDE_ROW, add_version, wait_for
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.e2e

WORKERS = 2


def _start_gunicorn(settings, port: int, preload: bool, log_path) -> subprocess.Popen:
    env = {**os.environ, "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_POLL_INTERVAL_S": "0.3"}
    cmd = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "--timeout", "120",
           *(["--preload"] if preload else []), "seedcore.api:create_app(role='serve')"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _versions_by_pid(url: str, seen: dict) -> dict:
    """One model_info on a fresh connection (so the kernel may hand it to any worker)."""
    status = requests.get(f"{url}/xgboost/model_info", timeout=30).json()["serving"]
    seen[status["pid"]].add(status["version"])
    return seen


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-load", "preload"])
def test_every_worker_converges_on_the_production_version(settings, tmp_path, preload):
    registry = Registry(settings)
    v1, _ = add_version(settings, registry, seed=1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_gunicorn(settings, port, preload, tmp_path / "gunicorn.log")
    try:
        wait_for(lambda: _answers(url), timeout=90, interval=0.3)
        seen = defaultdict(set)
        wait_for(lambda: len(_versions_by_pid(url, seen)) >= WORKERS, timeout=60)
        workers = set(seen)
        assert all(versions == {v1} for versions in seen.values())

        v2, _ = add_version(settings, registry, seed=2, depth=3)  # promoted; nobody calls refresh_model
        after = defaultdict(set)
        wait_for(lambda: all(v2 in _versions_by_pid(url, after)[pid] for pid in workers), timeout=60)
        body = requests.post(f"{url}/xgboost/predict", json={"features": GUIDE_ROW}, timeout=30).json()
        assert body["model_version"] == v2
    finally:
        _stop(proc)
    log = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False

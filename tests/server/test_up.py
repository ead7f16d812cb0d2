"""`seedcore up` as a user runs it: gunicorn API + job runner + local Ray + MLflow UI; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import psutil
import requests

from bench._ports import free_port
from seedcore.server.mlflow_ui import UI_WORKERS

pytestmark = pytest.mark.e2e

SEEDCORE = Path(sys.executable).parent / "seedcore"


def _wait_for_answer(url: str, timeout: float, process: subprocess.Popen, log: Path) -> requests.Response:
    """The first answer from `url`; fail early (with the log) if the process died."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"seedcore up exited with {process.returncode}:\n{log.read_text()[-4000:]}"
        try:
            return requests.get(url, timeout=10)
        except requests.ConnectionError:
            pass
        except requests.Timeout:
            pass
        assert time.monotonic() < deadline, f"no answer from {url} after {timeout} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:  # ended meanwhile (zombies too)
        return []


def _alive(processes: list[psutil.Process]) -> list[str]:
    names = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                names.append(f"{process.pid} {' '.join(_cmdline(process))[:100]}")
        except psutil.NoSuchProcess:
            pass
    return names


def test_up_serves_the_api_with_gunicorn_and_the_mlflow_ui_and_stops_on_ctrl_c(tmp_path):
    port, ui_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDCORE_") and k != "RAY_ADDRESS"}
    env.update(SEEDCORE_DATA_DIR=str(tmp_path / "data"), SEEDCORE_MLRUNS_DIR=str(tmp_path / "mlruns"),
               SEEDCORE_PORT=str(port), SEEDCORE_MLFLOW_UI_PORT=str(ui_port))
    api = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen([str(SEEDCORE), "up"], env=env, stdout=out, stderr=subprocess.STDOUT)
    descendants: list[psutil.Process] = []
    try:
        health = _wait_for_answer(f"{api}/health", 180, up, log)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["database"]["status"] == "ok"
        assert health.headers["Server"].startswith("gunicorn"), health.headers  # not Flask's dev server
        assert "werkzeug" not in health.headers["Server"].lower()

        mlflow_ui = _wait_for_answer(f"http://127.0.0.1:{ui_port}/health", 300, up, log)
        assert mlflow_ui.status_code == 200 and mlflow_ui.text.strip() == "OK"
        assert requests.get(f"http://127.0.0.1:{ui_port}/", timeout=30).status_code == 200

        spec = requests.get(f"{api}/openapi.json", timeout=30)
        assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.1")
        assert "/xgboost/tune" in spec.json()["paths"]
        docs = requests.get(f"{api}/docs", timeout=30)
        assert docs.status_code == 200 and docs.headers["Content-Type"].startswith("text/html")

        # the guide's curl without -H (curl then sends a form content type): a real sweep on the server's Ray
        sweep = requests.post(f"{api}/xgboost/tune", timeout=900,
                              headers={"Content-Type": "application/x-www-form-urlencoded"},
                              data='{"space_type": "conservative", "config_type": "conservative", '
                                   '"experiment_name": "up_smoke", "custom_tune_config": {"num_samples": 1}}')
        assert sweep.status_code == 200, sweep.text
        assert sweep.json()["status"] == "success" and sweep.json()["promotion"]["status"] == "success"
        assert (tmp_path / "data" / "models" / "utility_risk_model_latest" / "model.xgb").is_file()

        banner = log.read_text()
        data = tmp_path / "data"
        assert f"Tune results           {(data / 'ray_results').resolve()}" in banner
        assert f"Log file               {(data / 'logs' / 'seedcore.log').resolve()}" in banner
        assert "Ray dashboard          http://127.0.0.1:" in banner  # the session's own port, once Ray is up
        # the guide's greps, on the log file
        lines = (data / "logs" / "seedcore.log").read_text().splitlines()
        assert any("tune sweep succeeded: experiment=up_smoke" in line for line in lines), lines[-20:]
        assert any("model promoted" in line.lower() for line in lines), lines[-20:]
        # `ray status` for this server's Ray, whatever other Ray sessions this machine runs (the tests' own)
        status = subprocess.run([str(SEEDCORE), "ray", "status"], env=env, capture_output=True, text=True,
                                timeout=120)
        assert status.returncode == 0, status.stderr[-2000:]
        assert "Active:" in status.stdout and "CPU" in status.stdout, status.stdout

        descendants = psutil.Process(up.pid).children(recursive=True)
        ui_children = [p for p in descendants if "mlflow" in " ".join(_cmdline(p)) and "ui" in _cmdline(p)]
        assert len(ui_children) == 1, [_cmdline(p) for p in descendants]
        ui_tree = ui_children[0].children(recursive=True)
        assert not [p for p in ui_tree if "huey" in " ".join(_cmdline(p))], [_cmdline(p) for p in ui_tree]
        assert len(ui_tree) <= UI_WORKERS + 2, [_cmdline(p) for p in ui_tree]  # uvicorn, its workers, a helper

        up.send_signal(signal.SIGINT)
        assert up.wait(90) == 0, log.read_text()[-3000:]
        psutil.wait_procs(descendants, timeout=60)
        assert _alive(ui_children) == []
        assert _alive(descendants) == []  # gunicorn worker, Ray, MLflow UI and its workers: all gone
        assert not (data / "ray" / "session.json").exists()  # `seedcore ray status` no longer points at it
        gone = subprocess.run([str(SEEDCORE), "ray", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert gone.returncode == 1 and "no running `seedcore up`" in gone.stderr
    finally:
        _stop_everything(up, descendants)


def _stop_everything(up: subprocess.Popen, known: list[psutil.Process]) -> None:
    """After a failure: kill, by pid, the `up` process and every process it started (the whole tree,
    collected before anything is killed, so no grandchild is orphaned)."""
    roots = [p for p in known if p.is_running()]  # is_running() also rules out a reused pid
    if up.poll() is None:
        roots.append(psutil.Process(up.pid))
    tree = list(known)
    for root in roots:
        try:
            tree += root.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    if up.poll() is None:
        up.kill()
        up.wait(30)
    for process in tree:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass

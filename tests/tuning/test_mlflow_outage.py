"""The tracking server goes away mid-sweep and comes back: no trial record is lost. Trials that end while it is
down are written once it answers again, in order (runs, curves, final metrics, status). A real `mlflow server`
process, SIGKILLed and started again on the same port and store; real Ray and XGBoost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from bench._ports import free_port
from seedcore import names
from seedcore.server.mlflow_ui import MLFLOW_SERVER_ENV
from seedcore.tuning import run_sweep

pytestmark = pytest.mark.e2e

TRIALS, ROUNDS = 4, 300
SPACE = {"eta": {"type": "loguniform", "lower": 0.01, "upper": 0.02}, "max_depth": 6, "num_boost_round": ROUNDS}


def _start_server(root: Path, port: int) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--serve-artifacts",
               "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    with open(root / "server.log", "ab") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, **MLFLOW_SERVER_ENV})  # no job consumers, as ours
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return server
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()[-3000:]
            time.sleep(0.3)


def _kill(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(30)


@pytest.mark.timeout(420)
def test_trials_that_end_while_the_tracking_server_is_down_are_recorded_once_it_is_back(migrated_settings,
                                                                                       ray_session, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # each call fails fast; our writer retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    root, port = tmp_path / "tracking", free_port()
    root.mkdir()
    url = f"http://127.0.0.1:{port}"
    settings = migrated_settings.replace(tracking_uri=url, registry_uri=url)
    server = _start_server(root, port)
    done: list[tuple[float, int]] = []
    outcome: dict = {}

    def note(progress: dict) -> None:
        done.append((time.monotonic(), progress["trials_done"]))

    def sweep() -> None:
        try:
            outcome["result"] = run_sweep(settings, progress=note,
                                          custom_search_space=SPACE, config_type="conservative",
                                          experiment_name="outage",
                                          custom_tune_config={"num_samples": TRIALS, "max_concurrent_trials": 1,
                                                              "seed": 11, "grace_period": ROUNDS})
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    try:
        deadline = time.monotonic() + 180
        while not done or done[-1][1] < 1:  # one trial recorded: the server is cut mid-sweep
            assert thread.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.1)
        _kill(server)
        down_at, ended_before = time.monotonic(), done[-1][1]
        while done[-1][1] < ended_before + 1:  # a trial ends while the server is down
            assert thread.is_alive() and time.monotonic() < down_at + 120, outcome
            time.sleep(0.1)
        time.sleep(2)
        server = _start_server(root, port)
        thread.join(300)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]
        assert result["trials"]["completed"] == TRIALS, result["trials"]

        client = MlflowClient(tracking_uri=url)
        parent = client.get_run(result["mlflow"]["parent_run_id"])
        children = client.search_runs([parent.info.experiment_id],
                                      filter_string=f"tags.`{names.TAG_PARENT_RUN}` = '{parent.info.run_id}'")
        assert parent.info.status == "FINISHED"
        assert len(children) == TRIALS and len({r.data.tags[names.TAG_TRIAL_ID] for r in children}) == TRIALS
        for run in children:
            assert run.info.status == "FINISHED" and run.data.tags["seedcore.outcome"] == "completed"
            steps = [m.step for m in client.get_metric_history(run.info.run_id, names.AUC)]
            assert sorted(steps) == list(range(1, ROUNDS + 1))  # the whole curve, once
            assert f"final_{names.AUC}" in run.data.metrics
    finally:
        if server.poll() is None:
            _kill(server)

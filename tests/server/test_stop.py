"""SIGTERM (docker stop) and SIGINT (Ctrl-C to the foreground group) stop `seedcore up` mid-sweep, and
`seedcore serve`, within 10 s: the job cancelled, its MLflow runs KILLED, no process of the session left."""

from __future__ import annotations

import signal
import subprocess

import pytest
import requests

from seedcore.config import Settings
from _lifecycle import NO_RAY_DASHBOARD, clean_env, describe, session_processes, start, wait_until_gone
from bench._ports import free_port
from _tuning import LONG, job_rows, sweep_runs, wait_for

pytestmark = pytest.mark.e2e

STOP_WITHIN_S = 10.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_up_stops_mid_sweep_cancelling_the_job_and_leaving_no_process(tmp_path, signum):
    port = free_port()
    env = clean_env(tmp_path, SEEDCORE_PORT=str(port), SEEDCORE_MLFLOW_UI_PORT=str(free_port()),
                    **NO_RAY_DASHBOARD)
    up = start(["up"], tmp_path, port, env)
    try:
        assert up.wait_for("/health").status_code == 200
        submitted = requests.post(f"{up.url}/xgboost/tune/submit", json={**LONG, "experiment_name": "stopping"},
                                  timeout=60)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]

        settings = Settings(data_dir=tmp_path / "data", mlruns_dir=tmp_path / "mlruns")

        def trials_running():  # the parent run exists before any trial: wait for a trial's run too
            body = requests.get(f"{up.url}/xgboost/tune/status/{job_id}", timeout=30).json()
            parent_id = body["mlflow_parent_run_id"] if body["state"] == "running" else None
            return parent_id if parent_id and sweep_runs(settings, parent_id)[1] else None

        parent_run_id = wait_for(trials_running, 180, "the sweep to start its trials", interval=0.3)
        up.remember_processes()
        assert any("raylet" in line for line in describe(up.seen)), describe(up.seen)  # Ray runs in the session
        started = up.signal_group(signum)
        try:
            exit_code = up.process.wait(STOP_WITHIN_S + 5)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running: {describe(session_processes(up.sid))}\n{up.text()[-5000:]}")
        took = wait_until_gone(up.sid, started, STOP_WITHIN_S)
        print(f"{signal.Signals(signum).name}: everything stopped {took:.2f} s after the signal")
        assert took <= STOP_WITHIN_S, f"everything stopped only {took:.2f} s after the signal"
        log = up.text()
        assert exit_code in (0, 128 + signum, -signum), log[-3000:]
        for symptom in ("Worker was sent SIGKILL", "SIGABRT", "Aborted", "core dumped", "Traceback"):
            assert symptom not in log, log[-4000:]

        (job,) = [row for row in job_rows(settings) if row["id"] == job_id]
        assert job["state"] == "cancelled", job
        parent, children = sweep_runs(settings, parent_run_id)
        assert parent.info.status == "KILLED"
        assert children and {run.info.status for run in children} <= {"KILLED", "FINISHED"}
        assert "RUNNING" not in {run.info.status for run in children}
    finally:
        up.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_within_ten_seconds_leaving_no_process(tmp_path, signum):
    port = free_port()
    serve = start(["serve", "--workers", "2"], tmp_path, port, clean_env(tmp_path, SEEDCORE_PORT=str(port)),
                  name="serve")
    try:
        assert serve.wait_for("/health").status_code == 200
        assert len(serve.remember_processes()) >= 3, describe(serve.seen)  # the arbiter and two workers
        started = serve.signal_group(signum)
        serve.process.wait(STOP_WITHIN_S + 5)
        took = wait_until_gone(serve.sid, started, STOP_WITHIN_S)
        print(f"serve {signal.Signals(signum).name}: stopped {took:.2f} s after the signal")
        assert "Worker was sent SIGKILL" not in serve.text()
    finally:
        serve.stop()

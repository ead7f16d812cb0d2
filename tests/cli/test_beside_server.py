"""`seedcore tune` while `seedcore up` runs on the same database.

By default the CLI hands the sweep to the server over REST (its Ray is already up) and follows it there:
the job is the server's (owned by the server's worker, trigger `manual`: a person asked for it), the CLI prints the same result,
a bad request is the server's 400 naming the field, and Ctrl-C in the terminal cancels the server's job.
With `--here` the CLI runs its own job (created already claimed by it); the server's runner never takes it.
`seedcore evolution baseline` is handed over the same way (`POST /xgboost/evolution/baselines`).
When the server has stopped, its announcement is gone and the CLI runs sweeps itself again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests

from _lifecycle import SEEDCORE, clean_env, start
from bench._ports import free_port
from _tuning import job_rows
from seedcore.config import Settings
from seedcore.runtime.discovery import find_server

pytestmark = pytest.mark.e2e

ONE_TRIAL = ["--custom-config", '{"num_samples": 1, "search_alg": "tpe"}']


def _cli(args: list[str], env: dict) -> subprocess.Popen:
    # A session of its own, as a terminal would start it: Ctrl-C goes to the CLI's group, not the server's.
    return subprocess.Popen([str(SEEDCORE), "tune", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_as_a_terminal_starts_it)


def _as_a_terminal_starts_it() -> None:
    """Ctrl-C's default action, as a terminal gives it: a test run started in the background (CI) has SIGINT
    ignored, which its children inherit and Python then respects."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_tune_hands_sweeps_to_a_running_server_or_runs_here(tmp_path):
    port = free_port()
    # The server's dashboard on a port of its own, exported as the README suggests: `--here` must not take it.
    env = clean_env(tmp_path, SEEDCORE_PORT=str(port), SEEDCORE_RAY_DASHBOARD_PORT=str(free_port()))
    settings = Settings(data_dir=tmp_path / "data", mlruns_dir=tmp_path / "mlruns")
    up = start(["up", "--no-mlflow-ui"], tmp_path, port, env)
    try:
        assert up.wait_for("/health", 300).status_code == 200
        server_url = f"http://127.0.0.1:{port}"
        assert find_server(settings) == server_url

        handed = _cli([*ONE_TRIAL, "--experiment-name", "handed_over"], env)
        out, err = handed.communicate(timeout=900)
        assert handed.returncode == 0, err[-4000:]
        assert f"handed to the server at {server_url}" in err
        result = json.loads(out)
        assert result["status"] == "success" and result["experiment_name"] == "handed_over"
        (job,) = job_rows(settings)
        assert job["id"] == result["job_id"] and job["state"] == "succeeded" and job["trigger"] == "manual"
        assert job["owner_pid"] != handed.pid  # the server's runner ran it
        server_pid = job["owner_pid"]
        status = requests.get(f"{server_url}/xgboost/tune/status/{job['id']}", timeout=10).json()["result"]
        # the same answer; only its follow-ups (pictures, description, drift reference) may have ended meanwhile
        assert {**status, "followups": None} == {**result, "followups": None}
        assert set(status["followups"]) == set(result["followups"])

        refused = _cli([*ONE_TRIAL, "--data", "no_such_file.csv"], env)
        out, err = refused.communicate(timeout=120)
        assert refused.returncode == 2, err[-2000:]
        assert json.loads(err.strip().splitlines()[-1])["field"] == "data_source"
        assert out == "" and len(job_rows(settings)) == 1  # nothing was queued

        here = _cli([*ONE_TRIAL, "--experiment-name", "run_here", "--here", "--no-promote"], env)
        out, err = here.communicate(timeout=900)
        assert here.returncode == 0, err[-4000:]
        assert "handed to the server" not in err
        job = next(j for j in job_rows(settings) if j["id"] == json.loads(out)["job_id"])
        assert job["trigger"] == "manual" and job["owner_pid"] == here.pid  # run by the CLI itself

        baseline = subprocess.run([str(SEEDCORE), "evolution", "baseline", result["job_id"], "--kind", "random_search"],
                                  env=env, capture_output=True, text=True, timeout=900)
        assert baseline.returncode == 0, baseline.stderr[-4000:]
        assert f"handed to the server at {server_url}" in baseline.stderr
        assert json.loads(baseline.stdout)["promotion"]["status"] == "skipped"
        (job,) = [j for j in job_rows(settings) if j["trigger"] == f"random_baseline:{result['job_id']}"]
        assert job["state"] == "succeeded" and job["owner_pid"] == server_pid  # run by the server's runner
        assert job["request"]["custom_tune_config"]["search_alg"] == "random"

        _ctrl_c_cancels_the_servers_job(env, settings, server_url)
    finally:
        up.signal_group(signal.SIGTERM)
        try:
            up.process.wait(60)
        finally:
            up.stop()
    assert find_server(settings) is None  # the stopped server no longer announces itself


def _ctrl_c_cancels_the_servers_job(env: dict, settings: Settings, server_url: str) -> None:
    long_sweep = ["--custom-config", '{"num_samples": 200, "max_concurrent_trials": 1}',
                  "--experiment-name", "interrupted"]
    cli = _cli(long_sweep, env)
    deadline = time.monotonic() + 300
    while not any(j["experiment_name"] == "interrupted" and j["state"] == "running" for j in job_rows(settings)):
        assert cli.poll() is None, cli.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the handed-over sweep never started"
        time.sleep(0.3)
    os.killpg(cli.pid, signal.SIGINT)
    _, err = cli.communicate(timeout=120)
    assert cli.returncode == 130, err[-3000:]
    (job,) = [j for j in job_rows(settings) if j["experiment_name"] == "interrupted"]
    deadline = time.monotonic() + 120
    while (state := requests.get(f"{server_url}/xgboost/tune/status/{job['id']}", timeout=10).json()["state"]) in (
            "queued", "running"):
        assert time.monotonic() < deadline, "the server's job did not stop after Ctrl-C in the CLI"
        time.sleep(0.5)
    assert state == "cancelled"

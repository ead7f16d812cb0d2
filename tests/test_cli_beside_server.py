"""`seedcore tune` while `seedcore up` runs on the same database: the CLI runs its own job (created already
claimed by it) and ends; the server's runner never takes it."""

from __future__ import annotations

import json
import signal
import subprocess

from _lifecycle import SEEDCORE, clean_env, free_port, start
from _tuning import job_rows
from seedcore.config import Settings


def test_tune_beside_a_running_server_runs_its_own_job_and_ends(tmp_path):
    port = free_port()
    env = clean_env(tmp_path, SEEDCORE_PORT=str(port), SEEDCORE_RAY_DASHBOARD_PORT="0")
    up = start(["up", "--no-mlflow-ui"], tmp_path, port, env)
    try:
        assert up.wait_for("/health", 300).status_code == 200
        cli = subprocess.Popen([str(SEEDCORE), "tune", "--custom-config", '{"num_samples": 1}',
                                "--experiment-name", "beside_the_server"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        out, err = cli.communicate(timeout=900)
        assert cli.returncode == 0, err[-4000:]
        result = json.loads(out)
        assert result["status"] == "success" and result["experiment_name"] == "beside_the_server"

        settings = Settings(data_dir=tmp_path / "data", mlruns_dir=tmp_path / "mlruns")
        (job,) = job_rows(settings)
        assert job["id"] == result["job_id"] and job["state"] == "succeeded" and job["trigger"] == "manual"
        assert job["owner_pid"] == cli.pid  # run by the CLI, not by the server's runner
    finally:
        up.signal_group(signal.SIGTERM)
        try:
            up.process.wait(60)
        finally:
            up.stop()

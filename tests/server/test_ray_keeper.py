"""The server's Ray keeper: a Ray that could not start ahead of the first sweep is tried again, and once it
runs, `seedcore ray status` finds it (the session file is written whoever started Ray)."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from _lifecycle import NO_RAY_DASHBOARD, SEEDCORE, clean_env, start, wait_until_gone
from bench._ports import free_port
from seedcore.server.ray_keeper import RAY_RETRY_S

pytestmark = pytest.mark.e2e


def test_a_ray_that_failed_to_start_is_started_again_and_announced(tmp_path):
    ray_tmp = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))  # short: Ray's socket paths live under it
    blocker = ray_tmp / "ray"
    blocker.write_text("not a directory")  # Ray cannot make its session dir under it: ray.init fails
    port = free_port()
    env = clean_env(tmp_path, SEEDCORE_PORT=str(port), **NO_RAY_DASHBOARD, RAY_TMPDIR=str(ray_tmp))
    server = start(["up", "--no-mlflow-ui"], tmp_path, port, env)
    session = tmp_path / "data" / "ray" / "session.json"
    try:
        server.wait_for("/health")
        deadline = time.monotonic() + 120
        while "Ray did not start ahead of the first sweep (trying again" not in server.text():
            assert time.monotonic() < deadline, server.text()[-3000:]
            time.sleep(0.3)
        assert not session.exists()
        blocker.unlink()  # the machine is ready now: the next try starts Ray
        deadline = time.monotonic() + RAY_RETRY_S + 120
        while not session.exists():
            assert time.monotonic() < deadline, "Ray was never announced:\n" + server.text()[-3000:]
            time.sleep(0.3)
        assert psutil.pid_exists(json.loads(session.read_text())["pid"])
        deadline = time.monotonic() + 60
        while True:  # Ray's status shows once its monitor reported ("No cluster status. It may take a few seconds")
            status = subprocess.run([str(SEEDCORE), "ray", "status"], env=env, capture_output=True, text=True,
                                    timeout=120)
            if status.returncode != 0 or "Active:" in status.stdout or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert status.returncode == 0 and "Active:" in status.stdout, status.stdout + status.stderr[-2000:]
        server.remember_processes()
        wait_until_gone(server.sid, server.signal_group(signal.SIGTERM), 30)
    finally:
        server.stop()

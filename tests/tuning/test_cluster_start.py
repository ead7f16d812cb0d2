"""A local Ray whose raylet does not register within Ray's fixed 30 s (a loaded machine) is started again,
and what the failed start left is killed. The raylet of the first start is really frozen (SIGSTOP) as soon as
it appears, in a process of the test's own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from _lifecycle import NO_RAY_DASHBOARD
from tests.tuning.test_cluster_dashboard import _env

pytestmark = pytest.mark.e2e

FROZEN_FIRST_RAYLET = """
import json, threading, time
import psutil, ray
from seedcore.config import Settings
from seedcore.tuning.cluster import ensure_ray

frozen = []

def freeze_the_first_raylet():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not frozen:
        for process in psutil.Process().children(recursive=True):
            try:
                if process.name() == "raylet":
                    process.suspend()
                    frozen.append(process)
                    return
            except psutil.Error:
                pass
        time.sleep(0.005)

threading.Thread(target=freeze_the_first_raylet, daemon=True).start()
started = time.monotonic()
assert ensure_ray(Settings.from_env())
took = time.monotonic() - started
alive = [p.pid for p in psutil.Process().children(recursive=True) if p.name() == "raylet"]
gone = not frozen[0].is_running() or frozen[0].status() == psutil.STATUS_ZOMBIE
print(json.dumps({"took": took, "nodes": len(ray.nodes()), "frozen": frozen[0].pid, "frozen_gone": gone,
                  "raylets": alive}))
ray.shutdown()
"""


@pytest.mark.timeout(300)
def test_a_local_ray_that_timed_out_starting_is_started_again(tmp_path):
    done = subprocess.run([sys.executable, "-c", FROZEN_FIRST_RAYLET], env=_env(tmp_path, **NO_RAY_DASHBOARD),
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Ray did not start in time (try 1 of 3); trying again" in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["took"] > 30  # the first start waited out Ray's 30 s
    assert result["nodes"] == 1 and result["frozen_gone"], result  # one node; the frozen start was killed
    assert result["raylets"] and result["frozen"] not in result["raylets"], result

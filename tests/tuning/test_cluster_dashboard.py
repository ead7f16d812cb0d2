"""The Ray dashboard of a local `seedcore up`: started on 127.0.0.1, answering, and named in /health. Each test
starts Ray in a process of its own, as `seedcore up` does (the run's shared Ray has no dashboard: tests/conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration

HEALTH_BESIDE_RAY = """
import json, ray
from seedcore.api import create_app
from seedcore.config import Settings
from seedcore.db.migrations import upgrade
from seedcore.services import services_of
from seedcore.tuning.cluster import dashboard_url, ensure_ray
settings = Settings.from_env()
assert ensure_ray(settings)
upgrade(settings.database_url)
app = create_app(settings, background=False)
try:
    print(json.dumps({"dashboard": dashboard_url(), "health": app.test_client().get("/health").get_json()}))
finally:
    services_of(app).stop()
    ray.shutdown()
"""


def _env(tmp_path, **changes) -> dict:
    """This environment with the test's own stores and a Ray of its own (no address to join)."""
    env = {**os.environ, "SEEDCORE_DATA_DIR": str(tmp_path / "data"), "SEEDCORE_MLRUNS_DIR": str(tmp_path / "mlruns"),
           "RAY_TMPDIR": tempfile.mkdtemp(prefix="rd", dir="/tmp"), **changes}  # short: Ray's socket paths
    for name in ("RAY_ADDRESS", "SEEDCORE_RAY_ADDRESS", "SEEDCORE_DATABASE_URL", "SEEDCORE_TRACKING_URI"):
        env.pop(name, None)
    return env


def _in_a_process(tmp_path, **env_changes) -> tuple[dict, str]:
    """HEALTH_BESIDE_RAY in a fresh process on this test's stores: (its report, its stderr)."""
    import json

    done = subprocess.run([sys.executable, "-c", HEALTH_BESIDE_RAY], env=_env(tmp_path, **env_changes),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_local_ray_has_a_dashboard_on_loopback_named_in_health(tmp_path):
    report, _ = _in_a_process(tmp_path)
    url = report["dashboard"]
    assert url is not None and urlsplit(url).hostname == "127.0.0.1", url
    assert report["health"]["ray_dashboard"] == url


def test_the_dashboard_answers_while_its_ray_runs(tmp_path):
    code = ("import ray, urllib.request\nfrom seedcore.config import Settings\n"
            "from seedcore.tuning.cluster import dashboard_url, ensure_ray\nassert ensure_ray(Settings.from_env())\n"
            "with urllib.request.urlopen(f'{dashboard_url()}/api/gcs_healthz', timeout=30) as r:\n"
            "    print(r.status)\nray.shutdown()")  # /api/gcs_healthz is public even with token auth
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.split()[-1] == "200", done.stderr[-3000:]


def test_a_dashboard_port_taken_meanwhile_gives_way_and_the_sweep_still_gets_its_ray(tmp_path):
    """SEEDCORE_RAY_DASHBOARD_PORT was free when it was set, and something listens there by the time the first
    sweep starts Ray: Ray starts all the same, its dashboard on another port, /health names it, the log says so."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        report, stderr = _in_a_process(tmp_path, SEEDCORE_RAY_DASHBOARD_PORT=str(port))
    url = report["dashboard"]
    assert urlsplit(url).hostname == "127.0.0.1" and urlsplit(url).port != port, url
    assert report["health"]["ray_dashboard"] == url
    assert f"Ray dashboard port {port} cannot be bound" in stderr, stderr[-2000:]

"""What every process we start gets: telemetry off, our log setup, and a shared Prometheus directory.

Telemetry: MLflow and Ray report usage to their makers unless told not to; we tell them not to (the
user may opt in by setting the variables themselves). Prometheus: under gunicorn each worker counts in
files of its own in PROMETHEUS_MULTIPROC_DIR; `/metrics` adds them up. Our server makes that directory
(a temporary one, removed when the server exits) unless the user names one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from seedcore.config import Settings
from seedcore.runtime import logs

# MLflow 3.17 reads MLFLOW_DISABLE_TELEMETRY and DO_NOT_TRACK; Ray 2.60 reads RAY_USAGE_STATS_ENABLED.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "RAY_USAGE_STATS_ENABLED": "0"}
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def telemetry_off(env=None) -> dict:
    """Turn MLflow's and Ray's usage reporting off in `env` (os.environ by default) unless set already."""
    env = os.environ if env is None else env
    for key, value in TELEMETRY_OFF.items():
        env.setdefault(key, value)
    return env


def child_env() -> dict:
    """The environment for a child process we start (the MLflow UI): ours, telemetry off."""
    return telemetry_off(dict(os.environ))


def prepare_server(settings: Settings) -> None:
    """Before gunicorn forks: telemetry off, logging configured, a Prometheus directory for the workers."""
    telemetry_off()
    logs.configure(settings.log_format, settings.log_level, settings.log_file)
    if not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = path = tempfile.mkdtemp(prefix="seedcore-prometheus-")
        owner = os.getpid()
        # Forked workers inherit this hook; only the process that made the directory removes it.
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))


def worker_exited(server, worker) -> None:
    """gunicorn's child_exit hook: the dead worker's live gauges leave the sum."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

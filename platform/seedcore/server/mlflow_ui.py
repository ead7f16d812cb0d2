"""The MLflow UI beside the API: started as a child tethered to this process (`tether.py`) unless its port is
taken, with MLflow's Host and CORS checks narrowed to its address, and stopped by its process group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from seedcore.config import Settings
from seedcore.runtime.observability import child_env
from seedcore.runtime.ports import port_problem

UI_STOP_S = 1.5  # the MLflow UI (a viewer, no state of its own) gets this long after SIGTERM, then SIGKILL
# The UI is a viewer beside the API: one web worker (MLflow's default is 4), and none of MLflow's job
# consumers (GenAI jobs this platform never submits; on by default, they add 8 processes). Measured with
# `mlflow ui` 3.17 on this 2-CPU machine: 15 processes and 1.7 GB resident by default, 7 and 1.3 GB without
# the consumers. With one worker uvicorn serves in its own process (MLflow's Flask app in its threads): no
# supervisor and no spawned workers that each import the whole MLflow server, 5 CPU-s and 246 MB where two
# workers took 10 CPU-s and 490 MB. A port taken meanwhile ends it with exit code 0 and uvicorn's "[Errno 98]
# error while attempting to bind ...: address already in use", which tether.py shows.
UI_WORKERS = 1
# every MLflow server or UI we start (the tests and scripts/local_cluster.py too)
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_mlflow_ui(settings: Settings) -> subprocess.Popen | None:
    """`mlflow ui` over the same tracking store, as a child process tied to this one (`tether.py`): it ends
    when this process ends, however that happens, and says why on stderr if it ends on its own (a port
    taken meanwhile). None when its port is taken now, said on stderr: the API runs without it."""
    address = f"{settings.host}:{settings.mlflow_ui_port}"
    taken = port_problem(settings.host, settings.mlflow_ui_port)
    if taken:
        print(f"MLflow UI not started: {address} cannot be bound ({taken}); --mlflow-ui-port or "
              "SEEDCORE_MLFLOW_UI_PORT picks another port, --no-mlflow-ui runs without it",
              file=sys.stderr, flush=True)
        return None
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.tracking_uri,
               "--registry-store-uri", settings.registry_uri, "--default-artifact-root", settings.artifact_root,
               "--host", settings.host, "--port", str(settings.mlflow_ui_port), "--workers", str(UI_WORKERS),
               *mlflow_ui_security(settings)]
    tether = [sys.executable, "-I", str(Path(__file__).with_name("tether.py")), str(os.getpid()), str(UI_STOP_S),
              f"MLflow UI on {address}", json.dumps(command)]
    # A process group of its own (its uvicorn and workers too): stop_process ends the whole tree at once,
    # and a terminal's Ctrl-C does not stop it before the API has finished stopping.
    return subprocess.Popen(tether, stdout=subprocess.DEVNULL, env={**child_env(), **MLFLOW_SERVER_ENV},
                            process_group=0)


def mlflow_ui_security(settings: Settings) -> list[str]:
    """MLflow's own Host and CORS checks narrowed to the address the UI binds (and `localhost` for loopback).

    A wildcard bind (0.0.0.0) has no one name to allow; MLflow's defaults (localhost, private IPs) stay then.
    """
    if settings.host in ("0.0.0.0", "::", ""):
        return []
    port = settings.mlflow_ui_port
    hosts = [f"{settings.host}:{port}"] + ([f"localhost:{port}"] if settings.host in ("127.0.0.1", "::1") else [])
    return ["--allowed-hosts", ",".join(hosts), "--cors-allowed-origins", ",".join(f"http://{h}" for h in hosts)]


def stop_in_background(process: subprocess.Popen | None, timeout: float = UI_STOP_S) -> None:
    """stop_process in a daemon thread, returning at once: the arbiter's own stop goes on beside it (uvicorn
    under the MLflow UI can sit on a SIGTERM for many seconds; this SIGKILLs it after `timeout` s)."""
    if process is not None and not getattr(process, "_seedcore_stopping", False):
        process._seedcore_stopping = True  # the arbiter calls on_stop twice (SIGINT: stop(False), then halt)
        threading.Thread(target=stop_process, args=(process, timeout), name="seedcore-ui-stop",
                         daemon=True).start()


def stop_process(process: subprocess.Popen | None, timeout: float = UI_STOP_S) -> None:
    """SIGTERM the process group of a child we started in one (start_mlflow_ui), SIGKILL what is left
    after `timeout` s; the group id is the child's pid, so nothing else is ever signalled."""
    if process is None:
        return
    group = process.pid
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            break  # the whole group has ended
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(group):
            time.sleep(0.1)
            process.poll()  # reap the leader
    process.poll()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return any(p.info["status"] != psutil.STATUS_ZOMBIE for p in psutil.process_iter(["status"])
               if _pgid(p.pid) == group)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None

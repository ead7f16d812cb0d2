"""The Ray of the worker that runs jobs: started ahead of the first sweep in a thread that stays alive until
shutdown, announced (below the start-up banner and in `ray_session_file`), and ended within RAY_SHUTDOWN_S,
whatever Ray process is left then killed."""

from __future__ import annotations

import json
import logging
import os
import threading

import psutil

from seedcore.config import Settings
from seedcore.runtime.store_health import first_line

log = logging.getLogger(__name__)
# Ray's C++ failure handler turns a SIGTERM into SIGABRT; our own handler stops the job and Ray in order.
RAY_ENV = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}
RAY_SHUTDOWN_S = 2  # what Ray's own shutdown may take before its processes are killed
RAY_RETRY_S = 10.0  # between tries to start Ray ahead of the first sweep


def keep_ray(settings: Settings, done: threading.Event) -> None:
    """Start local Ray and load what a first sweep needs, then stay alive until shutdown: Ray's processes
    get SIGKILL when the *thread* that started them ends (PR_SET_PDEATHSIG), so a short-lived warm-up
    thread would take Ray down. A start that fails (a busy machine) is tried again every RAY_RETRY_S until
    shutdown; once Ray runs in this process (a sweep may have started it meanwhile) it is announced."""
    from seedcore.tuning.cluster import ensure_ray
    from seedcore.tuning.sweep import prepare_sweep

    while True:
        try:
            ensure_ray(settings)  # False when a sweep started it meanwhile: it is this process's Ray all the same
            _announce_ray(settings)
            break
        except Exception as exc:  # noqa: BLE001 - e.g. the server stopping while Ray still starts
            log.warning("Ray did not start ahead of the first sweep (trying again in %s s; a sweep starts it "
                        "otherwise): %s", RAY_RETRY_S, first_line(str(exc)))
            if done.wait(RAY_RETRY_S):
                return
    try:
        prepare_sweep(settings)  # a head start only: the first sweep does it itself otherwise
    except Exception:  # noqa: BLE001
        log.exception("warming up for sweeps failed")
    done.wait()


def _announce_ray(settings: Settings) -> None:
    """Say where this server's Ray is: on stdout below the start-up banner, and in `ray_session_file` for
    `seedcore ray status` (removed when Ray ends)."""
    from seedcore.tuning.cluster import dashboard_url, gcs_address

    print(f"Ray dashboard          {dashboard_url() or 'off'}  (Ray {gcs_address()})", flush=True)
    session = {"gcs_address": gcs_address(), "dashboard_url": dashboard_url(), "pid": os.getpid()}
    settings.ray_session_file.parent.mkdir(parents=True, exist_ok=True)
    settings.ray_session_file.write_text(json.dumps(session))


def end_ray(timeout: float = RAY_SHUTDOWN_S) -> None:
    """Shut Ray down, giving it `timeout` s; then kill, by pid, whatever Ray process is left (on a busy
    machine Ray's own shutdown can take many seconds, and we promised to be gone within ten)."""
    from seedcore.tuning.cluster import shutdown_ray

    ray_processes = psutil.Process().children(recursive=True)  # the jobs worker starts nothing but Ray
    ending = threading.Thread(target=shutdown_ray, name="seedcore-ray-shutdown", daemon=True)
    ending.start()
    ending.join(timeout)
    for process in {*ray_processes, *psutil.Process().children(recursive=True)}:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(ray_processes, timeout=0.5)

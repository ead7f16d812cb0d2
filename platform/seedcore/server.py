"""Running the platform: gunicorn for the API, the MLflow UI beside it, and stopping all of it in order.

Stopping: a terminal's Ctrl-C (SIGINT) and `docker stop` (SIGTERM) reach every process of the foreground
group at once. Ray's processes must not get that signal: a raylet killed under a running sweep aborts the
driver and leaves the job `running`. So the worker that runs jobs (and starts Ray) moves to a process group
of its own; the signal reaches the gunicorn arbiter, which passes it on to the worker, which cancels the
running job, ends Ray and exits, all within `stop_timeout_s` plus Ray's own shutdown.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
from gunicorn.app.base import BaseApplication

from seedcore.config import Settings
from seedcore.logs import exit_now
from seedcore.observability import child_env, prepare_server, worker_exited

log = logging.getLogger(__name__)
STOPS = "seedcore_stop"  # app.extensions: what to call, in order, when the process stops
_STOPPING = "seedcore_stopping"
# Ray's C++ failure handler turns a SIGTERM into SIGABRT; our own handler stops the job and Ray in order.
RAY_ENV = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}
RAY_SHUTDOWN_S = 2  # what Ray's own shutdown may take before its processes are killed
UI_STOP_S = 1.5  # the MLflow UI (a viewer, no state of its own) gets this long after SIGTERM, then SIGKILL
# gunicorn SIGKILLs a worker still running after its grace period: the worker keeps its own deadlines
# (stop_timeout_s, RAY_SHUTDOWN_S), so this is only the last resort on a machine too busy to keep them.
GRACE_MARGIN_S = 20


class _Gunicorn(BaseApplication):
    """gunicorn embedded: our app factory, our options, no command line of its own."""

    def __init__(self, settings: Settings, role: str, options: dict, on_stop=None):
        self.settings, self.role, self.options, self.on_stop = settings, role, options, on_stop
        super().__init__()

    def run(self):
        from gunicorn.arbiter import Arbiter

        on_stop = self.on_stop

        class _Arbiter(Arbiter):
            def stop(self, graceful=True):  # the arbiter got SIGTERM/SIGINT: start the side processes stopping
                if on_stop is not None:
                    on_stop()
                super().stop(graceful)

        _Arbiter(self).run()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from seedcore.api import create_app

        app = create_app(self.settings, role=self.role)
        app.extensions[_STOPPING] = threading.Lock()
        if self.role == "all":  # warm Ray in the worker that runs sweeps, without delaying requests
            done = threading.Event()
            threading.Thread(target=_keep_ray, args=(self.settings, done), name="seedcore-ray", daemon=True).start()
            app.extensions.setdefault(STOPS, []).extend([_end_ray, done.set])
        atexit.register(stop_app, app)
        return app


def _keep_ray(settings: Settings, done: threading.Event) -> None:
    """Start local Ray and load what a first sweep needs, then stay alive until shutdown: Ray's processes
    get SIGKILL when the *thread* that started them ends (PR_SET_PDEATHSIG), so a short-lived warm-up
    thread would take Ray down."""
    from seedcore.tuning.cluster import ensure_ray
    from seedcore.tuning.sweep import prepare_sweep

    ensure_ray(settings)
    try:
        prepare_sweep(settings)  # a head start only: the first sweep does it itself otherwise
    except Exception:  # noqa: BLE001
        log.exception("warming up for sweeps failed")
    done.wait()


def _end_ray(timeout: float = RAY_SHUTDOWN_S) -> None:
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


def stop_app(app) -> None:
    """Call the app's stop hooks once, in order (the job runner first); later callers wait for the first."""
    with app.extensions.setdefault(_STOPPING, threading.Lock()):
        stops = app.extensions.get(STOPS, [])
        while stops:
            stop = stops.pop(0)
            try:
                stop()
            except Exception:  # shutting down: keep stopping the rest
                log.exception("while stopping")


def _own_process_group(server, worker) -> None:
    """post_fork, jobs role: the worker (and the Ray it starts) leave the terminal's process group."""
    os.setpgrp()


def _stop_on_term(worker) -> None:
    """post_worker_init: on SIGTERM start stopping the app at once, beside gunicorn's graceful exit, so a
    request waiting for a job is answered (cancelled) instead of holding the worker up."""
    graceful = worker.handle_exit

    def on_term(signum, frame):
        graceful(signum, frame)
        threading.Thread(target=stop_app, args=(worker.wsgi,), name="seedcore-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)


def _worker_exit(server, worker) -> None:
    """Stop the app, then end the worker at once: a thread pool still winding down (a cancelled sweep's
    MLflow writer) would otherwise hold the interpreter's exit past gunicorn's grace period."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        stop_app(app)
        exit_now(0)


def run_api(settings: Settings, role: str = "all", workers: int = 1, threads: int = 8, on_stop=None) -> None:
    """Serve the API with gunicorn. The jobs role runs in one worker (it owns the job runner).
    `on_stop()` is called, and must return at once, when gunicorn starts stopping."""
    prepare_server(settings)  # before gunicorn forks: the workers inherit it
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1 if role == "all" else workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 120,  # the worker's heartbeat; long sweeps run in threads and never block it
        "graceful_timeout": math.ceil(settings.stop_timeout_s) + RAY_SHUTDOWN_S + GRACE_MARGIN_S,
        "accesslog": "-",
        "loglevel": "warning",
        "post_worker_init": _stop_on_term,
        "worker_exit": _worker_exit,
        "child_exit": worker_exited,
    }
    if role == "all":
        options["post_fork"] = _own_process_group
        os.environ.update(RAY_ENV)  # before the worker first imports Ray, which reads it once
    _Gunicorn(settings, role, options, on_stop).run()


def start_mlflow_ui(settings: Settings) -> subprocess.Popen:
    """`mlflow ui` over the same tracking store, as a child process."""
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.tracking_uri,
               "--registry-store-uri", settings.registry_uri, "--default-artifact-root", settings.artifact_root,
               "--host", settings.host, "--port", str(settings.mlflow_ui_port), *mlflow_ui_security(settings)]
    # A process group of its own (its uvicorn and workers too): stop_process ends the whole tree at once,
    # and a terminal's Ctrl-C does not stop it before the API has finished stopping.
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=child_env(), process_group=0)


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

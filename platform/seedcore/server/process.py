"""Running the platform: gunicorn for the API, the MLflow UI beside it, and stopping all of it in order.

Serving: gunicorn's arbiter and its asyncio worker, with our front (`seedcore.server.front`): a request is read whole,
within its deadlines and byte cap, in the event loop before the Flask app sees it in one of `threads` threads,
so slow clients hold no thread.

Stopping: a terminal's Ctrl-C (SIGINT) and `docker stop` (SIGTERM) reach every process of the foreground
group at once. Ray's processes must not get that signal: a raylet killed under a running sweep aborts the
driver and leaves the job `running`. So the worker that runs jobs (and starts Ray) moves to a process group
of its own; the signal reaches the gunicorn arbiter, which passes it on to the worker, which cancels the
running job, ends Ray and exits, all within `stop_timeout_s` plus Ray's own shutdown.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from gunicorn.app.base import BaseApplication

from seedcore.config import Settings
from seedcore.server.front import Front, FrontWorker
from seedcore.services import services_of
from seedcore.runtime.logs import exit_now
from seedcore.runtime.store_health import first_line
from seedcore.runtime.observability import child_env, prepare_server, worker_exited

log = logging.getLogger(__name__)
# Ray's C++ failure handler turns a SIGTERM into SIGABRT; our own handler stops the job and Ray in order.
RAY_ENV = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}
RAY_SHUTDOWN_S = 2  # what Ray's own shutdown may take before its processes are killed
UI_STOP_S = 1.5  # the MLflow UI (a viewer, no state of its own) gets this long after SIGTERM, then SIGKILL
# gunicorn SIGKILLs a worker still running after its grace period: the worker keeps its own deadlines
# (stop_timeout_s, RAY_SHUTDOWN_S), so this is only the last resort on a machine too busy to keep them.
GRACE_MARGIN_S = 20


class _Gunicorn(BaseApplication):
    """gunicorn embedded: our app factory, our options, no command line of its own."""

    def __init__(self, settings: Settings, role: str, options: dict, threads: int, on_stop=None):
        self.settings, self.role, self.options, self.on_stop = settings, role, options, on_stop
        self.threads = threads
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
        if self.role == "all":  # warm Ray in the worker that runs sweeps, without delaying requests
            done = threading.Event()
            threading.Thread(target=_keep_ray, args=(self.settings, done), name="seedcore-ray", daemon=True).start()
            forget = lambda: self.settings.ray_session_file.unlink(missing_ok=True)  # noqa: E731
            for stop in (_end_ray, forget, done.set):
                services_of(app).on_stop(stop)
        atexit.register(stop_app, app)
        return Front(app, self.threads)


def _keep_ray(settings: Settings, done: threading.Event) -> None:
    """Start local Ray and load what a first sweep needs, then stay alive until shutdown: Ray's processes
    get SIGKILL when the *thread* that started them ends (PR_SET_PDEATHSIG), so a short-lived warm-up
    thread would take Ray down."""
    from seedcore.tuning.cluster import ensure_ray
    from seedcore.tuning.sweep import prepare_sweep

    try:
        ensure_ray(settings)
        _announce_ray(settings)
    except Exception as exc:  # noqa: BLE001 - e.g. the server stopping while Ray still starts; a sweep starts it
        log.warning("Ray did not start ahead of the first sweep: %s", first_line(str(exc)))
        done.wait()
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
    """Stop the app's services once, in order (the job runner first); later callers wait for the first."""
    services_of(app).stop()


def _own_process_group(server, worker) -> None:
    """post_fork, jobs role: the worker (and the Ray it starts) leave the terminal's process group."""
    os.setpgrp()


class _Worker(FrontWorker):
    def on_terminate(self) -> None:
        """SIGTERM: start stopping the app at once, beside the graceful exit, so a request waiting for a job
        is answered (cancelled) instead of holding the worker up."""
        threading.Thread(target=stop_app, args=(self.asgi.app,), name="seedcore-stop", daemon=True).start()


def _jobs_worker_exited(server, worker) -> None:
    """child_exit, jobs role: what the worker started (Ray, in the worker's own process group) ends with it,
    even when the worker died without stopping it (SIGKILL, a crash). The group is empty after a clean stop."""
    worker_exited(server, worker)
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _worker_exit(server, worker) -> None:
    """Stop the app, then end the worker at once: a thread pool still winding down (a cancelled sweep's
    MLflow writer) would otherwise hold the interpreter's exit past gunicorn's grace period."""
    app = getattr(getattr(worker, "asgi", None), "app", None)
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
        "worker_class": _Worker,
        "asgi_lifespan": "off",
        # the worker's heartbeat (requests, long sweeps too, run in threads and never block it); gunicorn also
        # gives up on a body that sends nothing for this long, so it must outlast our own body deadline
        "timeout": max(120, math.ceil(settings.read_body_timeout_s) + 1),
        "graceful_timeout": math.ceil(settings.stop_timeout_s) + RAY_SHUTDOWN_S + GRACE_MARGIN_S,
        "accesslog": "-",
        "loglevel": "warning",
        "worker_exit": _worker_exit,
        "child_exit": worker_exited,
    }
    if role == "all":
        options["post_fork"] = _own_process_group
        options["child_exit"] = _jobs_worker_exited
        os.environ.update(RAY_ENV)  # before the worker first imports Ray, which reads it once
    _more_open_files()
    _Gunicorn(settings, role, options, threads, on_stop).run()


def _more_open_files() -> None:
    """Raise the soft limit on open files to the hard one: a slow or idle connection costs no thread now,
    only a file descriptor, and the default soft limit (often 1024) would be the first thing to run out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %s", soft)


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
               "--host", settings.host, "--port", str(settings.mlflow_ui_port), *mlflow_ui_security(settings)]
    tether = [sys.executable, "-I", str(Path(__file__).with_name("tether.py")), str(os.getpid()), str(UI_STOP_S),
              f"MLflow UI on {address}", json.dumps(command)]
    # A process group of its own (its uvicorn and workers too): stop_process ends the whole tree at once,
    # and a terminal's Ctrl-C does not stop it before the API has finished stopping.
    return subprocess.Popen(tether, stdout=subprocess.DEVNULL, env=child_env(), process_group=0)


def port_problem(host: str, port: int) -> str | None:
    """None when a server could bind `host:port` now; else why not, and who listens there (if we may see)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
            return None
        except OSError as exc:
            reason = exc.strerror or str(exc)
    try:
        holders = sorted({c.pid for c in psutil.net_connections("tcp")
                          if c.pid and c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN})
    except psutil.Error:
        holders = []
    for pid in holders[:1]:
        try:
            reason += f"; listening: pid {pid} {' '.join(psutil.Process(pid).cmdline())[:160]}"
        except psutil.Error:
            reason += f"; listening: pid {pid}"
    return reason


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

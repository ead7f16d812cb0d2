"""The server process: gunicorn for the API, its workers, and stopping them in order. The MLflow UI beside it is
seedcore.server.mlflow_ui; the Ray the jobs worker keeps is seedcore.server.ray_keeper.

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
import logging
import math
import os
import resource
import signal
import threading

from gunicorn.app.base import BaseApplication

from seedcore.config import Settings
from seedcore.runtime.logs import exit_now
from seedcore.runtime.observability import prepare_server, worker_exited
from seedcore.server.front import Front, FrontWorker
from seedcore.server.ray_keeper import RAY_ENV, RAY_SHUTDOWN_S, end_ray, keep_ray
from seedcore.services import services_of

log = logging.getLogger(__name__)
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
            threading.Thread(target=keep_ray, args=(self.settings, done), name="seedcore-ray", daemon=True).start()
            forget = lambda: self.settings.ray_session_file.unlink(missing_ok=True)  # noqa: E731
            for stop in (end_ray, forget, done.set):
                services_of(app).on_stop(stop)
        atexit.register(stop_app, app)
        return Front(app, self.threads)


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
